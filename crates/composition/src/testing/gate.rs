//! A store wrapper that stops chosen calls at a gate, so that a test can force the order
//! in which concurrent writers, the relay and the stores interleave.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Semaphore;
use vectorgate_domain::{
    ChunkId, DeleteRequest, Dimension, GatewayError, HealthStatus, Metric, SearchHit,
    SearchRequest, StoreKind, TenantConflict, VectorRecord, VectorStoreGateway,
};

use super::MemoryStore;
use crate::rows::Replica;

/// The calls a gate can stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Upsert,
    Delete,
    Put,
    Remove,
    Range,
}

#[derive(Debug)]
struct Hold {
    /// Released once the call reached the gate.
    reached: Arc<Semaphore>,
    /// Acquired before the call proceeds.
    open: Arc<Semaphore>,
}

/// A [`MemoryStore`] whose next call of a kind can be held at a gate, and whose next call
/// of a kind can be made to fail.
#[derive(Debug)]
pub struct Gated {
    inner: Arc<MemoryStore>,
    holds: Mutex<HashMap<Call, Hold>>,
    failures: Mutex<HashMap<Call, u32>>,
}

/// A held call: wait until it arrives, then let it go.
#[derive(Debug)]
pub struct Held {
    reached: Arc<Semaphore>,
    open: Arc<Semaphore>,
}

impl Held {
    /// A held call, with the semaphores its gate signals (`reached`) and waits on (`open`).
    pub(crate) fn with_gate() -> (Self, Arc<Semaphore>, Arc<Semaphore>) {
        let reached = Arc::new(Semaphore::new(0));
        let open = Arc::new(Semaphore::new(0));
        let held = Self {
            reached: reached.clone(),
            open: open.clone(),
        };
        (held, reached, open)
    }

    /// What a held call does at its gate: says it arrived, then waits to be let go.
    pub(crate) async fn stop(reached: &Semaphore, open: &Semaphore) {
        reached.add_permits(1);
        open.acquire().await.unwrap().forget();
    }

    pub async fn reached(&self) {
        self.reached.acquire().await.unwrap().forget();
    }

    pub fn release(&self) {
        self.open.add_permits(1);
    }
}

impl Gated {
    pub fn new(inner: Arc<MemoryStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            holds: Mutex::default(),
            failures: Mutex::default(),
        })
    }

    /// The next `call` stops at the gate until released.
    pub fn hold(&self, call: Call) -> Held {
        let (held, reached, open) = Held::with_gate();
        self.holds
            .lock()
            .unwrap()
            .insert(call, Hold { reached, open });
        held
    }

    /// The next `times` calls of `call` fail with `Unavailable`.
    pub fn fail(&self, call: Call, times: u32) {
        self.failures.lock().unwrap().insert(call, times);
    }

    async fn gate(&self, call: Call) -> Result<(), GatewayError> {
        let hold = self.holds.lock().unwrap().remove(&call);
        if let Some(hold) = hold {
            Held::stop(&hold.reached, &hold.open).await;
        }
        let mut failures = self.failures.lock().unwrap();
        if let Some(n) = failures.get_mut(&call) {
            if *n > 0 {
                *n -= 1;
                return Err(GatewayError::unavailable(
                    self.inner.store_kind(),
                    "injected failure (test)",
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl VectorStoreGateway for Gated {
    fn store_kind(&self) -> StoreKind {
        self.inner.store_kind()
    }

    fn dimension(&self) -> Dimension {
        self.inner.dimension()
    }

    fn metric(&self) -> Metric {
        self.inner.metric()
    }

    async fn tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        self.inner.tenant_conflicts(records).await
    }

    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.gate(Call::Upsert).await?;
        self.inner.upsert_vectors(records).await
    }

    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        self.gate(Call::Delete).await?;
        self.inner.delete_vectors(request).await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError> {
        self.inner.search(request).await
    }

    async fn health(&self) -> Result<HealthStatus, GatewayError> {
        self.inner.health().await
    }

    async fn close(&self) -> Result<(), GatewayError> {
        Ok(())
    }
}

#[async_trait]
impl Replica for Gated {
    async fn put(&self, rows: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.gate(Call::Put).await?;
        self.inner.put(rows).await
    }

    async fn remove(&self, ids: &[ChunkId]) -> Result<u64, GatewayError> {
        self.gate(Call::Remove).await?;
        self.inner.remove(ids).await
    }

    async fn range(&self, from: ChunkId, to: ChunkId) -> Result<Vec<VectorRecord>, GatewayError> {
        self.gate(Call::Range).await?;
        self.inner.range(from, to).await
    }

    async fn copies(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        self.inner.copies(ids).await
    }
}
