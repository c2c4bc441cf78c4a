//! [`SdkMilvusApi`]: [`MilvusApi`] over milvus-sdk-rust's v1 client. Every SDK call the
//! adapter makes is in this file.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use milvus::client::{Client, ConsistencyLevel};
use milvus::data::FieldColumn;
use milvus::index::{IndexParams, IndexType, MetricType};
use milvus::mutate::DeleteOptions;
use milvus::proto::common::{LoadState, MsgBase, MsgType};
use milvus::proto::milvus::CreateCollectionRequest;
use milvus::query::{QueryOptions, SearchOptions};
use milvus::schema::{CollectionSchemaBuilder, FieldSchema};
use milvus::value::{Value, ValueVec};
use prost::Message;
use vectorgate_domain::GatewayError;

use super::connect::LazyClient;
use super::error::map_error;
use super::fence::SessionFence;
use super::{
    CollectionDescription, Column, ColumnBatch, FieldKind, FieldSpec, IndexSpec, LoadStatus,
    MilvusApi, QueryCall, RawHit, Rows, SearchCall, SegmentInfo, STORE,
};
use crate::config::{Consistency, MilvusConfig};

/// [`MilvusApi`] over milvus-sdk-rust's v1 client.
#[derive(Debug)]
pub struct SdkMilvusApi {
    lazy_client: LazyClient,
    fence: SessionFence,
    /// Bound on calls the SDK polls internally without a deadline of its own (index build,
    /// load).
    wait_timeout: Duration,
}

impl SdkMilvusApi {
    pub fn new(config: &MilvusConfig) -> Self {
        Self {
            lazy_client: LazyClient::new(config),
            fence: SessionFence::default(),
            wait_timeout: Duration::from_secs(600).max(config.call_timeout),
        }
    }

    async fn client(&self) -> Result<&Client, GatewayError> {
        self.lazy_client.client().await
    }

    fn err(&self, operation: &'static str) -> impl Fn(milvus::error::Error) -> GatewayError + '_ {
        move |err| map_error(operation, self.lazy_client.endpoint(), err)
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, milvus::error::Error>>,
    ) -> Result<T, GatewayError> {
        match tokio::time::timeout(self.wait_timeout, fut).await {
            Ok(result) => result.map_err(self.err(operation)),
            Err(_) => Err(GatewayError::backend(
                STORE,
                operation,
                format!("not finished within {:?}", self.wait_timeout),
            )),
        }
    }
}

fn consistency_level(consistency: Consistency) -> i32 {
    let level = match consistency {
        Consistency::Strong => ConsistencyLevel::Strong,
        Consistency::Session => ConsistencyLevel::Session,
        Consistency::Bounded => ConsistencyLevel::Bounded,
        Consistency::Eventually => ConsistencyLevel::Eventually,
    };
    level as i32
}

fn sdk_field(spec: &FieldSpec) -> Result<FieldSchema, GatewayError> {
    Ok(match (&spec.kind, spec.primary) {
        (FieldKind::Int64, true) => FieldSchema::new_primary_int64(&spec.name, "", spec.auto_id),
        (FieldKind::Int64, false) => FieldSchema::new_int64(&spec.name, ""),
        (FieldKind::FloatVector { dim }, false) => {
            FieldSchema::new_float_vector(&spec.name, "", i64::from(*dim))
        }
        (kind, primary) => {
            return Err(GatewayError::backend(
                STORE,
                "create collection",
                format!(
                    "unsupported field {} {kind} (primary: {primary})",
                    spec.name
                ),
            ))
        }
    })
}

fn int_column(name: &str, values: Vec<i64>) -> FieldColumn {
    FieldColumn::new(&FieldSchema::new_int64(name, ""), ValueVec::Long(values))
}

fn value_to_i64(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Long(v) => Some(*v),
        Value::Int32(v) => Some(i64::from(*v)),
        _ => None,
    }
}

#[async_trait]
impl MilvusApi for SdkMilvusApi {
    async fn server_version(&self) -> Result<String, GatewayError> {
        let client = self.client().await?;
        let version = client
            .get_server_version()
            .await
            .map_err(self.err("server version"))?;
        Ok(version.version)
    }

    async fn has_collection(&self, collection: &str) -> Result<bool, GatewayError> {
        self.client()
            .await?
            .has_collection(collection)
            .await
            .map_err(self.err("has collection"))
    }

    async fn describe_collection(
        &self,
        collection: &str,
    ) -> Result<CollectionDescription, GatewayError> {
        let described = self
            .client()
            .await?
            .describe_collection(collection)
            .await
            .map_err(self.err("describe collection"))?;
        let fields = described
            .schema
            .fields
            .into_iter()
            .map(|proto| {
                // The SDK's own field type drops the partition-key flag: read it first.
                let partition_key = proto.is_partition_key;
                let field = FieldSchema::from(proto);
                let kind = match field.dtype {
                    milvus::proto::schema::DataType::Int64 => FieldKind::Int64,
                    milvus::proto::schema::DataType::FloatVector => FieldKind::FloatVector {
                        dim: u32::try_from(field.dim).unwrap_or(0),
                    },
                    other => FieldKind::Other(other.as_str_name().to_string()),
                };
                FieldSpec {
                    name: field.name,
                    kind,
                    primary: field.is_primary,
                    auto_id: field.auto_id,
                    partition_key,
                }
            })
            .collect();
        Ok(CollectionDescription {
            fields,
            num_partitions: u32::try_from(described.num_partitions).unwrap_or(0),
        })
    }

    /// Made through the raw gRPC client: the SDK's v1 schema conversion always clears the
    /// partition-key flag. The SDK still builds and checks the schema.
    async fn create_collection(
        &self,
        collection: &str,
        fields: &[FieldSpec],
        num_partitions: u32,
    ) -> Result<(), GatewayError> {
        let mut builder = CollectionSchemaBuilder::new(collection, "vectorgate embeddings");
        for field in fields {
            builder.add_field(sdk_field(field)?);
        }
        let mut schema: milvus::proto::schema::CollectionSchema = builder
            .build()
            .map_err(self.err("create collection"))?
            .into();
        for proto in &mut schema.fields {
            proto.is_partition_key = fields
                .iter()
                .any(|f| f.name == proto.name && f.partition_key);
        }
        let keyed = schema.fields.iter().any(|f| f.is_partition_key);
        let request = CreateCollectionRequest {
            base: Some(MsgBase::new(MsgType::CreateCollection)),
            collection_name: collection.to_string(),
            schema: schema.encode_to_vec(),
            // The collection's own default only matters to clients that send no level; ours
            // always send one. Session is the least surprising default for other clients too.
            consistency_level: consistency_level(Consistency::Session),
            num_partitions: if keyed { i64::from(num_partitions) } else { 0 },
            ..Default::default()
        };
        let status = self
            .lazy_client
            .raw()
            .await?
            .create_collection(request)
            .await
            .map_err(|status| self.err("create collection")(status.into()))?
            .into_inner();
        #[allow(deprecated)] // Milvus 2.3 fills both codes; lite only `code`.
        let failed = status.code != 0 || status.error_code != 0;
        if failed {
            return Err(self.err("create collection")(status.into()));
        }
        Ok(())
    }

    async fn drop_collection(&self, collection: &str) -> Result<(), GatewayError> {
        self.client()
            .await?
            .drop_collection(collection)
            .await
            .map_err(self.err("drop collection"))
    }

    async fn describe_index(
        &self,
        collection: &str,
        field: &str,
    ) -> Result<Vec<IndexSpec>, GatewayError> {
        let result = self.client().await?.describe_index(collection, field).await;
        let infos = match result {
            Ok(infos) => infos,
            // 2.3 answers "index not found" (IndexNotExist) for a field without index.
            Err(milvus::error::Error::Server(code, reason))
                if format!("{code:?}") == "IndexNotExist"
                    || reason.contains("index not found")
                    || reason.contains("index doesn't exist") =>
            {
                return Ok(Vec::new())
            }
            Err(err) => return Err(self.err("describe index")(err)),
        };
        Ok(infos
            .into_iter()
            .map(|info| IndexSpec {
                index_name: info.index_name().to_string(),
                field_name: info.field_name().to_string(),
                index_type: info.params().index_type().to_string(),
                metric_type: info.params().metric_type().to_string(),
                params: info
                    .params()
                    .params()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                finished: matches!(info.state(), milvus::proto::common::IndexState::Finished),
            })
            .collect())
    }

    async fn create_index(&self, collection: &str, index: &IndexSpec) -> Result<(), GatewayError> {
        let index_type: IndexType = index.index_type.parse().map_err(|_| {
            GatewayError::backend(
                STORE,
                "create index",
                format!("unknown index type {}", index.index_type),
            )
        })?;
        let metric: MetricType = index.metric_type.parse().map_err(|_| {
            GatewayError::backend(
                STORE,
                "create index",
                format!("unknown metric {}", index.metric_type),
            )
        })?;
        let params = IndexParams::new(
            index.index_name.clone(),
            index_type,
            metric,
            index.params.clone().into_iter().collect::<HashMap<_, _>>(),
        );
        let client = self.client().await?;
        self.bounded(
            "create index",
            client.create_index(collection, index.field_name.clone(), params),
        )
        .await
    }

    async fn load_collection(&self, collection: &str) -> Result<(), GatewayError> {
        let client = self.client().await?;
        self.bounded("load collection", client.load_collection(collection, None))
            .await
    }

    async fn load_status(&self, collection: &str) -> Result<LoadStatus, GatewayError> {
        let state = self
            .client()
            .await?
            .get_load_state(collection, None)
            .await
            .map_err(self.err("load state"))?;
        Ok(match state {
            LoadState::Loaded => LoadStatus::Loaded,
            LoadState::Loading => LoadStatus::Loading,
            LoadState::NotLoad => LoadStatus::NotLoaded,
            LoadState::NotExist => LoadStatus::NotExist,
        })
    }

    async fn flush(&self, collection: &str) -> Result<(), GatewayError> {
        let client = self.client().await?;
        self.bounded("flush", client.flush(collection)).await
    }

    async fn loaded_segments(&self, collection: &str) -> Result<Vec<SegmentInfo>, GatewayError> {
        let segments = self
            .client()
            .await?
            .list_loaded_segments(collection)
            .await
            .map_err(self.err("list loaded segments"))?;
        Ok(segments
            .into_iter()
            .map(|s| SegmentInfo {
                rows: u64::try_from(s.num_rows).unwrap_or(0),
                growing: matches!(s.state, milvus::proto::common::SegmentState::Growing),
                index_name: s.index_name,
            })
            .collect())
    }

    async fn upsert(&self, collection: &str, batch: ColumnBatch) -> Result<u64, GatewayError> {
        let rows = batch.row_count() as u64;
        let generation = self.fence.generation(collection);
        let vector_schema =
            FieldSchema::new_float_vector(crate::schema::FIELD_EMBEDDING, "", i64::from(batch.dim));
        let columns = vec![
            int_column(crate::schema::FIELD_CHUNK_ID, batch.chunk_ids),
            int_column(crate::schema::FIELD_TENANT_ID, batch.tenant_ids),
            int_column(crate::schema::FIELD_PROJECT_ID, batch.project_ids),
            FieldColumn::new(&vector_schema, ValueVec::Float(batch.embeddings)),
        ];
        let result = self
            .client()
            .await?
            .upsert(collection, columns, None::<milvus::mutate::UpsertOptions>)
            .await
            .map_err(self.err("upsert"))?;
        if result.timestamp != 0 {
            self.fence.write_timestamped(collection, generation);
        }
        // 2.3 reports upsert_cnt; fall back to the rows sent when a server leaves it 0.
        Ok(match result.upsert_cnt {
            n if n > 0 => n as u64,
            _ => rows,
        })
    }

    async fn delete(&self, collection: &str, expr: &str) -> Result<u64, GatewayError> {
        let result = self
            .client()
            .await?
            .delete(collection, &DeleteOptions::with_filter(expr.to_string()))
            .await
            .map_err(self.err("delete"))?;
        if result.timestamp == 0 {
            self.fence.delete_done(collection);
        }
        Ok(u64::try_from(result.delete_cnt).unwrap_or(0))
    }

    async fn search(&self, call: &SearchCall) -> Result<Vec<RawHit>, GatewayError> {
        let (level, generation) = self.fence.read_level(&call.collection, call.consistency);
        let options = SearchOptions::new()
            .filter(call.filter.clone())
            .limit(call.limit as usize)
            .output_fields(call.output_fields.clone())
            .anns_field(vec![call.vector_field.clone()])
            .add_param("metric_type", call.metric.as_str())
            .add_param("nprobe", call.nprobe.to_string())
            .consistency_level(consistency_level(level));
        let client = self.client().await?;
        let results = client
            .search(
                call.collection.clone(),
                vec![Value::from(call.vector.clone())],
                Some(options),
            )
            .await
            .map_err(self.err("search"))?;
        self.fence.read_done(&call.collection, generation);
        let Some(result) = results.into_iter().next() else {
            return Ok(Vec::new());
        };
        let mut hits = Vec::with_capacity(result.id.len());
        for (row, (id, distance)) in result.id.iter().zip(&result.score).enumerate() {
            let id = value_to_i64(id).ok_or_else(|| {
                GatewayError::backend(STORE, "search", "a hit has a non-integer primary key")
            })?;
            let mut fields = BTreeMap::new();
            for column in &result.field {
                if let Some(v) = column.get(row).as_ref().and_then(value_to_i64) {
                    fields.insert(column.name.clone(), v);
                }
            }
            hits.push(RawHit {
                id,
                distance: *distance,
                fields,
            });
        }
        Ok(hits)
    }

    async fn query(&self, call: &QueryCall) -> Result<Rows, GatewayError> {
        let (level, generation) = self.fence.read_level(&call.collection, call.consistency);
        let mut options = QueryOptions::new()
            .output_fields(call.output_fields.clone())
            .consistency_level(consistency_level(level));
        if let Some(limit) = call.limit {
            options = options.limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let columns = self
            .client()
            .await?
            .query(call.collection.clone(), &call.expr, &options)
            .await
            .map_err(self.err("query"))?;
        self.fence.read_done(&call.collection, generation);
        let mut rows = Rows::default();
        for column in columns {
            let value = match column.value {
                ValueVec::Long(values) => Column::Int64(values),
                ValueVec::Int(values) => Column::Int64(values.into_iter().map(i64::from).collect()),
                ValueVec::Float(values) => Column::FloatVector {
                    dim: u32::try_from(column.dim).unwrap_or(0),
                    values,
                },
                _ => continue,
            };
            rows.columns.insert(column.name, value);
        }
        Ok(rows)
    }

    async fn count(
        &self,
        collection: &str,
        expr: &str,
        consistency: Consistency,
    ) -> Result<u64, GatewayError> {
        let (level, generation) = self.fence.read_level(collection, consistency);
        let options = QueryOptions::new().consistency_level(consistency_level(level));
        let n = self
            .client()
            .await?
            .count_with_expr(collection, expr, &options)
            .await
            .map_err(self.err("count"))?;
        self.fence.read_done(collection, generation);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError> {
        self.client()
            .await?
            .create_partition(collection.to_string(), partition.to_string())
            .await
            .map_err(self.err("create partition"))
    }

    async fn has_partition(&self, collection: &str, partition: &str) -> Result<bool, GatewayError> {
        self.client()
            .await?
            .has_partition(collection.to_string(), partition.to_string())
            .await
            .map_err(self.err("has partition"))
    }

    async fn release_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError> {
        self.client()
            .await?
            .release_partitions(collection.to_string(), [partition.to_string()])
            .await
            .map_err(self.err("release partition"))
    }

    async fn drop_partition(&self, collection: &str, partition: &str) -> Result<(), GatewayError> {
        self.client()
            .await?
            .drop_partition(collection.to_string(), partition.to_string())
            .await
            .map_err(self.err("drop partition"))
    }

    async fn list_partitions(&self, collection: &str) -> Result<Vec<String>, GatewayError> {
        self.client()
            .await?
            .list_partitions(collection.to_string())
            .await
            .map_err(self.err("list partitions"))
    }
}

#[cfg(test)]
mod tests {
    use vectorgate_domain::{Dimension, StoreKind};

    use super::*;

    #[tokio::test]
    async fn unreachable_server_error_names_host_port_and_cause() {
        // Port 9 (discard) on localhost is closed on these machines: connection refused.
        let mut config = MilvusConfig::new("127.0.0.1", 9, Dimension::new(4).unwrap());
        config.connect_timeout = Duration::from_secs(3);
        let api = SdkMilvusApi::new(&config);
        assert!(!api.lazy_client.is_connected(), "construction does no I/O");
        let err = api.server_version().await.unwrap_err();
        match err {
            GatewayError::Unavailable { store, reason, .. } => {
                assert_eq!(store, StoreKind::Milvus);
                assert!(
                    reason.starts_with("cannot reach http://127.0.0.1:9: "),
                    "{reason}"
                );
                assert!(
                    reason.len() > "cannot reach http://127.0.0.1:9: ".len(),
                    "{reason}"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
