//! An in-memory store (exact search by brute force) with fault injection, for unit tests
//! of the dual gateway, `sync` and the factory without servers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use vectorgate_domain::{
    validate_records, ChunkId, CollectionStatus, DeleteRequest, Dimension, GatewayError,
    HealthStatus, Metric, ProjectFilter, SearchHit, SearchRequest, StoreHealth, StoreKind,
    TenantConflict, VectorRecord, VectorStoreGateway,
};

use crate::mode::StateTable;
use crate::rows::{Replica, Source};

/// In-memory gateway. `set_down(true)` makes every call fail with `Unavailable`.
#[derive(Debug)]
pub struct MemoryStore {
    kind: StoreKind,
    dimension: Dimension,
    metric: Metric,
    rows: Mutex<BTreeMap<ChunkId, VectorRecord>>,
    down: AtomicBool,
    writes: AtomicU64,
    /// Moves between tenants are allowed unless [`MemoryStore::refusing_tenant_moves`]
    /// (dual-mode tests move chunks on purpose).
    allow_tenant_move: bool,
}

impl MemoryStore {
    pub fn new(kind: StoreKind, dimension: Dimension, metric: Metric) -> Self {
        Self {
            kind,
            dimension,
            metric,
            rows: Mutex::new(BTreeMap::new()),
            down: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            allow_tenant_move: true,
        }
    }

    /// A store that refuses to move a chunk to another tenant, as pgvector does by default.
    pub fn refusing_tenant_moves(mut self) -> Self {
        self.allow_tenant_move = false;
        self
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every row, ordered by chunk id.
    pub fn snapshot(&self) -> Vec<VectorRecord> {
        self.rows.lock().unwrap().values().cloned().collect()
    }

    /// Write calls (upserts and deletes) that reached the store.
    pub fn write_calls(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Writes behind the gateway's back (drift injection in tests).
    pub fn put_raw(&self, record: VectorRecord) {
        self.rows.lock().unwrap().insert(record.chunk_id, record);
    }

    pub(crate) fn check_up(&self) -> Result<(), GatewayError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(GatewayError::unavailable(
                self.kind,
                "in-memory store is down (test fault)",
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl VectorStoreGateway for MemoryStore {
    fn store_kind(&self) -> StoreKind {
        self.kind
    }

    fn dimension(&self) -> Dimension {
        self.dimension
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    async fn tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        if self.allow_tenant_move {
            return Ok(Vec::new());
        }
        let rows = self.rows.lock().unwrap();
        let mut conflicts: Vec<TenantConflict> = records
            .iter()
            .filter_map(|r| {
                let stored = rows.get(&r.chunk_id)?;
                (stored.tenant_id != r.tenant_id).then_some(TenantConflict {
                    chunk_id: r.chunk_id,
                    owner: stored.tenant_id,
                    requested: r.tenant_id,
                })
            })
            .collect();
        conflicts.sort_by_key(|c| c.chunk_id);
        Ok(conflicts)
    }

    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        validate_records(records, self.dimension, self.metric)?;
        self.check_up()?;
        let conflicts = self.tenant_conflicts(records).await?;
        if !conflicts.is_empty() {
            return Err(GatewayError::TenantConflict { conflicts });
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut rows = self.rows.lock().unwrap();
        for r in records {
            rows.insert(r.chunk_id, r.clone());
        }
        Ok(records.len() as u64)
    }

    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        request.validate()?;
        self.check_up()?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut rows = self.rows.lock().unwrap();
        let doomed: Vec<ChunkId> = rows
            .values()
            .filter(|r| match request {
                DeleteRequest::Chunks {
                    tenant_id,
                    projects,
                    chunk_ids,
                } => {
                    r.tenant_id == *tenant_id
                        && chunk_ids.contains(&r.chunk_id)
                        && match projects {
                            ProjectFilter::All => true,
                            ProjectFilter::Only(set) => set.contains(&r.project_id),
                        }
                }
                DeleteRequest::Project {
                    tenant_id,
                    project_id,
                } => r.tenant_id == *tenant_id && r.project_id == *project_id,
                DeleteRequest::Tenant { tenant_id } => r.tenant_id == *tenant_id,
            })
            .map(|r| r.chunk_id)
            .collect();
        for id in &doomed {
            rows.remove(id);
        }
        Ok(doomed.len() as u64)
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError> {
        request.validate(self.dimension, self.metric)?;
        self.check_up()?;
        let rows = self.rows.lock().unwrap();
        let query = request.embedding.as_slice();
        let mut hits: Vec<SearchHit> = rows
            .values()
            .filter(|r| request.scope.contains(r.tenant_id, r.project_id))
            .map(|r| SearchHit {
                chunk_id: r.chunk_id,
                project_id: r.project_id,
                score: self.metric.score(query, r.embedding.as_slice()),
            })
            .filter(|h| request.min_score.is_none_or(|m| h.score >= m))
            .collect();
        SearchHit::rank(&mut hits);
        hits.truncate(request.top_k.get() as usize);
        Ok(hits)
    }

    async fn health(&self) -> Result<HealthStatus, GatewayError> {
        self.check_up()?;
        Ok(HealthStatus::single(StoreHealth {
            store: self.kind,
            reachable: true,
            server_version: Some("memory".to_string()),
            collection: Some(CollectionStatus {
                name: "memory".to_string(),
                exists: true,
                dimension: Some(self.dimension.get()),
                metric: Some(self.metric),
                row_count: Some(self.rows.lock().unwrap().len() as u64),
                ..CollectionStatus::default()
            }),
            problem: None,
            warnings: Vec::new(),
        }))
    }

    async fn close(&self) -> Result<(), GatewayError> {
        Ok(())
    }
}

#[async_trait]
impl Source for MemoryStore {
    async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        self.check_up()?;
        let rows = self.rows.lock().unwrap();
        Ok(ids.iter().filter_map(|id| rows.get(id).cloned()).collect())
    }

    async fn page(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<VectorRecord>, GatewayError> {
        self.check_up()?;
        let rows = self.rows.lock().unwrap();
        Ok(rows
            .values()
            .filter(|r| after.is_none_or(|a| r.chunk_id > a))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Replica for MemoryStore {
    async fn put(&self, rows: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.upsert_vectors(rows).await
    }

    async fn remove(&self, ids: &[ChunkId]) -> Result<u64, GatewayError> {
        self.check_up()?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        let mut rows = self.rows.lock().unwrap();
        Ok(ids.iter().filter(|id| rows.remove(id).is_some()).count() as u64)
    }

    async fn range(&self, from: ChunkId, to: ChunkId) -> Result<Vec<VectorRecord>, GatewayError> {
        self.check_up()?;
        let rows = self.rows.lock().unwrap();
        Ok(rows.range(from..=to).map(|(_, r)| r.clone()).collect())
    }

    async fn copies(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        self.check_up()?;
        let rows = self.rows.lock().unwrap();
        Ok(ids.iter().filter_map(|id| rows.get(id).cloned()).collect())
    }
}

impl MemoryStore {
    /// Deletes a project or tenant at once and returns the ids it held (what pgvector's
    /// outbox statement does in one transaction).
    pub fn delete_scope_now(&self, request: &DeleteRequest) -> Result<Vec<ChunkId>, GatewayError> {
        self.check_up()?;
        let mut rows = self.rows.lock().unwrap();
        let doomed: Vec<ChunkId> = rows
            .values()
            .filter(|r| match request {
                DeleteRequest::Project {
                    tenant_id,
                    project_id,
                } => r.tenant_id == *tenant_id && r.project_id == *project_id,
                DeleteRequest::Tenant { tenant_id } => r.tenant_id == *tenant_id,
                DeleteRequest::Chunks { .. } => false,
            })
            .map(|r| r.chunk_id)
            .collect();
        for id in &doomed {
            rows.remove(id);
        }
        Ok(doomed)
    }
}

/// The state table in memory.
#[derive(Debug, Default)]
pub struct MemoryState(Mutex<BTreeMap<String, String>>);

#[async_trait]
impl StateTable for MemoryState {
    async fn load(&self, key: &str) -> Result<Option<String>, GatewayError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }

    async fn swap(&self, key: &str, value: &str) -> Result<Option<String>, GatewayError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .insert(key.to_string(), value.to_string()))
    }
}
