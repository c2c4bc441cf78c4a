//! The benchmark's reference: the same column-wise upserts sent through milvus-sdk-rust
//! directly, without the gateway (no validation, no batching logic, no metrics).

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use milvus::data::FieldColumn;
use milvus::schema::FieldSchema;
use milvus::value::ValueVec;
use vectorgate_domain::{GatewayError, VectorRecord};

use crate::client::{map_error, LazyClient};
use crate::config::MilvusConfig;
use crate::schema::{FIELD_CHUNK_ID, FIELD_EMBEDDING, FIELD_PROJECT_ID, FIELD_TENANT_ID};

/// Upserts `records` in batches of `batch` rows with `concurrency` requests in flight,
/// through the SDK's `Client::upsert`; returns the elapsed time (connection excluded).
pub async fn sdk_upsert(
    config: &MilvusConfig,
    records: &[VectorRecord],
    batch: usize,
    concurrency: usize,
) -> Result<Duration, GatewayError> {
    let lazy_client = LazyClient::new(config);
    let client = lazy_client.client().await?;
    let dim = i64::from(config.dimension.get());
    let started = Instant::now();
    futures::stream::iter(records.chunks(batch.max(1)))
        .map(|chunk| {
            let columns = vec![
                FieldColumn::new(
                    &FieldSchema::new_int64(FIELD_CHUNK_ID, ""),
                    ValueVec::Long(chunk.iter().map(|r| r.chunk_id.get()).collect()),
                ),
                FieldColumn::new(
                    &FieldSchema::new_int64(FIELD_TENANT_ID, ""),
                    ValueVec::Long(chunk.iter().map(|r| r.tenant_id.get()).collect()),
                ),
                FieldColumn::new(
                    &FieldSchema::new_int64(FIELD_PROJECT_ID, ""),
                    ValueVec::Long(chunk.iter().map(|r| r.project_id.get()).collect()),
                ),
                FieldColumn::new(
                    &FieldSchema::new_float_vector(FIELD_EMBEDDING, "", dim),
                    ValueVec::Float(
                        chunk
                            .iter()
                            .flat_map(|r| r.embedding.as_slice().iter().copied())
                            .collect(),
                    ),
                ),
            ];
            let collection = config.collection.clone();
            async move {
                client
                    .upsert(collection, columns, None::<milvus::mutate::UpsertOptions>)
                    .await
                    .map(|_| ())
                    .map_err(|err| map_error("upsert", &config.endpoint(), err))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}
