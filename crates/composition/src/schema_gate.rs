//! Dual mode started while Milvus was unreachable.
//!
//! pgvector is the source of truth, so a dual-mode service must start when only Milvus is
//! down (a Milvus outage after start never fails a caller either). The factory then cannot
//! create or verify the Milvus collection at build time; [`SchemaOnFirstUse`] puts that
//! check in front of every Milvus call instead, until it succeeds once. Until then Milvus
//! calls fail with `Unavailable`, which the dual gateway turns into a warning and an outbox
//! entry, so nothing is lost; the first call that reaches Milvus creates or verifies the
//! collection, and `sync` replays what was missed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use vectorgate_domain::{
    ChunkId, DeleteRequest, Dimension, GatewayError, HealthStatus, Metric, SearchHit,
    SearchRequest, StoreKind, TenantConflict, VectorRecord, VectorStoreGateway,
};

use crate::rows::Replica;

/// Creates or verifies a store's schema (the Milvus collection, its index and load state).
#[async_trait]
pub trait SchemaSetup: Send + Sync {
    async fn ensure_schema(&self) -> Result<(), GatewayError>;
}

#[async_trait]
impl SchemaSetup for vectorgate_adapter_milvus::MilvusStore {
    async fn ensure_schema(&self) -> Result<(), GatewayError> {
        vectorgate_adapter_milvus::MilvusStore::ensure_schema(self).await
    }
}

/// A store whose schema is ensured before its first operation that reaches the server.
///
/// Data operations (`upsert_vectors`, `delete_vectors`, `search`, and the relay's replica
/// calls) first ensure the schema; `health` and `close` go straight through (health
/// reports a missing collection itself). Attempts do not queue: while one call is ensuring
/// the schema, concurrent calls fail fast with `Unavailable` rather than wait for a
/// connect timeout each, which would add up on the caller's path.
pub struct SchemaOnFirstUse {
    gateway: Arc<dyn VectorStoreGateway>,
    replica: Arc<dyn Replica>,
    schema: Arc<dyn SchemaSetup>,
    ready: AtomicBool,
    attempt: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SchemaOnFirstUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaOnFirstUse")
            .field("store", &self.gateway.store_kind())
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SchemaOnFirstUse {
    pub fn new(
        gateway: Arc<dyn VectorStoreGateway>,
        replica: Arc<dyn Replica>,
        schema: Arc<dyn SchemaSetup>,
    ) -> Self {
        Self {
            gateway,
            replica,
            schema,
            ready: AtomicBool::new(false),
            attempt: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the schema has been ensured.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Ensures the schema unless that already succeeded.
    pub async fn ready(&self) -> Result<(), GatewayError> {
        if self.is_ready() {
            return Ok(());
        }
        let store = self.gateway.store_kind();
        let Ok(_attempt) = self.attempt.try_lock() else {
            return Err(GatewayError::unavailable(
                store,
                "not reached yet since start-up; another call is creating or verifying its schema",
            ));
        };
        if self.is_ready() {
            return Ok(());
        }
        self.schema.ensure_schema().await?;
        self.ready.store(true, Ordering::Release);
        tracing::info!(
            store = %store,
            "{store} reached: schema created or verified; writes reach it again \
             (the relay replays what the outbox holds)"
        );
        Ok(())
    }
}

#[async_trait]
impl VectorStoreGateway for SchemaOnFirstUse {
    fn store_kind(&self) -> StoreKind {
        self.gateway.store_kind()
    }

    fn dimension(&self) -> Dimension {
        self.gateway.dimension()
    }

    fn metric(&self) -> Metric {
        self.gateway.metric()
    }

    async fn tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        self.gateway.tenant_conflicts(records).await
    }

    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.ready().await?;
        self.gateway.upsert_vectors(records).await
    }

    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        self.ready().await?;
        self.gateway.delete_vectors(request).await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError> {
        self.ready().await?;
        self.gateway.search(request).await
    }

    async fn health(&self) -> Result<HealthStatus, GatewayError> {
        self.gateway.health().await
    }

    async fn close(&self) -> Result<(), GatewayError> {
        self.gateway.close().await
    }
}

#[async_trait]
impl Replica for SchemaOnFirstUse {
    async fn put(&self, rows: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.ready().await?;
        self.replica.put(rows).await
    }

    async fn remove(&self, ids: &[ChunkId]) -> Result<u64, GatewayError> {
        self.ready().await?;
        self.replica.remove(ids).await
    }

    async fn range(&self, from: ChunkId, to: ChunkId) -> Result<Vec<VectorRecord>, GatewayError> {
        self.ready().await?;
        self.replica.range(from, to).await
    }

    async fn copies(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        self.ready().await?;
        self.replica.copies(ids).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Notify;
    use vectorgate_domain::{Metric, ProjectId, TenantId};

    use super::*;
    use crate::testing::MemoryStore;

    /// A schema check that waits until released, then succeeds.
    #[derive(Default)]
    struct SlowSchema {
        release: Notify,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl SchemaSetup for SlowSchema {
        async fn ensure_schema(&self) -> Result<(), GatewayError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.release.notified().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn calls_during_a_schema_attempt_fail_fast_instead_of_queueing() {
        let store = Arc::new(MemoryStore::new(
            StoreKind::Milvus,
            Dimension::new(2).unwrap(),
            Metric::Ip,
        ));
        let schema = Arc::new(SlowSchema::default());
        let gate = Arc::new(SchemaOnFirstUse::new(
            store.clone(),
            store.clone(),
            schema.clone(),
        ));
        let first = tokio::spawn({
            let gate = gate.clone();
            async move { gate.ready().await }
        });
        while schema.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let record = VectorRecord::new(
            ChunkId::new(1).unwrap(),
            TenantId::new(1).unwrap(),
            ProjectId::new(1).unwrap(),
            vectorgate_domain::Embedding::new(vec![1.0, 0.0]).unwrap(),
        );
        let err = gate
            .upsert_vectors(std::slice::from_ref(&record))
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(
            store.snapshot().is_empty(),
            "nothing written before the schema"
        );

        schema.release.notify_one();
        first.await.unwrap().unwrap();
        assert!(gate.is_ready());
        assert_eq!(gate.upsert_vectors(&[record]).await.unwrap(), 1);
        assert_eq!(schema.calls.load(Ordering::SeqCst), 1, "ensured once");
        assert_eq!(store.snapshot().len(), 1);
    }
}
