//! The data calls: upsert, delete, search, query and count, each sent with the consistency
//! level and guarantee timestamp the session fence gives it.

use milvus::data::FieldColumn;
use milvus::proto::common::{DslType, MsgBase, MsgType};
use milvus::proto::milvus::{
    search_request::SearchInput, DeleteRequest, QueryRequest, SearchRequest, UpsertRequest,
};
use milvus::proto::schema::i_ds::IdField;
use milvus::schema::FieldSchema;
use milvus::value::{Value, ValueVec};
use std::collections::BTreeMap;
use vectorgate_domain::GatewayError;

use super::super::wire::{consistency_level, int_column, kv, rows_of, value_to_i64};
use super::super::{Column, ColumnBatch, QueryCall, RawHit, Rows, SearchCall, STORE};
use super::SdkMilvusApi;
use crate::config::Consistency;

impl SdkMilvusApi {
    pub(super) async fn upsert(
        &self,
        collection: &str,
        batch: ColumnBatch,
    ) -> Result<u64, GatewayError> {
        let rows = batch.row_count();
        let generation = self.fence.generation(collection);
        let vector_schema =
            FieldSchema::new_float_vector(crate::schema::FIELD_EMBEDDING, "", i64::from(batch.dim));
        let columns = [
            int_column(crate::schema::FIELD_CHUNK_ID, batch.chunk_ids),
            int_column(crate::schema::FIELD_TENANT_ID, batch.tenant_ids),
            int_column(crate::schema::FIELD_PROJECT_ID, batch.project_ids),
            FieldColumn::new(&vector_schema, ValueVec::Float(batch.embeddings)),
        ];
        let mut client = self.client().await?;
        let result = self
            .call(
                "upsert",
                client.upsert(UpsertRequest {
                    base: Some(MsgBase::new(MsgType::Upsert)),
                    collection_name: collection.to_string(),
                    num_rows: u32::try_from(rows).unwrap_or(u32::MAX),
                    fields_data: columns.into_iter().map(Into::into).collect(),
                    ..Default::default()
                }),
            )
            .await?;
        if result.timestamp != 0 {
            self.fence
                .write_timestamped(collection, generation, result.timestamp);
        }
        // 2.3 reports upsert_cnt; fall back to the rows sent when a server leaves it 0.
        Ok(match result.upsert_cnt {
            n if n > 0 => n as u64,
            _ => rows as u64,
        })
    }

    pub(super) async fn delete(&self, collection: &str, expr: &str) -> Result<u64, GatewayError> {
        let generation = self.fence.generation(collection);
        let mut client = self.client().await?;
        let result = self
            .call(
                "delete",
                client.delete(DeleteRequest {
                    base: Some(MsgBase::new(MsgType::Delete)),
                    collection_name: collection.to_string(),
                    expr: expr.to_string(),
                    ..Default::default()
                }),
            )
            .await?;
        if result.timestamp == 0 {
            self.fence.delete_done(collection);
        } else {
            self.fence
                .write_timestamped(collection, generation, result.timestamp);
        }
        Ok(u64::try_from(result.delete_cnt).unwrap_or(0))
    }

    pub(super) async fn search(&self, call: &SearchCall) -> Result<Vec<RawHit>, GatewayError> {
        let read = self.fence.read(&call.collection, call.consistency);
        let placeholders =
            milvus::query::get_place_holder_group(&vec![Value::from(call.vector.clone())])
                .map_err(self.err("search"))?;
        // Built from an integer only.
        let params = format!(r#"{{"nprobe":{}}}"#, call.nprobe);
        let mut client = self.client().await?;
        let reply = self
            .call(
                "search",
                client.search(SearchRequest {
                    base: Some(MsgBase::new(MsgType::Search)),
                    collection_name: call.collection.clone(),
                    dsl: call.filter.clone(),
                    dsl_type: DslType::BoolExprV1 as i32,
                    nq: 1,
                    search_input: Some(SearchInput::PlaceholderGroup(placeholders)),
                    output_fields: call.output_fields.clone(),
                    search_params: vec![
                        kv("anns_field", call.vector_field.clone()),
                        kv("topk", call.limit.to_string()),
                        kv("metric_type", call.metric.as_str()),
                        kv("params", params),
                        kv("round_decimal", "-1"),
                    ],
                    guarantee_timestamp: read.guarantee_timestamp,
                    consistency_level: consistency_level(read.level),
                    ..Default::default()
                }),
            )
            .await?;
        self.fence.read_done(&call.collection, read.generation);
        let Some(result) = reply.results else {
            return Ok(Vec::new());
        };
        let ids = match result.ids.and_then(|ids| ids.id_field) {
            Some(IdField::IntId(ids)) => ids.data,
            None => Vec::new(),
            Some(_) => {
                return Err(GatewayError::backend(
                    STORE,
                    "search",
                    "a hit has a non-integer primary key",
                ))
            }
        };
        let columns: Vec<FieldColumn> = result
            .fields_data
            .into_iter()
            .map(FieldColumn::from)
            .collect();
        let mut hits = Vec::with_capacity(ids.len());
        for (row, (id, distance)) in ids.iter().zip(&result.scores).enumerate() {
            let mut fields = BTreeMap::new();
            for column in &columns {
                if let Some(v) = column.get(row).as_ref().and_then(value_to_i64) {
                    fields.insert(column.name.clone(), v);
                }
            }
            hits.push(RawHit {
                id: *id,
                distance: *distance,
                fields,
            });
        }
        Ok(hits)
    }

    pub(super) async fn query(&self, call: &QueryCall) -> Result<Rows, GatewayError> {
        let read = self.fence.read(&call.collection, call.consistency);
        let mut query_params = Vec::new();
        if let Some(limit) = call.limit {
            query_params.push(kv("limit", limit.to_string()));
        }
        let mut client = self.client().await?;
        let reply = self
            .call(
                "query",
                client.query(QueryRequest {
                    base: Some(MsgBase::new(MsgType::Retrieve)),
                    collection_name: call.collection.clone(),
                    expr: call.expr.clone(),
                    output_fields: call.output_fields.clone(),
                    query_params,
                    guarantee_timestamp: read.guarantee_timestamp,
                    consistency_level: consistency_level(read.level),
                    ..Default::default()
                }),
            )
            .await?;
        self.fence.read_done(&call.collection, read.generation);
        Ok(rows_of(reply.fields_data))
    }

    pub(super) async fn count(
        &self,
        collection: &str,
        expr: &str,
        consistency: Consistency,
    ) -> Result<u64, GatewayError> {
        let rows = self
            .query(&QueryCall {
                collection: collection.to_string(),
                expr: expr.to_string(),
                output_fields: vec!["count(*)".to_string()],
                limit: None,
                consistency,
            })
            .await?;
        match rows.columns.get("count(*)") {
            Some(Column::Int64(values)) if !values.is_empty() => {
                Ok(u64::try_from(values[0]).unwrap_or(0))
            }
            _ => Err(GatewayError::backend(
                STORE,
                "count",
                "the reply has no count(*) column",
            )),
        }
    }
}
