//! Dual mode: pgvector is the source of truth, Milvus is written alongside.
//!
//! # The guarantee
//! A dual write returns `Ok` exactly when pgvector committed it. A pgvector failure fails
//! the call. A Milvus failure never does: it is logged (one structured warning naming the
//! store, operation, tenants, chunk ids and error), counted
//! (`vector_store_dual_failures_total`) and left in a durable outbox in PostgreSQL, which
//! `sync` replays from pgvector's current rows.
//!
//! # The write protocol (parallel, one extra round trip)
//! 1. **Intent first.** Before touching either store, the write records an *intent* in the
//!    outbox table: the op, the chunk ids (or, for tenant/project deletes, the scope) and the
//!    tenants, in one autocommit `INSERT` (one PostgreSQL round trip). The intent is leased
//!    to the writer for `DUAL_INTENT_LEASE_MS`. If this insert fails, the call fails and no
//!    store was touched.
//! 2. **Both stores at once.** The pgvector write and the Milvus write run concurrently
//!    (`tokio::join!`), so a dual write costs about the slower store plus that round trip.
//! 3. **Settle, off the caller's path** (a spawned task): both succeeded → the intent is
//!    removed, *unless* an overlapping intent or a sync could have reordered the writes (see
//!    below), in which case it is kept for replay; Milvus failed → the intent is kept and
//!    released to `sync` with the error; pgvector failed → the call returns the error and the
//!    intent is kept (Milvus may have applied a write pgvector did not; replay undoes it).
//!
//! # Replay (`sync`)
//! `sync` claims pending intents whose lease has expired, in id order, and for each chunk id
//! makes Milvus equal to pgvector's row *as it is now*: present in pgvector → upsert that row
//! into Milvus (tenant, project and vector, so a moved chunk moves); absent → delete the id
//! from Milvus (under the tenant Milvus holds it in). For a scope delete it pages through
//! Milvus's ids in the scope and does the same for each. Replay is idempotent. An intent is
//! marked done only when its Milvus writes succeeded; otherwise it stays pending with the
//! error and the attempt count.
//!
//! # Why the stores converge
//! Claim: once writes stop and `sync` has run to completion with Milvus reachable, every
//! chunk id has the same row (or no row) in both stores.
//!
//! - *Crash at any point.* An intent exists (pending) from before the first store write
//!   until after both store writes finished, because it is inserted first and removed last.
//!   A crash before the insert touched nothing; a crash after it leaves a pending intent
//!   whose lease expires, and replay copies pgvector's state, whatever subset of the two
//!   writes landed. So every id a write may have changed in either store is covered by a
//!   pending intent until both stores agree on it, or until the write completed cleanly.
//! - *A failed store.* Same argument: the intent stays pending (step 3), so replay repairs
//!   Milvus; a pgvector failure is returned to the caller and replay removes from Milvus
//!   what pgvector does not have. Nothing pgvector committed is missing from Milvus after
//!   replay, and Milvus holds nothing pgvector lacks.
//! - *Concurrent writers of the same ids.* Two parallel writes W1, W2 of chunk X may commit
//!   in pgvector as W1,W2 and land in Milvus as W2,W1. Removal of an intent is therefore
//!   conditional: it happens only if no other pending entry overlaps it (shares a chunk id,
//!   or is a scope delete of a tenant it names). Both intents are pending from before their
//!   first store write to after their last, so of two overlapping writes in flight at the
//!   same time the one that settles first sees the other's intent and is kept. Writes of
//!   the same process that provably were not in flight together (one's store writes had
//!   returned before the other recorded its intent, so both stores saw them in the same
//!   order) are not counted as conflicts, so a service that rewrites the same ids one call
//!   after another does not fill the outbox; writes of different processes are treated
//!   conservatively (kept, replayed by `sync`).
//! - *A sync racing a writer.* `sync` reads pgvector then writes Milvus; a writer may commit
//!   X in between and its Milvus write may land before the sync's stale one. `claimed_seq`
//!   and `done_seq` of the replayed entry are drawn from the same sequence as intent ids, so
//!   a writer can tell whether a replay of an overlapping entry was in progress, or finished
//!   after its own intent was created: then it keeps its intent instead of removing it (and
//!   re-creates it if a sync replayed and purged its own entry while it was in flight). A
//!   replay that finished before the writer's intent existed wrote Milvus before the
//!   writer did, so the writer's value is the last one in both stores.
//! - *Termination.* Each kept intent is replayed by a later `sync`; with no writes in flight
//!   no new conflicts arise, so a `sync` with Milvus reachable empties the outbox.
//!
//! Assumption: a write settles within its lease (`DUAL_INTENT_LEASE_MS`, 2 minutes by
//! default, well above the stores' timeouts); a replay of an entry whose writer is still
//! running past its lease is detected by the writer and re-queued, but a writer that is
//! paused for longer than the lease *and* then crashes between its store writes can leave
//! drift that only `vectorgate reconcile` finds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio_util::task::TaskTracker;
use vectorgate_domain::outbox::{Completion, Intent, IntentId, IntentOp, Outbox, OutboxEntry};
use vectorgate_domain::{
    validate_records, ChunkId, DeleteRequest, Dimension, GatewayError, HealthStatus, ScanFilter,
    SearchHit, SearchRequest, StoreHealth, StoreKind, TenantId, VectorRecord, VectorStoreGateway,
};

use crate::observability::{DUAL_FAILURES_TOTAL, OUTBOX_DEPTH, SHADOW_READ_OVERLAP};
use crate::rows::StoreRows;
use crate::settings::{DualSettings, ReadFrom};

/// The parts a dual gateway is made of.
#[derive(Clone)]
pub struct DualStores {
    pub pgvector: Arc<dyn VectorStoreGateway>,
    pub pgvector_rows: Arc<dyn StoreRows>,
    pub milvus: Arc<dyn VectorStoreGateway>,
    pub milvus_rows: Arc<dyn StoreRows>,
    pub outbox: Arc<dyn Outbox>,
}

impl std::fmt::Debug for DualStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DualStores")
            .field("pgvector", &self.pgvector.store_kind())
            .field("milvus", &self.milvus.store_kind())
            .field("outbox", &self.outbox)
            .finish_non_exhaustive()
    }
}

/// What one `sync` run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Outbox entries replayed and marked done.
    pub entries_replayed: u64,
    /// Entries whose replay failed (still pending).
    pub entries_failed: u64,
    /// Rows copied from pgvector into Milvus.
    pub upserted: u64,
    /// Ids removed from Milvus because pgvector no longer has them.
    pub deleted: u64,
    /// Pending entries after the run (including writes in flight).
    pub remaining: u64,
    /// The distinct errors seen, for the operator.
    pub errors: Vec<String>,
}

/// This process's writes whose intents are not settled yet, with the order in which they
/// started (before recording the intent) and finished (both store writes returned).
#[derive(Debug, Default)]
struct Unsettled {
    clock: u64,
    writes: HashMap<IntentId, (u64, Option<u64>)>,
}

impl Unsettled {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Writes of this process that were provably not in flight together with `id`: one
    /// finished before the other started. They cannot have been reordered with it.
    fn not_concurrent_with(&self, id: IntentId) -> Vec<IntentId> {
        let Some(&(start, Some(finish))) = self.writes.get(&id) else {
            return Vec::new();
        };
        self.writes
            .iter()
            .filter(|(other, (o_start, o_finish))| {
                **other != id && (o_finish.is_some_and(|f| f < start) || *o_start > finish)
            })
            .map(|(other, _)| *other)
            .collect()
    }
}

/// The dual-write gateway. See the module docs for the protocol.
pub struct DualGateway {
    stores: DualStores,
    options: DualSettings,
    /// Settle tasks spawned by writes, so that `close()` and tests can wait for them.
    background: TaskTracker,
    unsettled: Arc<Mutex<Unsettled>>,
}

impl std::fmt::Debug for DualGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DualGateway")
            .field("options", &self.options)
            .field("outbox", &self.stores.outbox)
            .finish_non_exhaustive()
    }
}

fn join_ids<T: std::fmt::Display>(ids: &[T]) -> String {
    let mut out = String::with_capacity(ids.len() * 7);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out
}

/// Chunk ids per replay round trip.
const REPLAY_CHUNK: usize = 1000;

impl DualGateway {
    pub fn new(stores: DualStores, options: DualSettings) -> Self {
        Self {
            stores,
            options,
            background: TaskTracker::new(),
            unsettled: Arc::new(Mutex::new(Unsettled::default())),
        }
    }

    pub fn options(&self) -> &DualSettings {
        &self.options
    }

    pub fn outbox(&self) -> &Arc<dyn Outbox> {
        &self.stores.outbox
    }

    /// Waits for the settle tasks spawned by earlier writes (intent removal or failure
    /// bookkeeping). Writes never wait for them; `close()` and tests do.
    pub async fn flush_background(&self) {
        // Settle tasks do not spawn others, so closing and waiting sees them all; the
        // tracker is reopened for later writes.
        self.background.close();
        self.background.wait().await;
        self.background.reopen();
    }

    /// Pending outbox entries; also sets the `vector_store_outbox_depth` gauge.
    pub async fn outbox_depth(&self) -> Result<u64, GatewayError> {
        let depth = self.stores.outbox.depth().await?;
        metrics::gauge!(OUTBOX_DEPTH).set(depth as f64);
        Ok(depth)
    }

    /// Runs both writes in parallel after recording the intent, then settles it.
    async fn dual_write<F1, F2>(
        &self,
        operation: &'static str,
        intent: Intent,
        pg_write: F1,
        milvus_write: F2,
    ) -> Result<u64, GatewayError>
    where
        F1: std::future::Future<Output = Result<u64, GatewayError>>,
        F2: std::future::Future<Output = Result<u64, GatewayError>>,
    {
        let start = self.unsettled.lock().unwrap().tick();
        let id = self
            .stores
            .outbox
            .record(&intent, self.options.intent_lease)
            .await?;
        self.unsettled
            .lock()
            .unwrap()
            .writes
            .insert(id, (start, None));
        let (pg, milvus) = tokio::join!(pg_write, milvus_write);
        {
            let mut unsettled = self.unsettled.lock().unwrap();
            let finish = unsettled.tick();
            if let Some(entry) = unsettled.writes.get_mut(&id) {
                entry.1 = Some(finish);
            }
        }
        let outbox = Arc::clone(&self.stores.outbox);
        let unsettled = Arc::clone(&self.unsettled);
        let settled = move || {
            unsettled.lock().unwrap().writes.remove(&id);
        };
        match (pg, milvus) {
            (Ok(written), Ok(_)) => {
                let registry = Arc::clone(&self.unsettled);
                self.background.spawn(async move {
                    // Computed when settling, so that writes started since are included.
                    let not_concurrent = registry.lock().unwrap().not_concurrent_with(id);
                    let result = outbox.complete(id, &intent, &not_concurrent).await;
                    settled();
                    match result {
                        Ok(Completion::Removed) => {}
                        Ok(Completion::KeptForReplay) => tracing::debug!(
                            intent = id,
                            "overlapping write or sync in flight; intent kept for replay"
                        ),
                        // The entry stays pending; sync replays it after its lease: safe.
                        Err(err) => tracing::debug!(intent = id, error = %err, "could not remove outbox intent"),
                    }
                });
                Ok(written)
            }
            (Ok(written), Err(err)) => {
                self.report_milvus_failure(operation, &intent, &err);
                let message = err.to_string();
                self.background.spawn(async move {
                    if let Err(e) = outbox.fail(id, &message).await {
                        tracing::debug!(intent = id, error = %e, "could not release outbox intent; its lease will expire");
                    }
                    settled();
                });
                Ok(written)
            }
            (Err(err), milvus) => {
                match milvus {
                    Err(milvus_err) => self.report_milvus_failure(operation, &intent, &milvus_err),
                    Ok(_) => tracing::debug!(
                        intent = id,
                        operation,
                        "pgvector failed after Milvus applied the write; sync will make Milvus match pgvector"
                    ),
                }
                let message = err.to_string();
                self.background.spawn(async move {
                    if let Err(e) = outbox.fail(id, &message).await {
                        tracing::debug!(intent = id, error = %e, "could not release outbox intent; its lease will expire");
                    }
                    settled();
                });
                Err(err)
            }
        }
    }

    fn report_milvus_failure(&self, operation: &'static str, intent: &Intent, err: &GatewayError) {
        tracing::warn!(
            store = "milvus",
            operation,
            tenant = %join_ids(&intent.tenant_ids),
            chunk_ids = %join_ids(&intent.chunk_ids),
            scope_project = intent.project_id.map(|p| p.get()),
            error = %err,
            "dual write: Milvus failed, pgvector committed; recorded in the outbox for sync"
        );
        metrics::counter!(DUAL_FAILURES_TOTAL, "operation" => operation).increment(1);
        metrics::gauge!(OUTBOX_DEPTH).increment(1.0);
    }

    /// Replays the outbox: makes Milvus equal to pgvector for every id (or scope) an
    /// unsettled write touched. Stops early when Milvus is unreachable.
    pub async fn sync(&self) -> Result<SyncReport, GatewayError> {
        let outbox = &self.stores.outbox;
        let mut report = SyncReport::default();
        let mut cursor: IntentId = 0;
        let mut errors = BTreeSet::new();
        'batches: loop {
            let batch = outbox
                .claim(
                    cursor,
                    self.options.sync_batch_size,
                    self.options.intent_lease,
                )
                .await?;
            let Some(last) = batch.last() else { break };
            cursor = last.id;
            let (chunk_entries, scope_entries): (Vec<OutboxEntry>, Vec<OutboxEntry>) = batch
                .into_iter()
                .partition(|e| e.intent.op != IntentOp::DeleteScope);

            let mut stop = false;
            if !chunk_entries.is_empty() {
                let ids: BTreeSet<ChunkId> = chunk_entries
                    .iter()
                    .flat_map(|e| e.intent.chunk_ids.iter().copied())
                    .collect();
                let entry_ids: Vec<IntentId> = chunk_entries.iter().map(|e| e.id).collect();
                match self
                    .replay_chunks(&ids.into_iter().collect::<Vec<_>>())
                    .await
                {
                    Ok((upserted, deleted)) => {
                        outbox.mark_done(&entry_ids).await?;
                        report.entries_replayed += entry_ids.len() as u64;
                        report.upserted += upserted;
                        report.deleted += deleted;
                    }
                    Err(err) => {
                        outbox.release(&entry_ids, &err.to_string()).await?;
                        report.entries_failed += entry_ids.len() as u64;
                        stop = err.is_unavailable();
                        errors.insert(err.to_string());
                    }
                }
            }
            for (i, entry) in scope_entries.iter().enumerate() {
                if stop {
                    let rest: Vec<IntentId> = scope_entries[i..].iter().map(|e| e.id).collect();
                    outbox
                        .release(&rest, "sync stopped: Milvus unavailable")
                        .await?;
                    report.entries_failed += rest.len() as u64;
                    break;
                }
                match self.replay_scope(&entry.intent).await {
                    Ok((upserted, deleted)) => {
                        outbox.mark_done(&[entry.id]).await?;
                        report.entries_replayed += 1;
                        report.upserted += upserted;
                        report.deleted += deleted;
                    }
                    Err(err) => {
                        outbox.release(&[entry.id], &err.to_string()).await?;
                        report.entries_failed += 1;
                        stop = err.is_unavailable();
                        errors.insert(err.to_string());
                    }
                }
            }
            if stop {
                break 'batches;
            }
        }
        outbox.purge_done().await?;
        report.remaining = self.outbox_depth().await?;
        report.errors = errors.into_iter().collect();
        tracing::info!(
            replayed = report.entries_replayed,
            failed = report.entries_failed,
            upserted = report.upserted,
            deleted = report.deleted,
            remaining = report.remaining,
            "dual sync finished"
        );
        Ok(report)
    }

    /// Makes Milvus equal to pgvector for these ids; returns (upserted, deleted).
    async fn replay_chunks(&self, ids: &[ChunkId]) -> Result<(u64, u64), GatewayError> {
        let (mut upserted, mut deleted) = (0, 0);
        for part in ids.chunks(REPLAY_CHUNK) {
            let rows = self.stores.pgvector_rows.fetch(part).await?;
            let present: BTreeSet<ChunkId> = rows.iter().map(|r| r.chunk_id).collect();
            if !rows.is_empty() {
                self.stores.milvus.upsert_vectors(&rows).await?;
                upserted += rows.len() as u64;
            }
            let absent: Vec<ChunkId> = part
                .iter()
                .filter(|id| !present.contains(id))
                .copied()
                .collect();
            if absent.is_empty() {
                continue;
            }
            // Delete under the tenant Milvus holds each id in (it may differ from the
            // intent's if the chunk moved).
            let stale = self.stores.milvus_rows.fetch(&absent).await?;
            let mut by_tenant: BTreeMap<TenantId, Vec<ChunkId>> = BTreeMap::new();
            for row in stale {
                by_tenant
                    .entry(row.tenant_id)
                    .or_default()
                    .push(row.chunk_id);
            }
            for (tenant, ids) in by_tenant {
                let n = ids.len() as u64;
                self.stores
                    .milvus
                    .delete_vectors(&DeleteRequest::chunks(tenant, ids))
                    .await?;
                deleted += n;
            }
        }
        Ok((upserted, deleted))
    }

    /// Makes Milvus's rows of a deleted scope match pgvector; returns (upserted, deleted).
    async fn replay_scope(&self, intent: &Intent) -> Result<(u64, u64), GatewayError> {
        let Some(tenant) = intent.tenant_ids.first().copied() else {
            return Ok((0, 0));
        };
        let filter = ScanFilter::new(Some(tenant), intent.project_id)?;
        let (mut upserted, mut deleted) = (0, 0);
        let all_keys = self.stores.milvus_rows.scope_keys(filter).await?;
        for keys in all_keys.chunks(REPLAY_CHUNK) {
            let ids: Vec<ChunkId> = keys.iter().map(|k| k.chunk_id).collect();
            let rows = self.stores.pgvector_rows.fetch(&ids).await?;
            let in_pg: HashMap<ChunkId, &VectorRecord> =
                rows.iter().map(|r| (r.chunk_id, r)).collect();
            let mut to_delete = Vec::new();
            let mut to_upsert = Vec::new();
            for key in keys {
                match in_pg.get(&key.chunk_id) {
                    None => to_delete.push(key.chunk_id),
                    Some(row)
                        if row.tenant_id != key.tenant_id || row.project_id != key.project_id =>
                    {
                        to_upsert.push((*row).clone())
                    }
                    Some(_) => {}
                }
            }
            if !to_upsert.is_empty() {
                self.stores.milvus.upsert_vectors(&to_upsert).await?;
                upserted += to_upsert.len() as u64;
            }
            if !to_delete.is_empty() {
                let n = to_delete.len() as u64;
                self.stores
                    .milvus
                    .delete_vectors(&DeleteRequest::chunks(tenant, to_delete))
                    .await?;
                deleted += n;
            }
        }
        Ok((upserted, deleted))
    }

    fn spawn_shadow_read(&self, request: &SearchRequest, primary_hits: &[SearchHit]) {
        let (other, other_name) = match self.options.read_from {
            ReadFrom::Pgvector => (Arc::clone(&self.stores.milvus), "milvus"),
            ReadFrom::Milvus => (Arc::clone(&self.stores.pgvector), "pgvector"),
        };
        let request = request.clone();
        let primary: Vec<ChunkId> = primary_hits.iter().map(|h| h.chunk_id).collect();
        // Not tracked in `background`: a shadow read has nothing to settle.
        tokio::spawn(async move {
            match other.search(&request).await {
                Ok(hits) => {
                    let overlap = top_k_overlap(&primary, &hits);
                    metrics::histogram!(SHADOW_READ_OVERLAP, "shadow_store" => other_name)
                        .record(overlap);
                    tracing::debug!(
                        shadow_store = other_name,
                        tenant = request.scope.tenant_id().get(),
                        overlap,
                        primary_hits = primary.len(),
                        shadow_hits = hits.len(),
                        "shadow read"
                    );
                }
                Err(err) => {
                    tracing::debug!(shadow_store = other_name, error = %err, "shadow read failed")
                }
            }
        });
    }
}

/// Fraction of the primary's ids the shadow store also returned (1.0 when both are empty).
pub fn top_k_overlap(primary: &[ChunkId], shadow: &[SearchHit]) -> f64 {
    if primary.is_empty() {
        return if shadow.is_empty() { 1.0 } else { 0.0 };
    }
    let shadow: BTreeSet<ChunkId> = shadow.iter().map(|h| h.chunk_id).collect();
    let common = primary.iter().filter(|id| shadow.contains(id)).count();
    common as f64 / primary.len() as f64
}

#[async_trait]
impl VectorStoreGateway for DualGateway {
    fn store_kind(&self) -> StoreKind {
        StoreKind::Dual
    }

    fn dimension(&self) -> Dimension {
        self.stores.pgvector.dimension()
    }

    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        // Validate before the intent: bad input changes nothing, not even the outbox.
        validate_records(records, self.dimension())?;
        if records.is_empty() {
            return Ok(0);
        }
        self.dual_write(
            "upsert",
            Intent::upsert(records),
            self.stores.pgvector.upsert_vectors(records),
            self.stores.milvus.upsert_vectors(records),
        )
        .await
    }

    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        request.validate()?;
        if let DeleteRequest::Chunks { chunk_ids, .. } = request {
            if chunk_ids.is_empty() {
                return Ok(0);
            }
        }
        self.dual_write(
            "delete",
            Intent::delete(request),
            self.stores.pgvector.delete_vectors(request),
            self.stores.milvus.delete_vectors(request),
        )
        .await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError> {
        let primary = match self.options.read_from {
            ReadFrom::Pgvector => &self.stores.pgvector,
            ReadFrom::Milvus => &self.stores.milvus,
        };
        let hits = primary.search(request).await?;
        let rate = self.options.shadow_read_rate;
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
                }),
            }
        }
        Ok(HealthStatus { stores })
    }

    async fn close(&self) -> Result<(), GatewayError> {
        self.flush_background().await;
        let (pg, milvus) = tokio::join!(self.stores.pgvector.close(), self.stores.milvus.close());
        pg.and(milvus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::CapturedLogs;
    use crate::testing::{MemoryOutbox, MemoryStore};
    use std::time::Duration;
    use vectorgate_domain::ProjectId;
    use vectorgate_domain::{Embedding, Metric, MockVectorStoreGateway, SearchScope, TopK};

    fn dim() -> Dimension {
        Dimension::new(4).unwrap()
    }

    fn rec(id: i64, tenant: i64, project: i64, x: f32) -> VectorRecord {
        VectorRecord::new(
            ChunkId::new(id).unwrap(),
            TenantId::new(tenant).unwrap(),
            ProjectId::new(project).unwrap(),
            Embedding::new(vec![x, 1.0, 0.5, -0.25]).unwrap(),
        )
    }

    fn t(id: i64) -> TenantId {
        TenantId::new(id).unwrap()
    }

    fn c(id: i64) -> ChunkId {
        ChunkId::new(id).unwrap()
    }

    struct Fixture {
        pg: Arc<MemoryStore>,
        milvus: Arc<MemoryStore>,
        outbox: Arc<MemoryOutbox>,
        dual: DualGateway,
    }

    fn fixture(options: DualSettings) -> Fixture {
        let pg = Arc::new(MemoryStore::new(StoreKind::Pgvector, dim(), Metric::Ip));
        let milvus = Arc::new(MemoryStore::new(StoreKind::Milvus, dim(), Metric::Ip));
        let outbox = Arc::new(MemoryOutbox::new());
        let dual = DualGateway::new(
            DualStores {
                pgvector: pg.clone(),
                pgvector_rows: pg.clone(),
                milvus: milvus.clone(),
                milvus_rows: milvus.clone(),
                outbox: outbox.clone(),
            },
            options,
        );
        Fixture {
            pg,
            milvus,
            outbox,
            dual,
        }
    }

    fn pg_mock_accepting_writes() -> MockVectorStoreGateway {
        let mut pg = MockVectorStoreGateway::new();
        pg.expect_dimension().return_const(dim());
        pg.expect_store_kind().return_const(StoreKind::Pgvector);
        pg.expect_upsert_vectors()
            .times(1)
            .returning(|records| Ok(records.len() as u64));
        pg
    }

    #[tokio::test]
    async fn a_failing_milvus_leaves_the_caller_with_ok_one_warning_and_an_outbox_entry() {
        let logs = CapturedLogs::default();
        let _guard = logs.install();
        let mut milvus = MockVectorStoreGateway::new();
        milvus.expect_store_kind().return_const(StoreKind::Milvus);
        milvus.expect_upsert_vectors().times(1).returning(|_| {
            Err(GatewayError::unavailable(
                StoreKind::Milvus,
                "127.0.0.1:19530: connection refused",
            ))
        });
        let rows = Arc::new(MemoryStore::new(StoreKind::Pgvector, dim(), Metric::Ip));
        let outbox = Arc::new(MemoryOutbox::new());
        let dual = DualGateway::new(
            DualStores {
                pgvector: Arc::new(pg_mock_accepting_writes()),
                pgvector_rows: rows.clone(),
                milvus: Arc::new(milvus),
                milvus_rows: rows,
                outbox: outbox.clone(),
            },
            DualSettings::default(),
        );

        let written = dual
            .upsert_vectors(&[rec(101, 7, 1, 0.1), rec(102, 7, 2, 0.2)])
            .await
            .expect("pgvector committed, so the caller succeeds");
        assert_eq!(written, 2);
        dual.flush_background().await;

        let warnings = logs.lines_with("WARN");
        assert_eq!(warnings.len(), 1, "exactly one warning: {}", logs.text());
        let warning = &warnings[0];
        for needle in [
            "store=\"milvus\"",
            "operation=\"upsert\"",
            "tenant=7",
            "chunk_ids=101,102",
            "connection refused",
        ] {
            assert!(warning.contains(needle), "{needle} missing in {warning}");
        }
        let pending = outbox.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].intent.chunk_ids, vec![c(101), c(102)]);
        assert!(pending[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("connection refused"));
    }

    #[tokio::test]
    async fn a_failing_pgvector_fails_the_call_and_sync_removes_what_milvus_got() {
        // Writes run in parallel, so Milvus may apply a write pgvector then refuses. The
        // call fails, its intent stays, and sync makes Milvus equal to pgvector again.
        let mut pg = MockVectorStoreGateway::new();
        pg.expect_dimension().return_const(dim());
        pg.expect_upsert_vectors().times(1).returning(|_| {
            Err(GatewayError::backend(
                StoreKind::Pgvector,
                "upsert",
                "deadlock detected",
            ))
        });
        let pg_rows = Arc::new(MemoryStore::new(StoreKind::Pgvector, dim(), Metric::Ip));
        let milvus = Arc::new(MemoryStore::new(StoreKind::Milvus, dim(), Metric::Ip));
        let outbox = Arc::new(MemoryOutbox::new());
        let dual = DualGateway::new(
            DualStores {
                pgvector: Arc::new(pg),
                pgvector_rows: pg_rows,
                milvus: milvus.clone(),
                milvus_rows: milvus.clone(),
                outbox: outbox.clone(),
            },
            DualSettings::default(),
        );

        let err = dual.upsert_vectors(&[rec(5, 1, 1, 0.5)]).await.unwrap_err();
        assert!(
            matches!(
                err,
                GatewayError::Backend {
                    store: StoreKind::Pgvector,
                    ..
                }
            ),
            "{err}"
        );
        dual.flush_background().await;
        assert_eq!(outbox.pending().len(), 1, "the intent is kept for replay");

        let report = dual.sync().await.unwrap();
        assert!(
            milvus.snapshot().is_empty(),
            "Milvus holds nothing pgvector lacks"
        );
        assert_eq!(report.entries_replayed, 1);
        assert_eq!(report.remaining, 0);
    }

    #[tokio::test]
    async fn an_outbox_failure_fails_the_call_before_either_store_is_touched() {
        let mut pg = MockVectorStoreGateway::new();
        pg.expect_dimension().return_const(dim());
        // No write expectations: a call to either store would panic the test.
        let milvus = MockVectorStoreGateway::new();
        let rows = Arc::new(MemoryStore::new(StoreKind::Pgvector, dim(), Metric::Ip));
        let outbox = Arc::new(MemoryOutbox::new());
        outbox.set_unavailable(true);
        let dual = DualGateway::new(
            DualStores {
                pgvector: Arc::new(pg),
                pgvector_rows: rows.clone(),
                milvus: Arc::new(milvus),
                milvus_rows: rows,
                outbox,
            },
            DualSettings::default(),
        );
        let err = dual.upsert_vectors(&[rec(1, 1, 1, 0.1)]).await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }

    #[tokio::test]
    async fn bad_input_is_rejected_before_the_outbox() {
        let f = fixture(DualSettings::default());
        let wrong_dim = VectorRecord::new(
            c(1),
            t(1),
            ProjectId::new(1).unwrap(),
            Embedding::new(vec![1.0, 2.0]).unwrap(),
        );
        let err = f.dual.upsert_vectors(&[wrong_dim]).await.unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert_eq!(f.outbox.depth().await.unwrap(), 0);
        assert_eq!(f.pg.write_calls() + f.milvus.write_calls(), 0);
    }

    #[tokio::test]
    async fn successful_writes_leave_both_stores_equal_and_the_outbox_empty() {
        let f = fixture(DualSettings::default());
        f.dual
            .upsert_vectors(&[rec(1, 1, 1, 0.1), rec(2, 1, 2, 0.2), rec(3, 2, 1, 0.3)])
            .await
            .unwrap();
        assert_eq!(
            f.dual
                .delete_vectors(&DeleteRequest::chunks(t(1), [c(2)]))
                .await
                .unwrap(),
            1
        );
        f.dual.flush_background().await;
        assert_eq!(f.pg.snapshot(), f.milvus.snapshot());
        assert_eq!(f.pg.snapshot().len(), 2);
        assert_eq!(f.outbox.depth().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn sync_converges_after_milvus_missed_upserts_deletes_moves_and_scope_deletes() {
        let f = fixture(DualSettings::default());
        // Before the outage both stores agree.
        f.dual
            .upsert_vectors(
                &(1..=6)
                    .map(|i| rec(i, 1, i % 2, 0.1 * i as f32))
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        f.dual
            .upsert_vectors(&[rec(20, 2, 1, 0.9), rec(21, 2, 2, 0.8)])
            .await
            .unwrap();
        f.dual.flush_background().await;

        f.milvus.set_down(true);
        // New rows, a changed vector, a chunk moved to tenant 3, a chunk delete and a
        // project delete, all while Milvus is down: every call succeeds.
        f.dual
            .upsert_vectors(&[rec(7, 1, 1, 0.7), rec(1, 1, 1, -0.5)])
            .await
            .unwrap();
        f.dual.upsert_vectors(&[rec(2, 3, 9, 0.2)]).await.unwrap();
        f.dual
            .delete_vectors(&DeleteRequest::chunks(t(1), [c(3)]))
            .await
            .unwrap();
        f.dual
            .delete_vectors(&DeleteRequest::project(t(2), ProjectId::new(1).unwrap()))
            .await
            .unwrap();
        f.dual.flush_background().await;
        assert_eq!(f.outbox.depth().await.unwrap(), 4);
        assert_ne!(f.pg.snapshot(), f.milvus.snapshot());

        // A sync while Milvus is still down repairs nothing and keeps everything.
        let report = f.dual.sync().await.unwrap();
        assert_eq!(report.entries_replayed, 0);
        assert!(report.entries_failed >= 1);
        assert_eq!(report.remaining, 4);

        f.milvus.set_down(false);
        let report = f.dual.sync().await.unwrap();
        assert_eq!(report.entries_replayed, 4, "{report:?}");
        assert_eq!(report.remaining, 0);
        assert_eq!(f.pg.snapshot(), f.milvus.snapshot());
        assert!(
            report.deleted >= 2,
            "chunk 3 and chunk 20 removed: {report:?}"
        );
    }

    #[tokio::test]
    async fn searches_read_pgvector_by_default_and_milvus_when_configured() {
        let query = SearchRequest::new(
            SearchScope::tenant(t(1)),
            Embedding::new(vec![1.0, 0.0, 0.0, 0.0]).unwrap(),
            TopK::new(3).unwrap(),
        );
        for (read_from, expected) in [(ReadFrom::Pgvector, 11), (ReadFrom::Milvus, 12)] {
            let f = fixture(DualSettings {
                read_from,
                ..DualSettings::default()
            });
            // Different rows behind each store's back tell which one answered.
            f.pg.put_raw(rec(11, 1, 1, 1.0));
            f.milvus.put_raw(rec(12, 1, 1, 1.0));
            let hits = f.dual.search(&query).await.unwrap();
            assert_eq!(
                hits.iter().map(|h| h.chunk_id.get()).collect::<Vec<_>>(),
                vec![expected]
            );
        }
    }

    #[tokio::test]
    async fn shadow_reads_query_the_other_store_in_the_background() {
        let logs = CapturedLogs::default();
        let _guard = logs.install();
        let pg = Arc::new(MemoryStore::new(StoreKind::Pgvector, dim(), Metric::Ip));
        pg.put_raw(rec(1, 1, 1, 1.0));
        pg.put_raw(rec(2, 1, 1, 0.5));
        let mut milvus = MockVectorStoreGateway::new();
        milvus.expect_search().times(1).returning(|_| {
            Ok(vec![SearchHit {
                chunk_id: ChunkId::new(1).unwrap(),
                project_id: ProjectId::new(1).unwrap(),
                score: 1.0,
            }])
        });
        let dual = DualGateway::new(
            DualStores {
                pgvector: pg.clone(),
                pgvector_rows: pg.clone(),
                milvus: Arc::new(milvus),
                milvus_rows: pg,
                outbox: Arc::new(MemoryOutbox::new()),
            },
            DualSettings {
                shadow_read_rate: 1.0,
                ..DualSettings::default()
            },
        );
        let query = SearchRequest::new(
            SearchScope::tenant(t(1)),
            Embedding::new(vec![1.0, 0.0, 0.0, 0.0]).unwrap(),
            TopK::new(2).unwrap(),
        );
        let hits = dual.search(&query).await.unwrap();
        assert_eq!(hits.len(), 2);
        for _ in 0..50 {
            if !logs.lines_with("shadow read").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let lines = logs.lines_with("shadow read");
        assert_eq!(lines.len(), 1, "{}", logs.text());
        assert!(lines[0].contains("overlap=0.5"), "{}", lines[0]);
    }

    #[test]
    fn overlap_is_the_share_of_primary_ids_found() {
        let hit = |id| SearchHit {
            chunk_id: c(id),
            project_id: ProjectId::new(1).unwrap(),
            score: 0.0,
        };
        assert_eq!(top_k_overlap(&[c(1), c(2)], &[hit(2), hit(3)]), 0.5);
        assert_eq!(top_k_overlap(&[], &[]), 1.0);
        assert_eq!(top_k_overlap(&[], &[hit(1)]), 0.0);
    }

    #[tokio::test]
    async fn health_reports_a_down_milvus_without_failing() {
        let f = fixture(DualSettings::default());
        f.milvus.set_down(true);
        let health = f.dual.health().await.unwrap();
        assert_eq!(health.stores.len(), 2);
        assert!(!health.is_healthy());
        let milvus = health
            .stores
            .iter()
            .find(|s| s.store == StoreKind::Milvus)
            .unwrap();
        assert!(!milvus.reachable);
        assert!(milvus.problem.as_deref().unwrap().contains("down"));
    }
}
