//! The outbox rules in memory: the same protocol as the pgvector adapter's `PgOutbox`
//! (which tests/outbox_pg.rs holds to it on the real server), for unit tests of the dual
//! gateway and the relay.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore};
use vectorgate_domain::outbox::{Claim, Leadership, Outbox, OutboxStats, Settle, Wakeups};
use vectorgate_domain::{ChunkId, DeleteRequest, GatewayError, StoreKind};

use super::{Held, MemoryStore};

#[derive(Debug, Clone)]
struct Entry {
    version: i64,
    pending: u32,
    lease_until: Instant,
    claimed: Option<i64>,
    failed: bool,
    last_error: Option<String>,
    created: Instant,
}

impl Entry {
    fn new() -> Self {
        Self {
            version: 1,
            pending: 0,
            lease_until: Instant::now(),
            claimed: None,
            failed: false,
            last_error: None,
            created: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<ChunkId, Entry>,
    unavailable: bool,
    led: bool,
    lead_refusals: usize,
    refused_calls: usize,
}

/// The outbox in memory. `store` is the pgvector side that `delete_scope` deletes from.
#[derive(Debug)]
pub struct MemoryOutbox {
    state: Arc<Mutex<State>>,
    store: Option<Arc<MemoryStore>>,
    wakeups: Arc<Notify>,
    /// The gate of the next `complete`, when a test holds it.
    complete_gate: Mutex<Option<(Arc<Semaphore>, Arc<Semaphore>)>>,
}

impl MemoryOutbox {
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            store: None,
            wakeups: Arc::new(Notify::new()),
            complete_gate: Mutex::default(),
        }
    }

    /// An outbox whose `delete_scope` deletes from `store`.
    pub fn beside(store: Arc<MemoryStore>) -> Self {
        Self {
            store: Some(store),
            ..Self::new()
        }
    }

    /// The next `complete` stops at a gate until released.
    pub fn hold_complete(&self) -> Held {
        let (held, reached, open) = Held::with_gate();
        *self.complete_gate.lock().unwrap() = Some((reached, open));
        held
    }

    /// Makes every later call fail with `Unavailable` (or recover).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.lock().unwrap().unavailable = unavailable;
    }

    /// The ids with an entry, ascending.
    pub fn pending(&self) -> Vec<ChunkId> {
        self.state.lock().unwrap().entries.keys().copied().collect()
    }

    /// The ids a relay has claimed, ascending.
    pub fn claimed(&self) -> Vec<ChunkId> {
        let state = self.state.lock().unwrap();
        state
            .entries
            .iter()
            .filter(|(_, e)| e.claimed.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether a relay leads now.
    pub fn try_lead_is_taken(&self) -> bool {
        self.state.lock().unwrap().led
    }

    /// How many calls failed because the outbox was unavailable.
    pub fn refused_calls(&self) -> usize {
        self.state.lock().unwrap().refused_calls
    }

    /// How often `try_lead` found another relay leading.
    pub fn lead_refusals(&self) -> usize {
        self.state.lock().unwrap().lead_refusals
    }

    /// Expires every lease (as if the lease time had passed).
    pub fn expire_leases(&self) {
        let past = Instant::now() - Duration::from_millis(1);
        for e in self.state.lock().unwrap().entries.values_mut() {
            e.lease_until = past;
        }
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, State>, GatewayError> {
        let mut state = self.state.lock().unwrap();
        if state.unavailable {
            state.refused_calls += 1;
            return Err(GatewayError::unavailable(
                StoreKind::Pgvector,
                "outbox: connection refused (test)",
            ));
        }
        Ok(state)
    }

    fn record_in(state: &mut State, ids: &[ChunkId], lease: Duration) {
        let until = Instant::now() + lease;
        for id in ids {
            let e = state.entries.entry(*id).or_insert_with(|| Entry {
                version: 0,
                ..Entry::new()
            });
            e.version += 1;
            e.pending += 1;
            e.lease_until = e.lease_until.max(until);
        }
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn bootstrap(&self) -> Result<(), GatewayError> {
        self.guard().map(|_| ())
    }

    async fn record(&self, ids: &[ChunkId], lease: Duration) -> Result<(), GatewayError> {
        let mut state = self.guard()?;
        Self::record_in(&mut state, ids, lease);
        Ok(())
    }

    async fn delete_scope(
        &self,
        request: &DeleteRequest,
        lease: Duration,
    ) -> Result<Vec<ChunkId>, GatewayError> {
        let store = self.store.as_ref().ok_or_else(|| {
            GatewayError::misuse("MemoryOutbox::beside a store for scope deletes")
        })?;
        let mut state = self.guard()?;
        let ids = store.delete_scope_now(request)?;
        Self::record_in(&mut state, &ids, lease);
        Ok(ids)
    }

    async fn settle(&self, ids: &[ChunkId], outcome: &Settle) -> Result<u64, GatewayError> {
        let mut state = self.guard()?;
        let mut remaining = 0;
        for id in ids {
            let sole = state.entries.get(id).is_some_and(|e| {
                e.version == 1 && e.pending == 1 && e.claimed.is_none() && !e.failed
            });
            if *outcome == Settle::Applied && sole {
                state.entries.remove(id);
                continue;
            }
            let e = state.entries.entry(*id).or_insert_with(Entry::new);
            e.pending = e.pending.saturating_sub(1);
            e.version += 1;
            if let Settle::Failed(error) = outcome {
                e.failed = true;
                e.last_error = Some(error.clone());
            }
            remaining += 1;
        }
        if remaining > 0 {
            self.wakeups.notify_waiters();
        }
        Ok(remaining)
    }

    async fn enqueue(&self, ids: &[ChunkId]) -> Result<(), GatewayError> {
        let mut state = self.guard()?;
        for id in ids {
            let e = state.entries.entry(*id).or_insert_with(|| Entry {
                version: 0,
                ..Entry::new()
            });
            e.version += 1;
        }
        Ok(())
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Claim>, GatewayError> {
        let mut state = self.guard()?;
        let now = Instant::now();
        let mut picked: Vec<(Instant, ChunkId)> = state
            .entries
            .iter()
            .filter(|(_, e)| e.claimed.is_none() && (e.pending == 0 || e.lease_until < now))
            .map(|(id, e)| (e.created, *id))
            .collect();
        picked.sort();
        picked.truncate(limit);
        Ok(picked
            .into_iter()
            .map(|(_, id)| {
                let e = state.entries.get_mut(&id).unwrap();
                e.claimed = Some(e.version);
                e.pending = 0;
                Claim {
                    chunk_id: id,
                    version: e.version,
                }
            })
            .collect())
    }

    async fn complete(&self, claims: &[Claim]) -> Result<u64, GatewayError> {
        let gate = self.complete_gate.lock().unwrap().take();
        if let Some((reached, open)) = gate {
            Held::stop(&reached, &open).await;
        }
        let mut state = self.guard()?;
        let mut removed = 0;
        for claim in claims {
            let Some(e) = state.entries.get_mut(&claim.chunk_id) else {
                continue;
            };
            if e.version == claim.version && e.pending == 0 {
                state.entries.remove(&claim.chunk_id);
                removed += 1;
            } else {
                e.claimed = None;
                e.failed = false;
                e.last_error = None;
            }
        }
        Ok(removed)
    }

    async fn release(&self, claims: &[Claim], error: &str) -> Result<(), GatewayError> {
        let mut state = self.guard()?;
        for claim in claims {
            if let Some(e) = state.entries.get_mut(&claim.chunk_id) {
                e.claimed = None;
                e.failed = true;
                e.last_error = Some(error.to_string());
            }
        }
        Ok(())
    }

    async fn reset_claims(&self) -> Result<(), GatewayError> {
        let mut state = self.guard()?;
        for e in state.entries.values_mut() {
            e.claimed = None;
        }
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats, GatewayError> {
        let state = self.guard()?;
        Ok(OutboxStats {
            depth: state.entries.len() as u64,
            lag: state.entries.values().map(|e| e.created.elapsed()).max(),
            failed: state.entries.values().filter(|e| e.failed).count() as u64,
            last_error: state.entries.values().find_map(|e| e.last_error.clone()),
        })
    }

    async fn held(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>, GatewayError> {
        let state = self.guard()?;
        Ok(ids
            .iter()
            .filter(|id| state.entries.contains_key(id))
            .copied()
            .collect())
    }

    async fn try_lead(&self) -> Result<Option<Box<dyn Leadership>>, GatewayError> {
        let mut state = self.guard()?;
        if state.led {
            state.lead_refusals += 1;
            return Ok(None);
        }
        state.led = true;
        Ok(Some(Box::new(MemoryLead(Arc::clone(&self.state)))))
    }

    async fn subscribe(&self) -> Result<Box<dyn Wakeups>, GatewayError> {
        Ok(Box::new(MemoryWakeups(Arc::clone(&self.wakeups))))
    }
}

impl Default for MemoryOutbox {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
struct MemoryLead(Arc<Mutex<State>>);

#[async_trait]
impl Leadership for MemoryLead {
    async fn check(&mut self) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn release(self: Box<Self>) {
        self.0.lock().unwrap().led = false;
    }
}

#[derive(Debug)]
struct MemoryWakeups(Arc<Notify>);

#[async_trait]
impl Wakeups for MemoryWakeups {
    async fn next(&mut self) -> Result<(), GatewayError> {
        self.0.notified().await;
        Ok(())
    }
}
