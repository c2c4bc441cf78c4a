//! The relay: the one writer that makes Milvus equal to pgvector for every outbox entry.
//!
//! One relay leads per outbox across processes (the outbox's lock; when the leader dies,
//! another process takes over within `DUAL_RELAY_INTERVAL_MS`). The leader replays what
//! writers left, woken at once by writers of this process, by wake-ups from other
//! processes, and on the interval; while Milvus is down it backs off with jitter. It also
//! compares a rolling window of both stores every `DUAL_RECONCILE_INTERVAL_MS`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use vectorgate_domain::outbox::{Claim, Leadership, Outbox, Wakeups};
use vectorgate_domain::{ChunkId, GatewayError, VectorRecord};

use super::reconcile::Window;
use super::DualStores;
use crate::observability::{
    OUTBOX_DEPTH, RELAY_FAILURES_TOTAL, RELAY_LAG_SECONDS, RELAY_REPLAYED_ROWS_TOTAL,
};
use crate::rows::{Replica, Source};
use crate::settings::DualSettings;

/// How long the background relay replays before it looks at its stats, the reconcile
/// window and its lead again.
const DRAIN_BUDGET: Duration = Duration::from_secs(2);

/// What a `sync` (or one drain of the relay) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Outbox entries (chunk ids) replayed and removed.
    pub entries_replayed: u64,
    /// Entries whose replay failed (still pending).
    pub entries_failed: u64,
    /// Rows copied from pgvector into Milvus.
    pub upserted: u64,
    /// Ids removed from Milvus because pgvector no longer has them.
    pub deleted: u64,
    /// Entries left after the run (including writes in flight).
    pub remaining: u64,
    /// Whether another process's relay did the work (this one waited for it).
    pub other_relay: bool,
    /// The distinct errors seen, for the operator.
    pub errors: Vec<String>,
}

impl SyncReport {
    fn add(&mut self, pass: &SyncReport) {
        self.entries_replayed += pass.entries_replayed;
        self.entries_failed += pass.entries_failed;
        self.upserted += pass.upserted;
        self.deleted += pass.deleted;
        for error in &pass.errors {
            if !self.errors.contains(error) {
                self.errors.push(error.clone());
            }
        }
    }
}

/// How many entries each batch of one drain claims: the configured size at most, starting
/// at an eighth of it and doubling. Milvus is idle until the first batch is claimed and
/// read, and a small one is read in a few milliseconds; each later batch is read while
/// Milvus writes the one before.
struct BatchSizes {
    next: usize,
    max: usize,
}

impl BatchSizes {
    fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            next: (max / 8).max(1),
            max,
        }
    }

    fn next(&mut self) -> usize {
        let size = self.next;
        self.next = (size * 2).min(self.max);
        size
    }
}

/// A claimed batch with pgvector's rows of its ids.
struct Batch {
    claims: Vec<Claim>,
    rows: Vec<VectorRecord>,
    absent: Vec<ChunkId>,
}

pub(crate) struct Relay {
    outbox: Arc<dyn Outbox>,
    source: Arc<dyn Source>,
    replica: Arc<dyn Replica>,
    window: Window,
    settings: DualSettings,
    /// Writers of this process wake the relay through it.
    wake: Notify,
}

impl Relay {
    pub(crate) fn new(stores: &DualStores, settings: &DualSettings) -> Self {
        Self {
            outbox: Arc::clone(&stores.outbox),
            source: Arc::clone(&stores.source),
            replica: Arc::clone(&stores.replica),
            window: Window::new(stores, settings),
            settings: settings.clone(),
            wake: Notify::new(),
        }
    }

    /// Work was left for the relay: it runs a pass at once (if it leads).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Claims up to `limit` entries and reads pgvector's rows of their ids (after the
    /// claim, so the copy is at least as new as every write the claim waited for). `None`
    /// when nothing is claimable.
    async fn prepare(&self, limit: usize) -> Result<Option<Batch>, GatewayError> {
        let started = Instant::now();
        let claims = self.outbox.claim(limit).await?;
        if claims.is_empty() {
            return Ok(None);
        }
        let claimed = started.elapsed();
        let ids: Vec<ChunkId> = claims.iter().map(|c| c.chunk_id).collect();
        let rows = match self.source.fetch(&ids).await {
            Ok(rows) => rows,
            Err(err) => {
                self.outbox.release(&claims, &err.to_string()).await?;
                return Err(err);
            }
        };
        let present: BTreeSet<ChunkId> = rows.iter().map(|r| r.chunk_id).collect();
        let absent = ids.into_iter().filter(|id| !present.contains(id)).collect();
        tracing::debug!(
            entries = claims.len(),
            claim_ms = claimed.as_millis() as u64,
            read_ms = (started.elapsed() - claimed).as_millis() as u64,
            "relay: batch claimed and read from pgvector"
        );
        Ok(Some(Batch {
            claims,
            rows,
            absent,
        }))
    }

    /// Puts the present rows into Milvus and removes the absent ids.
    async fn apply(&self, batch: &Batch) -> Result<(), GatewayError> {
        let started = Instant::now();
        if !batch.rows.is_empty() {
            self.replica.put(&batch.rows).await?;
        }
        if !batch.absent.is_empty() {
            self.replica.remove(&batch.absent).await?;
        }
        tracing::debug!(
            rows = batch.rows.len(),
            removed = batch.absent.len(),
            write_ms = started.elapsed().as_millis() as u64,
            "relay: batch written to Milvus"
        );
        Ok(())
    }

    /// Completes the batch's claims (or releases them with the error) and reports.
    async fn finish(
        &self,
        batch: &Batch,
        applied: Result<(), GatewayError>,
    ) -> Result<SyncReport, GatewayError> {
        let mut report = SyncReport::default();
        match applied {
            Ok(()) => {
                let started = Instant::now();
                report.entries_replayed = self.outbox.complete(&batch.claims).await?;
                tracing::debug!(
                    complete_ms = started.elapsed().as_millis() as u64,
                    "relay: batch completed"
                );
                report.upserted = batch.rows.len() as u64;
                report.deleted = batch.absent.len() as u64;
                metrics::counter!(RELAY_REPLAYED_ROWS_TOTAL, "action" => "upsert")
                    .increment(report.upserted);
                metrics::counter!(RELAY_REPLAYED_ROWS_TOTAL, "action" => "delete")
                    .increment(report.deleted);
            }
            Err(err) => {
                self.outbox.release(&batch.claims, &err.to_string()).await?;
                metrics::counter!(RELAY_FAILURES_TOTAL).increment(1);
                report.entries_failed = batch.claims.len() as u64;
                report.errors.push(err.to_string());
            }
        }
        Ok(report)
    }

    /// Passes until nothing is claimable or a pass fails, or until `budget` is spent (then
    /// `true`: work may be left). While Milvus writes one batch, the batch before it is
    /// completed and the next one claimed and read, so Milvus waits for pgvector only
    /// before the first write, which is therefore small (see [`BatchSizes`]). Entries a
    /// write changed during their replay are claimed again by a later pass.
    async fn drain(&self, budget: Option<Duration>) -> Result<(SyncReport, bool), GatewayError> {
        let started = Instant::now();
        let mut total = SyncReport::default();
        let mut sizes = BatchSizes::new(self.settings.relay_batch_size);
        // Written to Milvus, not yet completed in the outbox.
        let mut written: Option<Batch> = None;
        let mut next = self.prepare(sizes.next()).await?;
        loop {
            let Some(batch) = next.take() else {
                let Some(done) = written.take() else {
                    return Ok((total, false));
                };
                // Nothing was claimable while the last batch was claimed; completing it
                // may hand back entries a write changed meanwhile.
                total.add(&self.finish(&done, Ok(())).await?);
                next = self.prepare(sizes.next()).await?;
                continue;
            };
            let over_budget = budget.is_some_and(|b| started.elapsed() >= b);
            let (applied, (completed, following)) = tokio::join!(self.apply(&batch), async {
                let completed = match written.take() {
                    Some(done) => Some(self.finish(&done, Ok(())).await),
                    None => None,
                };
                let following = if over_budget {
                    Ok(None)
                } else {
                    self.prepare(sizes.next()).await
                };
                (completed, following)
            });
            if let Some(completed) = completed {
                total.add(&completed?);
            }
            if let Err(err) = applied {
                total.add(&self.finish(&batch, Err(err)).await?);
                // Milvus refused: the batch read meanwhile waits for the next attempt.
                if let Ok(Some(following)) = &following {
                    self.outbox
                        .release(&following.claims, "not replayed: the pass before failed")
                        .await?;
                }
                return Ok((total, false));
            }
            if over_budget {
                total.add(&self.finish(&batch, Ok(())).await?);
                return Ok((total, true));
            }
            match following {
                Ok(following) => (written, next) = (Some(batch), following),
                Err(err) => {
                    // pgvector failed the next read: what Milvus has is still completed.
                    self.finish(&batch, Ok(())).await?;
                    return Err(err);
                }
            }
        }
    }

    async fn publish_stats(&self) -> u64 {
        match self.outbox.stats().await {
            Ok(stats) => {
                metrics::gauge!(OUTBOX_DEPTH).set(stats.depth as f64);
                metrics::gauge!(RELAY_LAG_SECONDS).set(stats.lag.map_or(0.0, |l| l.as_secs_f64()));
                stats.depth
            }
            Err(err) => {
                tracing::debug!(error = %err, "could not read the outbox stats");
                0
            }
        }
    }

    /// `vectorgate sync`, backfill and repair: drains now, as the leader for the time of
    /// the call, or waits while another process's relay drains (`ids`, when given, or the
    /// whole outbox).
    pub(crate) async fn sync(&self, ids: Option<&[ChunkId]>) -> Result<SyncReport, GatewayError> {
        let mut report = match self.outbox.try_lead().await? {
            Some(lead) => {
                let drained = async {
                    self.outbox.reset_claims().await?;
                    self.drain(None).await.map(|(report, _)| report)
                }
                .await;
                lead.release().await;
                drained?
            }
            None => {
                let mut report = self.wait_for_other_relay(ids).await?;
                report.other_relay = true;
                report
            }
        };
        report.remaining = self.publish_stats().await;
        tracing::info!(
            replayed = report.entries_replayed,
            failed = report.entries_failed,
            upserted = report.upserted,
            deleted = report.deleted,
            remaining = report.remaining,
            other_relay = report.other_relay,
            "dual sync finished"
        );
        Ok(report)
    }

    /// Another process leads: wait until it has replayed `ids` (or everything), or until
    /// only failing entries are left, or it stops making progress for a while.
    async fn wait_for_other_relay(
        &self,
        ids: Option<&[ChunkId]>,
    ) -> Result<SyncReport, GatewayError> {
        let interval = self.settings.relay_interval.max(Duration::from_millis(100));
        let patience = interval * 30;
        let mut last = self.outbox.stats().await?;
        let mut since_progress = Instant::now();
        loop {
            let done = match ids {
                Some(ids) => self.outbox.held(ids).await?.is_empty(),
                None => last.depth == 0,
            };
            if done || last.failed == last.depth && since_progress.elapsed() > interval {
                let mut report = SyncReport::default();
                if let Some(error) = &last.last_error {
                    report.errors.push(error.clone());
                }
                report.entries_failed = last.failed;
                return Ok(report);
            }
            if since_progress.elapsed() > patience {
                return Ok(SyncReport {
                    errors: vec![format!(
                        "another process's relay made no progress for {} s",
                        patience.as_secs()
                    )],
                    ..SyncReport::default()
                });
            }
            tokio::time::sleep(interval.min(Duration::from_millis(500))).await;
            let now = self.outbox.stats().await?;
            if now.depth < last.depth {
                since_progress = Instant::now();
            }
            last = now;
        }
    }

    /// The background relay of a dual gateway: leads when it can, stands by otherwise,
    /// until `stop`.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let interval = self.settings.relay_interval;
        loop {
            let lead = tokio::select! {
                _ = stop.cancelled() => return,
                lead = self.outbox.try_lead() => lead,
            };
            match lead {
                Ok(Some(lead)) => {
                    tracing::info!("relay leads: this process replays the outbox");
                    self.lead(lead, &stop).await;
                }
                Ok(None) => {}
                Err(err) => tracing::debug!(error = %err, "relay cannot reach the outbox"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(self.settings.relay_interval.max(Duration::from_secs(1)) * 30)
            .without_max_times()
            .build()
    }

    async fn lead(&self, mut lead: Box<dyn Leadership>, stop: &CancellationToken) {
        // Claims left by a previous leader, or by this one when an outbox statement failed
        // mid-pass: nobody else claims while this relay leads, so clearing them is safe
        // between passes, and without it those ids would be skipped for as long as it leads.
        let mut stale_claims = true;
        let mut wakeups: Option<Box<dyn Wakeups>> = match self.outbox.subscribe().await {
            Ok(w) => Some(w),
            Err(err) => {
                tracing::warn!(error = %err, "relay gets no wake-ups from other processes; it polls");
                None
            }
        };
        let mut backoff = self.backoff();
        let mut next_reconcile = Instant::now() + self.settings.reconcile_interval;
        loop {
            if stale_claims {
                match self.outbox.reset_claims().await {
                    Ok(()) => stale_claims = false,
                    Err(err) => tracing::warn!(error = %err, "relay could not reset stale claims"),
                }
            }
            let mut more = false;
            let delay = match self.drain(Some(DRAIN_BUDGET)).await {
                Ok((_, left)) if !left => {
                    backoff = self.backoff();
                    None
                }
                Ok((report, _)) if report.entries_failed == 0 => {
                    more = true;
                    backoff = self.backoff();
                    None
                }
                Ok((report, _)) => {
                    let wait = backoff.next();
                    tracing::warn!(
                        failed = report.entries_failed,
                        error = report.errors.first().map(String::as_str).unwrap_or(""),
                        retry_in_ms = wait.map(|d| d.as_millis() as u64),
                        "relay: Milvus replay failed; backing off"
                    );
                    wait
                }
                Err(err) => {
                    stale_claims = true;
                    let wait = backoff.next();
                    tracing::warn!(error = %err, "relay: outbox unreachable; backing off");
                    wait
                }
            };
            self.publish_stats().await;
            if !self.settings.reconcile_interval.is_zero() && Instant::now() >= next_reconcile {
                next_reconcile = Instant::now() + self.settings.reconcile_interval;
                match self.window.step().await {
                    Ok(0) => {}
                    Ok(_) => continue,
                    Err(err) => tracing::warn!(error = %err, "relay: reconcile window failed"),
                }
            }
            let woken = async {
                match wakeups.as_mut() {
                    Some(w) => {
                        if w.next().await.is_err() {
                            // The listener reconnects on its next call; poll meanwhile.
                            std::future::pending::<()>().await
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            if stop.is_cancelled() {
                break;
            }
            if !more {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.wake.notified(), if delay.is_none() => {}
                    _ = woken, if delay.is_none() => {}
                    _ = tokio::time::sleep(delay.unwrap_or(self.settings.relay_interval)) => {}
                }
            }
            if let Err(err) = lead.check().await {
                tracing::warn!(error = %err, "relay lost its lead; standing by");
                return;
            }
        }
        lead.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::BatchSizes;

    #[test]
    fn batches_start_at_an_eighth_and_double_up_to_the_configured_size() {
        let mut sizes = BatchSizes::new(2000);
        let taken: Vec<usize> = (0..6).map(|_| sizes.next()).collect();
        assert_eq!(taken, [250, 500, 1000, 2000, 2000, 2000]);
        let mut one = BatchSizes::new(1);
        assert_eq!((one.next(), one.next()), (1, 1));
        let mut small = BatchSizes::new(5);
        assert_eq!(
            (small.next(), small.next(), small.next(), small.next()),
            (1, 2, 4, 5)
        );
    }
}
