//! pgvector adapter: the authoritative store behind the `VectorStoreGateway` port.
//!
//! One table (default `knowledge_chunks`): `chunk_id bigint` primary key, `tenant_id`,
//! `project_id`, `embedding vector(DIM)`, `updated_at`, a btree on (tenant_id, project_id)
//! and an HNSW (or IVFFlat) index whose operator class matches the metric.
//!
//! - Upserts go in batches, one `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT` statement
//!   (one round trip, one transaction) per batch, after the whole call was validated.
//! - Searches run in a short transaction that sets `hnsw.ef_search` (never below k) and
//!   an iterative index scan, so a selective tenant/project filter still yields k rows.
//! - Every sqlx error is mapped to [`GatewayError`](vectorgate_domain::GatewayError) here,
//!   naming the operation; no sqlx type crosses the port (only [`PgVectorStore::pool`],
//!   an extra of the concrete type for the composition layer).

mod config;
mod copy;
mod error;
mod schema;
mod store;

pub use config::{redact_url, validate_identifier, PgIndex, PgVectorConfig};
pub use store::{BulkLoadReport, PgVectorStore};
