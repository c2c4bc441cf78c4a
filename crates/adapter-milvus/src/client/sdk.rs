//! [`SdkMilvusApi`]: [`MilvusApi`] over milvus-sdk-rust's generated gRPC client. Every
//! Milvus call the adapter makes is in this module (`data`: the data calls, `partitions`:
//! named partitions; the rest here). The SDK's v1 types still build schemas,
//! index parameters, placeholder groups and columns; the calls go through the generated
//! client because the v1 `Client` sends no API key and clears the partition-key flag, and
//! `ClientV2` cannot read Milvus 2.3's search rows (it leaves the primary-key name empty).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use milvus::index::{IndexInfo, IndexParams, IndexType, MetricType};
use milvus::proto::common::{IndexState, LoadState, MsgBase, MsgType, SegmentState};
use milvus::proto::milvus::{
    ConnectRequest, CreateCollectionRequest, CreateIndexRequest, DescribeCollectionRequest,
    DescribeIndexRequest, DropCollectionRequest, FlushRequest, GetLoadStateRequest,
    GetLoadingProgressRequest, GetQuerySegmentInfoRequest, HasCollectionRequest, IndexDescription,
    LoadCollectionRequest,
};
use milvus::schema::{CollectionSchemaBuilder, FieldSchema};
use prost::Message;
use vectorgate_domain::GatewayError;

mod data;
mod partitions;

use super::connect::{LazyClient, MilvusClient};
use super::error::map_error;
use super::fence::SessionFence;
use super::wire::{consistency_level, failure, sdk_field, Replied, SdkError};
use super::{
    CollectionDescription, ColumnBatch, FieldKind, FieldSpec, IndexSpec, LoadStatus, MilvusApi,
    QueryCall, RawHit, Rows, SearchCall, SegmentInfo, STORE,
};
use crate::config::{Consistency, MilvusConfig};

/// How often an index build or a load is polled while the adapter waits for it.
const POLL: Duration = Duration::from_millis(500);

/// [`MilvusApi`] over milvus-sdk-rust's generated gRPC client.
#[derive(Debug)]
pub struct SdkMilvusApi {
    lazy_client: LazyClient,
    fence: SessionFence,
    /// Bound on the waits the adapter polls for (index build, load).
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

    async fn client(&self) -> Result<MilvusClient, GatewayError> {
        self.lazy_client.client().await
    }

    fn err(&self, operation: &'static str) -> impl Fn(SdkError) -> GatewayError + '_ {
        move |err| map_error(operation, self.lazy_client.endpoint(), err)
    }

    /// Sends one request: the transport's refusal and the reply's own status both become
    /// the operation's error.
    async fn call<T: Replied>(
        &self,
        operation: &'static str,
        reply: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, GatewayError> {
        send(reply).await.map_err(self.err(operation))
    }

    /// The descriptions of the indexes on `field` (of `index_name` only, unless empty);
    /// none when the field has no index, which 2.3 answers with an error (IndexNotExist).
    async fn index_descriptions(
        &self,
        operation: &'static str,
        collection: &str,
        field: &str,
        index_name: &str,
    ) -> Result<Vec<IndexDescription>, GatewayError> {
        let mut client = self.client().await?;
        let reply = send(client.describe_index(DescribeIndexRequest {
            base: Some(MsgBase::new(MsgType::DescribeIndex)),
            collection_name: collection.to_string(),
            field_name: field.to_string(),
            index_name: index_name.to_string(),
            ..Default::default()
        }))
        .await;
        match reply {
            Ok(reply) => Ok(reply.index_descriptions),
            Err(SdkError::Server(code, reason))
                if format!("{code:?}") == "IndexNotExist"
                    || reason.contains("index not found")
                    || reason.contains("index doesn't exist") =>
            {
                Ok(Vec::new())
            }
            Err(err) => Err(self.err(operation)(err)),
        }
    }

    /// Polls `done` until it says so, within the wait bound.
    async fn wait_until<F, Fut>(&self, operation: &'static str, done: F) -> Result<(), GatewayError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<bool, GatewayError>>,
    {
        let waiting = async {
            while !done().await? {
                tokio::time::sleep(POLL).await;
            }
            Ok(())
        };
        match tokio::time::timeout(self.wait_timeout, waiting).await {
            Ok(result) => result,
            Err(_) => Err(GatewayError::backend(
                STORE,
                operation,
                format!("not finished within {:?}", self.wait_timeout),
            )),
        }
    }
}

/// A request's reply, or the SDK error of its transport or of its own status.
async fn send<T: Replied>(
    reply: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, SdkError> {
    let reply = reply.await?.into_inner();
    match failure(reply.status()) {
        Some(err) => Err(err),
        None => Ok(reply),
    }
}

/// The data calls (`data`) and the partition calls (`partitions`) are inherent methods of
/// the same names, which take precedence in `Self::` paths.
#[async_trait]
impl MilvusApi for SdkMilvusApi {
    async fn server_version(&self) -> Result<String, GatewayError> {
        let mut client = self.client().await?;
        let reply = self
            .call(
                "server version",
                client.connect(ConnectRequest {
                    base: Some(MsgBase::new(MsgType::Connect)),
                    client_info: None,
                }),
            )
            .await?;
        Ok(reply
            .server_info
            .map(|info| info.build_tags)
            .unwrap_or_default())
    }

    async fn has_collection(&self, collection: &str) -> Result<bool, GatewayError> {
        let mut client = self.client().await?;
        let reply = self
            .call(
                "has collection",
                client.has_collection(HasCollectionRequest {
                    base: Some(MsgBase::new(MsgType::HasCollection)),
                    collection_name: collection.to_string(),
                    ..Default::default()
                }),
            )
            .await?;
        Ok(reply.value)
    }

    async fn describe_collection(
        &self,
        collection: &str,
    ) -> Result<CollectionDescription, GatewayError> {
        let mut client = self.client().await?;
        let described = self
            .call(
                "describe collection",
                client.describe_collection(DescribeCollectionRequest {
                    base: Some(MsgBase::new(MsgType::DescribeCollection)),
                    collection_name: collection.to_string(),
                    ..Default::default()
                }),
            )
            .await?;
        let fields = described
            .schema
            .unwrap_or_default()
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

    /// The SDK builds and checks the schema; its v1 conversion clears the partition-key
    /// flag, which is set again here.
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
        let mut client = self.client().await?;
        self.call("create collection", client.create_collection(request))
            .await?;
        Ok(())
    }

    async fn drop_collection(&self, collection: &str) -> Result<(), GatewayError> {
        let mut client = self.client().await?;
        self.call(
            "drop collection",
            client.drop_collection(DropCollectionRequest {
                base: Some(MsgBase::new(MsgType::DropCollection)),
                collection_name: collection.to_string(),
                ..Default::default()
            }),
        )
        .await?;
        Ok(())
    }

    async fn describe_index(
        &self,
        collection: &str,
        field: &str,
    ) -> Result<Vec<IndexSpec>, GatewayError> {
        Ok(self
            .index_descriptions("describe index", collection, field, "")
            .await?
            .into_iter()
            .map(IndexInfo::from)
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
                finished: matches!(info.state(), IndexState::Finished),
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
        let mut client = self.client().await?;
        self.call(
            "create index",
            client.create_index(CreateIndexRequest {
                base: Some(MsgBase::new(MsgType::CreateIndex)),
                collection_name: collection.to_string(),
                field_name: index.field_name.clone(),
                extra_params: params.extra_kv_params(),
                index_name: index.index_name.clone(),
                ..Default::default()
            }),
        )
        .await?;
        self.wait_until("create index", || async {
            let described = self
                .index_descriptions(
                    "create index",
                    collection,
                    &index.field_name,
                    &index.index_name,
                )
                .await?;
            let Some(built) = described.first() else {
                return Err(GatewayError::backend(
                    STORE,
                    "create index",
                    format!(
                        "index {} is not described after its creation",
                        index.index_name
                    ),
                ));
            };
            match built.state() {
                IndexState::Finished => Ok(true),
                IndexState::Failed => Err(GatewayError::backend(
                    STORE,
                    "create index",
                    format!("the build failed: {}", built.index_state_fail_reason),
                )),
                _ => Ok(false),
            }
        })
        .await
    }

    async fn load_collection(&self, collection: &str) -> Result<(), GatewayError> {
        let mut client = self.client().await?;
        self.call(
            "load collection",
            client.load_collection(LoadCollectionRequest {
                base: Some(MsgBase::new(MsgType::LoadCollection)),
                collection_name: collection.to_string(),
                ..Default::default()
            }),
        )
        .await?;
        self.wait_until("load collection", || {
            let mut client = client.clone();
            async move {
                let progress = self
                    .call(
                        "load collection",
                        client.get_loading_progress(GetLoadingProgressRequest {
                            base: Some(MsgBase::new(MsgType::Undefined)),
                            collection_name: collection.to_string(),
                            ..Default::default()
                        }),
                    )
                    .await?;
                Ok(progress.progress >= 100)
            }
        })
        .await
    }

    async fn load_status(&self, collection: &str) -> Result<LoadStatus, GatewayError> {
        let mut client = self.client().await?;
        let reply = self
            .call(
                "load state",
                client.get_load_state(GetLoadStateRequest {
                    base: Some(MsgBase::new(MsgType::Undefined)),
                    collection_name: collection.to_string(),
                    ..Default::default()
                }),
            )
            .await?;
        Ok(match reply.state() {
            LoadState::Loaded => LoadStatus::Loaded,
            LoadState::Loading => LoadStatus::Loading,
            LoadState::NotLoad => LoadStatus::NotLoaded,
            LoadState::NotExist => LoadStatus::NotExist,
        })
    }

    async fn flush(&self, collection: &str) -> Result<(), GatewayError> {
        let mut client = self.client().await?;
        self.call(
            "flush",
            client.flush(FlushRequest {
                base: Some(MsgBase::new(MsgType::Flush)),
                collection_names: vec![collection.to_string()],
                ..Default::default()
            }),
        )
        .await?;
        Ok(())
    }

    async fn loaded_segments(&self, collection: &str) -> Result<Vec<SegmentInfo>, GatewayError> {
        let mut client = self.client().await?;
        let reply = self
            .call(
                "list loaded segments",
                client.get_query_segment_info(GetQuerySegmentInfoRequest {
                    collection_name: collection.to_string(),
                    ..Default::default()
                }),
            )
            .await?;
        Ok(reply
            .infos
            .into_iter()
            .map(|s| SegmentInfo {
                rows: u64::try_from(s.num_rows).unwrap_or(0),
                growing: s.state() == SegmentState::Growing,
                index_name: s.index_name,
            })
            .collect())
    }

    async fn upsert(&self, collection: &str, batch: ColumnBatch) -> Result<u64, GatewayError> {
        Self::upsert(self, collection, batch).await
    }

    async fn delete(&self, collection: &str, expr: &str) -> Result<u64, GatewayError> {
        Self::delete(self, collection, expr).await
    }

    async fn search(&self, call: &SearchCall) -> Result<Vec<RawHit>, GatewayError> {
        Self::search(self, call).await
    }

    async fn query(&self, call: &QueryCall) -> Result<Rows, GatewayError> {
        Self::query(self, call).await
    }

    async fn count(
        &self,
        collection: &str,
        expr: &str,
        consistency: Consistency,
    ) -> Result<u64, GatewayError> {
        Self::count(self, collection, expr, consistency).await
    }

    async fn create_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError> {
        Self::create_partition(self, collection, partition).await
    }

    async fn has_partition(&self, collection: &str, partition: &str) -> Result<bool, GatewayError> {
        Self::has_partition(self, collection, partition).await
    }

    async fn release_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError> {
        Self::release_partition(self, collection, partition).await
    }

    async fn drop_partition(&self, collection: &str, partition: &str) -> Result<(), GatewayError> {
        Self::drop_partition(self, collection, partition).await
    }

    async fn list_partitions(&self, collection: &str) -> Result<Vec<String>, GatewayError> {
        Self::list_partitions(self, collection).await
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
