//! The benchmark's reference: the same column-wise upserts sent through milvus-sdk-rust
//! directly, without the gateway (no validation, no batching logic, no seam).
//!
//! This is the one place outside `vectorgate-adapter-milvus`'s `client` module that calls
//! the SDK: it measures the SDK itself, so going through the adapter would measure the
//! adapter twice. It connects with the rule the adapter's client uses (URL, per-call
//! timeout, connect timeout, credentials, database) so that both talk to Milvus alike.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use milvus::client::Client;
use milvus::data::FieldColumn;
use milvus::schema::FieldSchema;
use milvus::value::ValueVec;
use secrecy::ExposeSecret;
use vectorgate_adapter_milvus::{
    MilvusConfig, FIELD_CHUNK_ID, FIELD_EMBEDDING, FIELD_PROJECT_ID, FIELD_TENANT_ID,
};
use vectorgate_domain::VectorRecord;

/// How the SDK writes the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Upsert,
    /// New ids only; the one write Milvus 2.3 routes by a partition key.
    Insert,
}

/// Upserts `records` in batches of `batch` rows with `concurrency` requests in flight,
/// through the SDK's `Client::upsert`; returns the elapsed time (connection excluded).
pub async fn sdk_upsert(
    config: &MilvusConfig,
    records: &[VectorRecord],
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    sdk_write(config, Write::Upsert, records, batch, concurrency).await
}

/// Writes `records` as [`sdk_upsert`] does, by `write`.
pub async fn sdk_write(
    config: &MilvusConfig,
    write: Write,
    records: &[VectorRecord],
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let client = connect(config).await?;
    let client = &client;
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
                match write {
                    Write::Upsert => client
                        .upsert(collection, columns, None::<milvus::mutate::UpsertOptions>)
                        .await
                        .map(|_| ()),
                    Write::Insert => client.insert(collection, columns, None).await.map(|_| ()),
                }
                .with_context(|| format!("SDK {write:?} to {}", config.endpoint()))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}

/// The SDK client as the adapter makes it: `http://host:port`, the per-call timeout, the
/// connect timeout around the handshake, then the configured database.
async fn connect(config: &MilvusConfig) -> anyhow::Result<Client> {
    let endpoint = config.endpoint();
    let (username, password) = credentials(config)?;
    // `endpoint()` is the whole URI, scheme included (plain text: the benchmark's servers).
    let attempt = Client::with_timeout(endpoint.clone(), config.call_timeout, username, password);
    let mut client = tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .with_context(|| {
            format!(
                "cannot reach {endpoint}: no connection within {:?}",
                config.connect_timeout
            )
        })?
        .with_context(|| format!("cannot reach {endpoint}"))?;
    if let Some(database) = &config.database {
        client
            .using_database(database.clone())
            .await
            .with_context(|| format!("using database {database} on {endpoint}"))?;
    }
    Ok(client)
}

/// The v1 client sends a user/password pair only: a `user:password` token is split into
/// one, as the adapter does; any other token cannot be sent.
fn credentials(config: &MilvusConfig) -> anyhow::Result<(Option<String>, Option<String>)> {
    if let Some(token) = &config.token {
        let (user, password) = token
            .expose_secret()
            .split_once(':')
            .context("MILVUS_TOKEN must be user:password for milvus-sdk-rust's v1 client")?;
        return Ok((Some(user.to_string()), Some(password.to_string())));
    }
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => Ok((
            Some(user.clone()),
            Some(password.expose_secret().to_string()),
        )),
        (None, None) => Ok((None, None)),
        _ => anyhow::bail!("MILVUS_USERNAME and MILVUS_PASSWORD must be set together"),
    }
}
