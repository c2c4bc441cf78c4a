//! What dual mode needs from each store beyond the port: pgvector as the [`Source`] of
//! truth (rows by id, pages by id) and Milvus as the [`Replica`] the relay copies into
//! (rows put and removed by id whatever their tenant, ranges read at Strong consistency).

use async_trait::async_trait;
use vectorgate_adapter_milvus::MilvusStore;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_domain::{ChunkId, GatewayError, ScanFilter, VectorRecord, VectorStoreGateway};

/// The authoritative rows.
#[async_trait]
pub trait Source: Send + Sync {
    /// The rows with these ids that exist (any tenant), in no particular order.
    async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError>;

    /// Up to `limit` rows with `chunk_id > after`, ascending.
    async fn page(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<VectorRecord>, GatewayError>;
}

/// The copy the relay keeps equal to the source.
#[async_trait]
pub trait Replica: Send + Sync {
    async fn put(&self, rows: &[VectorRecord]) -> Result<u64, GatewayError>;

    /// Removes these ids, whatever tenant holds them.
    async fn remove(&self, ids: &[ChunkId]) -> Result<u64, GatewayError>;

    /// Every row with `from <= chunk_id <= to`, read so that every acknowledged write is
    /// seen (Strong consistency).
    async fn range(&self, from: ChunkId, to: ChunkId) -> Result<Vec<VectorRecord>, GatewayError>;

    /// The rows with these ids that exist, read as [`Replica::range`] reads.
    async fn copies(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError>;
}

#[async_trait]
impl Source for PgVectorStore {
    async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        PgVectorStore::fetch(self, ids).await
    }

    async fn page(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<VectorRecord>, GatewayError> {
        self.scan(ScanFilter::all(), after, limit).await
    }
}

/// The Milvus store used as a replica must read at Strong consistency: the factory builds
/// it so (see `Stores::milvus_replica`).
#[async_trait]
impl Replica for MilvusStore {
    async fn put(&self, rows: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.upsert_vectors(rows).await
    }

    async fn remove(&self, ids: &[ChunkId]) -> Result<u64, GatewayError> {
        self.delete_ids(ids).await
    }

    async fn range(&self, from: ChunkId, to: ChunkId) -> Result<Vec<VectorRecord>, GatewayError> {
        let rows = self.scan_range(ScanFilter::all(), from, to, true).await?;
        rows.into_iter()
            .map(|row| {
                let id = row.chunk_id;
                row.into_record().ok_or_else(|| {
                    GatewayError::backend(
                        vectorgate_domain::StoreKind::Milvus,
                        "scan",
                        format!("chunk {id} came back without its vector"),
                    )
                })
            })
            .collect()
    }

    async fn copies(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        self.fetch(ids).await
    }
}
