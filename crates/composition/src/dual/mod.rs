//! Dual mode: pgvector is the source of truth, Milvus is written alongside, and a relay
//! keeps Milvus equal to pgvector whatever fails.
//!
//! A write records its chunk ids in the outbox, writes both stores at once and returns
//! pgvector's result; a Milvus failure never fails the caller. The relay (one per outbox
//! across processes) replays every id the writers could not settle, copying pgvector's row
//! as it is then, and compares a rolling window of both stores to find drift from any other
//! cause. Why this converges, for every interleaving, is argued in `docs/dual-mode.md`.

mod reconcile;
mod relay;
mod shadow;
mod write;

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vectorgate_domain::outbox::{Outbox, OutboxStats};
use vectorgate_domain::{
    DeleteRequest, Dimension, GatewayError, HealthStatus, Metric, SearchHit, SearchRequest,
    StoreHealth, StoreKind, TenantConflict, VectorRecord, VectorStoreGateway,
};

use crate::observability::{OUTBOX_DEPTH, RELAY_LAG_SECONDS};
use crate::rows::{Replica, Source};
use crate::settings::{DualSettings, ReadFrom};

use relay::Relay;
pub use relay::SyncReport;

/// The parts a dual gateway is made of.
#[derive(Clone)]
pub(crate) struct DualStores {
    /// Both wrapped in the instrumentation by the factory.
    pub pgvector: Arc<dyn VectorStoreGateway>,
    pub milvus: Arc<dyn VectorStoreGateway>,
    pub source: Arc<dyn Source>,
    pub replica: Arc<dyn Replica>,
    pub outbox: Arc<dyn Outbox>,
    /// Where the periodic reconcile keeps its place (a key/value table).
    pub state: Arc<dyn crate::mode::StateTable>,
}

/// The dual-write gateway. See the module docs.
pub struct DualGateway {
    stores: DualStores,
    settings: DualSettings,
    relay: Arc<Relay>,
    /// Settle tasks spawned by writes, so that `close()` and tests can wait for them.
    settles: TaskTracker,
    /// Stops the background relay (when one runs).
    stop: CancellationToken,
    relay_task: TaskTracker,
}

impl std::fmt::Debug for DualGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DualGateway")
            .field("settings", &self.settings)
            .field("outbox", &self.stores.outbox)
            .finish_non_exhaustive()
    }
}

impl DualGateway {
    /// The gateway over `stores`; with `settings.relay`, its relay starts in the background
    /// (it must then be built inside a Tokio runtime).
    pub(crate) fn new(stores: DualStores, settings: DualSettings) -> Self {
        let relay = Arc::new(Relay::new(&stores, &settings));
        let gateway = Self {
            stores,
            settings,
            relay,
            settles: TaskTracker::new(),
            stop: CancellationToken::new(),
            relay_task: TaskTracker::new(),
        };
        if gateway.settings.relay {
            let relay = Arc::clone(&gateway.relay);
            let stop = gateway.stop.clone();
            gateway
                .relay_task
                .spawn(async move { relay.run(stop).await });
        }
        gateway
    }

    pub fn settings(&self) -> &DualSettings {
        &self.settings
    }

    /// Waits for the settle tasks of earlier writes (outbox bookkeeping off the caller's
    /// path). Writes never wait for them; `close()` and tests do.
    pub async fn flush_background(&self) {
        // Settle tasks do not spawn others, so closing and waiting sees them all; the
        // tracker is reopened for later writes.
        self.settles.close();
        self.settles.wait().await;
        self.settles.reopen();
    }

    /// Depth, lag and failures of the outbox; also sets their gauges.
    pub async fn outbox_stats(&self) -> Result<OutboxStats, GatewayError> {
        let stats = self.stores.outbox.stats().await?;
        metrics::gauge!(OUTBOX_DEPTH).set(stats.depth as f64);
        metrics::gauge!(RELAY_LAG_SECONDS).set(stats.lag.map_or(0.0, |l| l.as_secs_f64()));
        Ok(stats)
    }

    /// Replays the outbox now, in this process: leads the relay for the time of the call
    /// (or, while another process's relay leads, waits for it to drain) and reports.
    pub async fn sync(&self) -> Result<SyncReport, GatewayError> {
        self.relay.sync(None).await
    }

    /// Has the relay copy these ids from pgvector (backfill, repair) and waits until it did.
    pub async fn replay(
        &self,
        ids: &[vectorgate_domain::ChunkId],
    ) -> Result<SyncReport, GatewayError> {
        self.stores.outbox.enqueue(ids).await?;
        self.relay.sync(Some(ids)).await
    }
}

#[async_trait]
impl VectorStoreGateway for DualGateway {
    fn store_kind(&self) -> StoreKind {
        StoreKind::Dual
    }

    fn dimension(&self) -> Dimension {
        self.stores.pgvector.dimension()
    }

    fn metric(&self) -> Metric {
        self.stores.pgvector.metric()
    }

    /// pgvector's answer: it decides which tenant owns a chunk; Milvus holds a copy.
    async fn tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        self.stores.pgvector.tenant_conflicts(records).await
    }

    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.upsert(records).await
    }

    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        self.delete(request).await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError> {
        let primary = match self.settings.read_from {
            ReadFrom::Pgvector => &self.stores.pgvector,
            ReadFrom::Milvus => &self.stores.milvus,
        };
        let hits = primary.search(request).await?;
        let rate = self.settings.shadow_read_rate;
        if rate > 0.0 && (rate >= 1.0 || rand::random::<f64>() < rate) {
            self.spawn_shadow_read(request, &hits);
        }
        Ok(hits)
    }

    async fn health(&self) -> Result<HealthStatus, GatewayError> {
        let (pg, milvus) = tokio::join!(self.stores.pgvector.health(), self.stores.milvus.health());
        let mut stores = Vec::new();
        for (store, result) in [(StoreKind::Pgvector, pg), (StoreKind::Milvus, milvus)] {
            match result {
                Ok(status) => stores.extend(status.stores),
                Err(err) => stores.push(StoreHealth {
                    store,
                    reachable: !err.is_unavailable(),
                    server_version: None,
                    collection: None,
                    problem: Some(err.to_string()),
                    warnings: Vec::new(),
                }),
            }
        }
        Ok(HealthStatus { stores })
    }

    /// Stops the relay (it finishes the pass it is in and gives up its lead), waits for
    /// the settle tasks, then closes both stores.
    async fn close(&self) -> Result<(), GatewayError> {
        self.stop.cancel();
        self.relay_task.close();
        self.relay_task.wait().await;
        self.flush_background().await;
        let (pg, milvus) = tokio::join!(self.stores.pgvector.close(), self.stores.milvus.close());
        pg.and(milvus)
    }
}

impl Drop for DualGateway {
    fn drop(&mut self) {
        // A gateway dropped without close() must not leave its relay running.
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests;
