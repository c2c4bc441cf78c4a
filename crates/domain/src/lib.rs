//! The vector-store gateway port.
//!
//! Services read and write embeddings through [`VectorStoreGateway`]; adapters
//! (pgvector, Milvus) implement it. This crate holds the validated value types the port
//! speaks in and the one error enum every adapter maps its failures to. It has no I/O
//! dependency on purpose: a service that depends on it pulls in no database driver.
//!
//! # Score convention
//! Every store returns scores with the same meaning: **higher is more similar**.
//! - [`Metric::Ip`]: the inner product `a·b`.
//! - [`Metric::Cosine`]: the cosine similarity `a·b / (|a| |b|)`.
//! - [`Metric::L2`]: the negative Euclidean distance `-|a - b|`.
//!
//! [`Metric::score`] computes that score exactly; adapters convert their native distances
//! to it and tests hold them to it.

mod error;
mod health;
pub mod outbox;
mod port;
mod request;
mod text;
mod values;

pub use error::{Cause, GatewayError, StoreKind, TenantConflict};
pub use health::{CollectionStatus, HealthStatus, StoreHealth};
#[cfg(feature = "mock")]
pub use port::MockVectorStoreGateway;
pub use port::VectorStoreGateway;
pub use request::{
    validate_records, DeleteRequest, ProjectFilter, ScanFilter, SearchHit, SearchRequest,
    SearchRequestBuilder, SearchScope, VectorRecord,
};
pub use text::id_list;
pub use values::{ChunkId, Dimension, Embedding, Metric, ProjectId, TenantId, TopK};
