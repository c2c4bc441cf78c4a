//! The relay's periodic reconcile: each step compares the next window of chunk ids in
//! both stores (Milvus read at Strong consistency) and hands any drift to the relay. The
//! window's position is kept in PostgreSQL, so passes continue across restarts and a full
//! pass completes over time.

use std::sync::Arc;

use tokio::sync::Mutex;
use vectorgate_domain::outbox::Outbox;
use vectorgate_domain::{ChunkId, GatewayError};

use super::DualStores;
use crate::drift::DriftReport;
use crate::mode::StateTable;
use crate::observability::DRIFT_ROWS_TOTAL;
use crate::rows::{Replica, Source};
use crate::settings::DualSettings;

/// Vectors are stored as the same f32s in both stores; anything beyond rounding is drift.
const TOLERANCE: f32 = 1e-5;

pub(crate) struct Window {
    source: Arc<dyn Source>,
    replica: Arc<dyn Replica>,
    outbox: Arc<dyn Outbox>,
    state: Arc<dyn StateTable>,
    key: String,
    rows: usize,
    /// Where the next window starts (`None`: from the first id); read from the state
    /// table on first use.
    position: Mutex<Option<Option<ChunkId>>>,
}

impl Window {
    pub(crate) fn new(stores: &DualStores, settings: &DualSettings) -> Self {
        Self {
            source: Arc::clone(&stores.source),
            replica: Arc::clone(&stores.replica),
            outbox: Arc::clone(&stores.outbox),
            state: Arc::clone(&stores.state),
            key: format!("reconcile_position:{}", settings.outbox_table),
            rows: settings.reconcile_rows,
            position: Mutex::new(None),
        }
    }

    /// Compares the next window; drift found (ids no write holds in the outbox) is
    /// enqueued for the relay and counted. Returns the drifted rows.
    pub(crate) async fn step(&self) -> Result<u64, GatewayError> {
        let mut position = self.position.lock().await;
        let after = match *position {
            Some(after) => after,
            None => match self.state.load(&self.key).await? {
                Some(text) => text.parse::<i64>().ok().map(ChunkId::new).transpose()?,
                None => None,
            },
        };
        let page = self.source.page(after, self.rows).await?;
        let from = ChunkId::new(after.map_or(0, |a| a.get().saturating_add(1)))?;
        // The last window runs to the end of the id space, so Milvus rows beyond
        // pgvector's last id are compared too.
        let (to, next) = match page.last() {
            Some(last) if page.len() >= self.rows => (last.chunk_id, Some(last.chunk_id)),
            _ => (ChunkId::new(i64::MAX)?, None),
        };
        let copies = self.replica.range(from, to).await?;
        let mut report = DriftReport::default();
        report.compare_range(&page, &copies, TOLERANCE);
        let mut ids = report.ids_to_replay();
        if !ids.is_empty() {
            ids = self.still_differing(ids).await?;
        }
        if !ids.is_empty() {
            // Ids a write holds are in flight, not drift; the relay handles them anyway.
            let held = self.outbox.held(&ids).await?;
            ids.retain(|id| !held.contains(id));
        }
        if !ids.is_empty() {
            metrics::counter!(DRIFT_ROWS_TOTAL).increment(ids.len() as u64);
            tracing::warn!(
                rows = ids.len(),
                from = from.get(),
                to = to.get(),
                "reconcile: Milvus differs from pgvector; the relay repairs it"
            );
            self.outbox.enqueue(&ids).await?;
        }
        self.state
            .store(
                &self.key,
                &next.map_or_else(String::new, |n| n.get().to_string()),
            )
            .await?;
        *position = Some(next);
        Ok(ids.len() as u64)
    }

    /// The two reads of a window are not one snapshot: a write that lands in both stores
    /// between them, and is done before the outbox is asked, looks like drift. So the
    /// suspects are read again, and only those that still differ are kept.
    async fn still_differing(&self, suspects: Vec<ChunkId>) -> Result<Vec<ChunkId>, GatewayError> {
        let copies = self.replica.copies(&suspects).await?;
        let rows = self.source.fetch(&suspects).await?;
        let mut again = DriftReport::default();
        again.compare_range(&rows, &copies, TOLERANCE);
        Ok(again.ids_to_replay())
    }
}
