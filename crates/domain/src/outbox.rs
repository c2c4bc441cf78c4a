//! The dual-mode outbox port: one entry per chunk id whose Milvus copy may differ from
//! pgvector, until the relay (or, for an uncontended write, the writer itself) has made
//! the two equal.
//!
//! The protocol, and why it converges, is in `docs/dual-mode.md`. In short: a writer
//! records its ids before touching either store and settles them after; an entry that
//! only one uncontended, successful write touched is removed by that writer, every other
//! entry is replayed by the single relay, which copies pgvector's row as it is then.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::{ChunkId, DeleteRequest, GatewayError};

/// How a recorded write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Both stores applied it.
    Applied,
    /// A store failed (the error, for the operator); the relay must replay the ids.
    Failed(String),
}

/// A relay's hold on one entry: the entry's version when it was claimed. Completing the
/// claim removes the entry only if no write touched the id since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub chunk_id: ChunkId,
    pub version: i64,
}

/// The outbox as an operator watches it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OutboxStats {
    /// Entries (distinct chunk ids) not yet known to be equal in both stores.
    pub depth: u64,
    /// Age of the oldest entry: how far Milvus may be behind pgvector.
    pub lag: Option<Duration>,
    /// Entries whose last write or replay failed.
    pub failed: u64,
    /// The error of the most recent failure, when there is one.
    pub last_error: Option<String>,
}

/// Being the one relay of an outbox across processes; dropped or released, another
/// process may take over.
#[async_trait]
pub trait Leadership: Send + Sync + fmt::Debug {
    /// Fails when the leadership was lost (its connection broke): the relay must stop.
    async fn check(&mut self) -> Result<(), GatewayError>;
    /// Gives the leadership up.
    async fn release(self: Box<Self>);
}

/// Wake-ups sent by writers of any process when they leave work for the relay.
#[async_trait]
pub trait Wakeups: Send + fmt::Debug {
    /// Waits for the next wake-up.
    async fn next(&mut self) -> Result<(), GatewayError>;
}

/// Durable write intents, one entry per chunk id (the pgvector adapter's `PgOutbox`; the
/// composition crate has an in-memory twin for unit tests).
#[async_trait]
pub trait Outbox: Send + Sync + fmt::Debug {
    /// Creates the table if missing (idempotent, safe for processes starting together).
    async fn bootstrap(&self) -> Result<(), GatewayError>;

    /// A write of these ids is about to start; nothing is written to either store before
    /// this returns. The writer holds the ids for `lease`: the relay leaves them alone until
    /// the writer settles or the lease runs out.
    async fn record(&self, ids: &[ChunkId], lease: Duration) -> Result<(), GatewayError>;

    /// Deletes a whole project or tenant from pgvector and records every deleted id, in one
    /// transaction; returns those ids (held for `lease`, as by `record`).
    async fn delete_scope(
        &self,
        request: &DeleteRequest,
        lease: Duration,
    ) -> Result<Vec<ChunkId>, GatewayError>;

    /// A recorded write ended. Entries only this write touched, applied by both stores, are
    /// removed; the others stay for the relay. Returns how many entries of these ids remain.
    async fn settle(&self, ids: &[ChunkId], outcome: &Settle) -> Result<u64, GatewayError>;

    /// Asks the relay to copy these ids (backfill, repair, drift found by reconcile): they
    /// are replayed even when no write touches them.
    async fn enqueue(&self, ids: &[ChunkId]) -> Result<(), GatewayError>;

    /// For the relay: up to `limit` entries no writer holds, oldest first.
    async fn claim(&self, limit: usize) -> Result<Vec<Claim>, GatewayError>;

    /// For the relay: the claims were replayed. Entries no write touched since are removed;
    /// returns how many.
    async fn complete(&self, claims: &[Claim]) -> Result<u64, GatewayError>;

    /// For the relay: the replay failed; the entries stay, marked with `error`.
    async fn release(&self, claims: &[Claim], error: &str) -> Result<(), GatewayError>;

    /// For a relay that just became the leader: claims a relay that died left are dropped.
    async fn reset_claims(&self) -> Result<(), GatewayError>;

    async fn stats(&self) -> Result<OutboxStats, GatewayError>;

    /// Which of these ids have an entry (a write in flight or a replay to come).
    async fn held(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>, GatewayError>;

    /// Tries to become the one relay of this outbox; `None` while another process is.
    async fn try_lead(&self) -> Result<Option<Box<dyn Leadership>>, GatewayError>;

    /// Wake-ups from writers of every process (entries left for the relay).
    async fn subscribe(&self) -> Result<Box<dyn Wakeups>, GatewayError>;
}
