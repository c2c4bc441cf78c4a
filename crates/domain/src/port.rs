use async_trait::async_trait;

use crate::{
    DeleteRequest, Dimension, GatewayError, HealthStatus, Metric, SearchHit, SearchRequest,
    StoreKind, TenantConflict, VectorRecord,
};

/// The one port through which services read and write embeddings.
///
/// Implementations validate every request before touching their store: a bad request
/// returns [`GatewayError::InvalidInput`] or [`GatewayError::DimensionMismatch`] and
/// changes nothing already stored.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait VectorStoreGateway: Send + Sync {
    /// Which store answers (for logs and metrics). The dual gateway reports `Dual`.
    fn store_kind(&self) -> StoreKind;

    /// The embedding dimension this gateway was configured with.
    fn dimension(&self) -> Dimension;

    /// The similarity metric its scores follow (and its inputs are validated against).
    fn metric(&self) -> Metric;

    /// Inserts or replaces the records (keyed by `chunk_id`; a re-upsert replaces the
    /// tenant, project and vector). Returns how many records were written. An empty slice
    /// is a no-op returning 0. Duplicate chunk ids within one call are rejected and nothing
    /// of that call is written. A chunk stored under another tenant is not moved (unless
    /// the store allows moves): the call fails with `TenantConflict` and writes nothing.
    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError>;

    /// The records whose chunk id is stored under another tenant than the record names,
    /// in chunk-id order; empty when the store allows chunks to move between tenants.
    /// Upserts check this themselves; callers ask before writing elsewhere.
    async fn tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError>;

    /// Deletes within a tenant; returns how many records were removed.
    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError>;

    /// The `top_k` most similar records within the scope, best first, scores in the port's
    /// convention (higher is more similar), hits below `min_score` dropped.
    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError>;

    /// Reachability, versions and the table/collection's state of every store used.
    async fn health(&self) -> Result<HealthStatus, GatewayError>;

    /// Releases connections. Further calls may fail with `Unavailable`.
    async fn close(&self) -> Result<(), GatewayError>;
}
