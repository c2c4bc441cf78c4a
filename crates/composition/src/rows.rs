//! Row access beyond the port that `sync` needs from both stores, and its implementation
//! on the two adapters.

use async_trait::async_trait;
use vectorgate_adapter_milvus::MilvusStore;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_domain::{ChunkId, GatewayError, ProjectId, ScanFilter, TenantId, VectorRecord};

/// Where a row lives (the non-vector columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub chunk_id: ChunkId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
}

impl From<&VectorRecord> for RowKey {
    fn from(r: &VectorRecord) -> Self {
        Self {
            chunk_id: r.chunk_id,
            tenant_id: r.tenant_id,
            project_id: r.project_id,
        }
    }
}

/// Reads of whole rows by id and of a scope's keys.
#[async_trait]
pub trait StoreRows: Send + Sync {
    /// The rows with these ids that exist (any tenant), in no particular order.
    async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError>;

    /// Keys of every row matching `filter`, ascending by chunk id (no vectors).
    async fn scope_keys(&self, filter: ScanFilter) -> Result<Vec<RowKey>, GatewayError>;
}

#[async_trait]
impl StoreRows for PgVectorStore {
    async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        PgVectorStore::fetch(self, ids).await
    }

    async fn scope_keys(&self, filter: ScanFilter) -> Result<Vec<RowKey>, GatewayError> {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = self.scan(filter, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.chunk_id);
            keys.extend(page.iter().map(RowKey::from));
        }
        Ok(keys)
    }
}

#[async_trait]
impl StoreRows for MilvusStore {
    async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        MilvusStore::fetch(self, ids).await
    }

    async fn scope_keys(&self, filter: ScanFilter) -> Result<Vec<RowKey>, GatewayError> {
        let rows = self
            .scan_range(filter, ChunkId::new(0)?, ChunkId::new(i64::MAX)?, false)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| RowKey {
                chunk_id: r.chunk_id,
                tenant_id: r.tenant_id,
                project_id: r.project_id,
            })
            .collect())
    }
}
