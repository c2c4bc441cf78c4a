//! pgvector adapter: the authoritative store behind the `VectorStoreGateway` port, and
//! every SQL statement of the project.
//!
//! One table (default `knowledge_chunks`): `chunk_id`, `tenant_id`, `project_id`,
//! `embedding vector(DIM)`, `updated_at`, a btree on (tenant_id, project_id) and an HNSW (or
//! IVFFlat) index whose operator class matches the metric; new tables are hash-partitioned
//! by tenant, with a chunk-id registry beside them (`layout.rs`). Beside it, the
//! operator tables ([`PgVectorStore::swap_state`], backfill checkpoints).
//!
//! - Upserts go in batches, one `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT` statement
//!   (one round trip, one transaction) per batch, after the whole call was validated.
//! - Searches of small scopes are exact; larger ones run in a short transaction that sets
//!   `hnsw.ef_search` (never below k) and an iterative index scan, so a selective
//!   tenant/project filter still yields k rows, and forces the vector index (the planner
//!   would often read a selective scope through the b-tree and sort it).
//!   [`PgVectorStore::search_plan`] shows the plan a scope gets.
//! - Every sqlx error is mapped to [`GatewayError`](vectorgate_domain::GatewayError) in
//!   `error.rs`, naming the operation and keeping the sqlx error as its source; no sqlx
//!   type crosses the crate's API.

mod bootstrap;
mod bulk;
mod config;
mod copy;
mod error;
mod health;
mod layout;
mod metric;
mod outbox;
mod plan;
mod retry;
mod scan;
mod schema;
mod search;
mod sql;
mod state;
mod store;
mod url;
mod write;

pub use bulk::BulkLoadReport;
pub use config::{
    limits, range_text, validate_identifier, IndexKind, IndexPrecision, PgIndex, PgVectorConfig,
    IDENTIFIER_ACCEPTED,
};
pub use layout::{TableLayout, DEFAULT_TENANT_PARTITIONS};
pub use outbox::PgOutbox;
pub use plan::SearchPlan;
pub use state::{BackfillJob, Checkpoint};
pub use store::PgVectorStore;
pub use url::{redact_url, url_has_password, DatabaseUrl};
