//! The outbox rules in memory: the same protocol as the pgvector adapter's `PgOutbox`, for
//! unit tests of the dual gateway and `sync` (the PostgreSQL one is tested against the real
//! server in tests/outbox_pg.rs).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use vectorgate_domain::outbox::{Completion, Intent, IntentId, Outbox, OutboxEntry};
use vectorgate_domain::{GatewayError, StoreKind};

#[derive(Debug, Clone)]
struct MemEntry {
    id: IntentId,
    intent: Intent,
    lease_until: Option<Instant>,
    claimed_seq: Option<i64>,
    done_seq: Option<i64>,
    attempts: u32,
    last_error: Option<String>,
}

#[derive(Debug, Default)]
struct MemState {
    seq: i64,
    entries: Vec<MemEntry>,
    /// Makes every call fail (a PostgreSQL outage in unit tests).
    unavailable: bool,
}

impl MemState {
    fn next(&mut self) -> i64 {
        self.seq += 1;
        self.seq
    }
}

/// The outbox rules in memory, for unit tests of the dual gateway and `sync`.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    state: Mutex<MemState>,
}

impl MemoryOutbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call fail with `Unavailable` (or recover).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.lock().unwrap().unavailable = unavailable;
    }

    /// Pending entries, oldest first.
    pub fn pending(&self) -> Vec<OutboxEntry> {
        let state = self.state.lock().unwrap();
        state
            .entries
            .iter()
            .filter(|e| e.done_seq.is_none())
            .map(|e| OutboxEntry {
                id: e.id,
                intent: e.intent.clone(),
                attempts: e.attempts,
                last_error: e.last_error.clone(),
            })
            .collect()
    }

    /// Expires every lease (as if the lease time had passed).
    pub fn expire_leases(&self) {
        let mut state = self.state.lock().unwrap();
        for e in &mut state.entries {
            e.lease_until = None;
        }
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, MemState>, GatewayError> {
        let state = self.state.lock().unwrap();
        if state.unavailable {
            return Err(GatewayError::unavailable(
                StoreKind::Pgvector,
                "outbox: connection refused (test)",
            ));
        }
        Ok(state)
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn bootstrap(&self) -> Result<(), GatewayError> {
        let _state = self.guard()?;
        Ok(())
    }

    async fn record(&self, intent: &Intent, lease: Duration) -> Result<IntentId, GatewayError> {
        let mut state = self.guard()?;
        let id = state.next();
        state.entries.push(MemEntry {
            id,
            intent: intent.clone(),
            lease_until: Some(Instant::now() + lease),
            claimed_seq: None,
            done_seq: None,
            attempts: 0,
            last_error: None,
        });
        Ok(id)
    }

    async fn complete(
        &self,
        id: IntentId,
        intent: &Intent,
        not_concurrent: &[IntentId],
    ) -> Result<Completion, GatewayError> {
        let mut state = self.guard()?;
        let Some(me) = state.entries.iter().find(|e| e.id == id).cloned() else {
            let new_id = state.next();
            state.entries.push(MemEntry {
                id: new_id,
                intent: intent.clone(),
                lease_until: None,
                claimed_seq: None,
                done_seq: None,
                attempts: 0,
                last_error: None,
            });
            return Ok(Completion::KeptForReplay);
        };
        let conflict = me.claimed_seq.is_some()
            || me.done_seq.is_some()
            || state.entries.iter().any(|o| {
                let excused = not_concurrent.contains(&o.id)
                    && o.claimed_seq.is_none()
                    && o.done_seq.is_none();
                o.id != id
                    && !excused
                    && o.done_seq.is_none_or(|d| d > id)
                    && o.intent.overlaps(&me.intent)
            });
        if conflict {
            let e = state.entries.iter_mut().find(|e| e.id == id).unwrap();
            e.claimed_seq = None;
            e.done_seq = None;
            e.lease_until = None;
            Ok(Completion::KeptForReplay)
        } else {
            state.entries.retain(|e| e.id != id);
            Ok(Completion::Removed)
        }
    }

    async fn fail(&self, id: IntentId, error: &str) -> Result<(), GatewayError> {
        let mut state = self.guard()?;
        if let Some(e) = state.entries.iter_mut().find(|e| e.id == id) {
            e.lease_until = None;
            e.claimed_seq = None;
            e.done_seq = None;
            e.attempts += 1;
            e.last_error = Some(error.to_string());
        }
        Ok(())
    }

    async fn claim(
        &self,
        after: IntentId,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, GatewayError> {
        let mut state = self.guard()?;
        let now = Instant::now();
        let mut ids: Vec<IntentId> = state
            .entries
            .iter()
            .filter(|e| {
                e.done_seq.is_none() && e.id > after && e.lease_until.is_none_or(|l| l < now)
            })
            .map(|e| e.id)
            .collect();
        ids.sort();
        ids.truncate(limit);
        let mut out = Vec::new();
        for id in ids {
            let seq = state.next();
            let e = state.entries.iter_mut().find(|e| e.id == id).unwrap();
            e.claimed_seq = Some(seq);
            e.lease_until = Some(now + lease);
            out.push(OutboxEntry {
                id,
                intent: e.intent.clone(),
                attempts: e.attempts,
                last_error: e.last_error.clone(),
            });
        }
        Ok(out)
    }

    async fn mark_done(&self, ids: &[IntentId]) -> Result<(), GatewayError> {
        let mut state = self.guard()?;
        for id in ids {
            let seq = state.next();
            if let Some(e) = state
                .entries
                .iter_mut()
                .find(|e| e.id == *id && e.claimed_seq.is_some())
            {
                e.done_seq = Some(seq);
                e.lease_until = None;
            }
        }
        Ok(())
    }

    async fn release(&self, ids: &[IntentId], error: &str) -> Result<(), GatewayError> {
        let mut state = self.guard()?;
        for e in state.entries.iter_mut().filter(|e| ids.contains(&e.id)) {
            e.lease_until = None;
            e.claimed_seq = None;
            e.attempts += 1;
            e.last_error = Some(error.to_string());
        }
        Ok(())
    }

    async fn depth(&self) -> Result<u64, GatewayError> {
        let state = self.guard()?;
        Ok(state
            .entries
            .iter()
            .filter(|e| e.done_seq.is_none())
            .count() as u64)
    }

    async fn purge_done(&self) -> Result<u64, GatewayError> {
        let mut state = self.guard()?;
        let min_pending = state
            .entries
            .iter()
            .filter(|e| e.done_seq.is_none())
            .map(|e| e.id)
            .min()
            .unwrap_or(i64::MAX);
        let before = state.entries.len();
        state
            .entries
            .retain(|e| e.done_seq.is_none_or(|d| d >= min_pending));
        Ok((before - state.entries.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectorgate_domain::outbox::IntentOp;
    use vectorgate_domain::{ChunkId, TenantId};

    fn c(id: i64) -> ChunkId {
        ChunkId::new(id).unwrap()
    }
    fn t(id: i64) -> TenantId {
        TenantId::new(id).unwrap()
    }

    fn chunks(ids: &[i64]) -> Intent {
        Intent {
            op: IntentOp::Upsert,
            tenant_ids: vec![t(1)],
            chunk_ids: ids.iter().map(|i| c(*i)).collect(),
            project_id: None,
        }
    }

    const LEASE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_lone_write_removes_its_intent() {
        let outbox = MemoryOutbox::new();
        let id = outbox.record(&chunks(&[1, 2]), LEASE).await.unwrap();
        assert_eq!(outbox.depth().await.unwrap(), 1);
        assert_eq!(
            outbox.complete(id, &chunks(&[1, 2]), &[]).await.unwrap(),
            Completion::Removed
        );
        assert_eq!(outbox.depth().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn overlapping_concurrent_writes_keep_at_least_one_intent() {
        let outbox = MemoryOutbox::new();
        let a = outbox.record(&chunks(&[1, 2]), LEASE).await.unwrap();
        let b = outbox.record(&chunks(&[2, 3]), LEASE).await.unwrap();
        let first = outbox.complete(a, &chunks(&[1, 2]), &[]).await.unwrap();
        let second = outbox.complete(b, &chunks(&[2, 3]), &[]).await.unwrap();
        assert_eq!(first, Completion::KeptForReplay);
        assert_eq!(second, Completion::KeptForReplay);
        // Disjoint writes do not hold each other up.
        let d = outbox.record(&chunks(&[9]), LEASE).await.unwrap();
        assert_eq!(
            outbox.complete(d, &chunks(&[9]), &[]).await.unwrap(),
            Completion::Removed
        );
    }

    #[tokio::test]
    async fn a_sync_that_overlaps_a_write_in_flight_keeps_the_write_pending() {
        let outbox = MemoryOutbox::new();
        let old = outbox.record(&chunks(&[5]), LEASE).await.unwrap();
        outbox.fail(old, "milvus down").await.unwrap();
        // sync claims the old entry...
        let claimed = outbox.claim(0, 10, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 1);
        // ...a new write of chunk 5 starts, sync finishes, then the write completes.
        let new = outbox.record(&chunks(&[5]), LEASE).await.unwrap();
        outbox.mark_done(&[old]).await.unwrap();
        assert_eq!(
            outbox.complete(new, &chunks(&[5]), &[]).await.unwrap(),
            Completion::KeptForReplay,
            "the sync's Milvus write may have landed after ours"
        );
        // A write that starts after the sync finished is not held up.
        outbox.claim(0, 10, LEASE).await.unwrap();
        outbox.mark_done(&[new]).await.unwrap();
        assert_eq!(outbox.purge_done().await.unwrap(), 2);
        let later = outbox.record(&chunks(&[5]), LEASE).await.unwrap();
        assert_eq!(
            outbox.complete(later, &chunks(&[5]), &[]).await.unwrap(),
            Completion::Removed
        );
    }

    #[tokio::test]
    async fn writes_known_not_to_overlap_in_time_do_not_hold_each_other_up() {
        let outbox = MemoryOutbox::new();
        let a = outbox.record(&chunks(&[1]), LEASE).await.unwrap();
        let b = outbox.record(&chunks(&[1]), LEASE).await.unwrap();
        assert_eq!(
            outbox.complete(a, &chunks(&[1]), &[b]).await.unwrap(),
            Completion::Removed
        );
        assert_eq!(
            outbox.complete(b, &chunks(&[1]), &[a]).await.unwrap(),
            Completion::Removed
        );
        // A claimed entry is never excused: a sync may be replaying it.
        let c = outbox.record(&chunks(&[2]), LEASE).await.unwrap();
        outbox.fail(c, "x").await.unwrap();
        outbox.claim(0, 10, LEASE).await.unwrap();
        let d = outbox.record(&chunks(&[2]), LEASE).await.unwrap();
        assert_eq!(
            outbox.complete(d, &chunks(&[2]), &[c]).await.unwrap(),
            Completion::KeptForReplay
        );
    }

    #[tokio::test]
    async fn claims_skip_leased_entries_and_respect_the_cursor() {
        let outbox = MemoryOutbox::new();
        let a = outbox.record(&chunks(&[1]), LEASE).await.unwrap();
        let b = outbox.record(&chunks(&[2]), LEASE).await.unwrap();
        assert!(outbox.claim(0, 10, LEASE).await.unwrap().is_empty());
        outbox.fail(a, "x").await.unwrap();
        outbox.fail(b, "x").await.unwrap();
        let claimed = outbox.claim(a, 10, LEASE).await.unwrap();
        assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b]);
    }
}
