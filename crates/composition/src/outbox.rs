//! The dual-mode outbox: durable write intents in PostgreSQL, replayed by `sync`.
//!
//! See the top of [`crate::dual`] for why the protocol below makes the stores converge.
//! In short, an entry is *pending* (`done_seq IS NULL`) or *done*; `claimed_seq` and
//! `done_seq` are drawn from the same sequence as `id`, so comparing them orders events in
//! time across processes.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sqlx::Row;
use strum::{EnumString, IntoStaticStr};
use vectorgate_domain::{
    ChunkId, DeleteRequest, GatewayError, ProjectId, StoreKind, TenantId, VectorRecord,
};

use crate::settings::validate_table_name;

/// Id of an outbox entry (also its position in time, see the module docs).
pub type IntentId = i64;

/// What a dual write did, as far as `sync` needs to know to replay it. Stored in the
/// outbox's `op` column by its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumString, IntoStaticStr)]
#[strum(
    serialize_all = "snake_case",
    parse_err_ty = GatewayError,
    parse_err_fn = unknown_op
)]
pub enum IntentOp {
    Upsert,
    /// Delete of listed chunk ids.
    DeleteChunks,
    /// Delete of every chunk of a tenant, or of one project of it.
    DeleteScope,
}

fn unknown_op(op: &str) -> GatewayError {
    GatewayError::backend(
        StoreKind::Dual,
        "read outbox",
        format!("unknown outbox op {op:?}"),
    )
}

impl IntentOp {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The ids a dual write touches. Replay never needs the vectors: `sync` copies pgvector's
/// *current* rows for these ids (or scope), whatever happened since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub op: IntentOp,
    /// Tenants the write names (for scope deletes: the one tenant of the scope).
    pub tenant_ids: Vec<TenantId>,
    /// Chunk ids (empty for scope deletes).
    pub chunk_ids: Vec<ChunkId>,
    /// The project of a project-scope delete.
    pub project_id: Option<ProjectId>,
}

impl Intent {
    pub fn upsert(records: &[VectorRecord]) -> Self {
        let mut tenants: Vec<TenantId> = records.iter().map(|r| r.tenant_id).collect();
        tenants.sort();
        tenants.dedup();
        Self {
            op: IntentOp::Upsert,
            tenant_ids: tenants,
            chunk_ids: records.iter().map(|r| r.chunk_id).collect(),
            project_id: None,
        }
    }

    /// A chunk delete restricted to projects is recorded like any chunk delete: replay
    /// copies pgvector's state for the ids rather than re-running the request.
    pub fn delete(request: &DeleteRequest) -> Self {
        match request {
            DeleteRequest::Chunks {
                tenant_id,
                chunk_ids,
                ..
            } => Self {
                op: IntentOp::DeleteChunks,
                tenant_ids: vec![*tenant_id],
                chunk_ids: chunk_ids.clone(),
                project_id: None,
            },
            DeleteRequest::Project {
                tenant_id,
                project_id,
            } => Self {
                op: IntentOp::DeleteScope,
                tenant_ids: vec![*tenant_id],
                chunk_ids: Vec::new(),
                project_id: Some(*project_id),
            },
            DeleteRequest::Tenant { tenant_id } => Self {
                op: IntentOp::DeleteScope,
                tenant_ids: vec![*tenant_id],
                chunk_ids: Vec::new(),
                project_id: None,
            },
        }
    }

    /// Whether two writes could reach the stores in different orders with a different
    /// result: they share a chunk id, or one deletes a scope of a tenant the other names.
    pub fn overlaps(&self, other: &Intent) -> bool {
        if self.op == IntentOp::DeleteScope || other.op == IntentOp::DeleteScope {
            return self.tenant_ids.iter().any(|t| other.tenant_ids.contains(t));
        }
        self.chunk_ids.iter().any(|c| other.chunk_ids.contains(c))
    }

    /// The scope of a scope delete as a delete request (None for chunk intents).
    pub fn scope_request(&self) -> Option<DeleteRequest> {
        if self.op != IntentOp::DeleteScope {
            return None;
        }
        let tenant = *self.tenant_ids.first()?;
        Some(match self.project_id {
            Some(project) => DeleteRequest::project(tenant, project),
            None => DeleteRequest::tenant(tenant),
        })
    }
}

/// A pending entry handed to `sync`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: IntentId,
    pub intent: Intent,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// What happened to an intent when both stores succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// No concurrent write or sync could have reordered ours: the entry is gone.
    Removed,
    /// A concurrent overlapping write or a sync touched the same ids: the entry stays
    /// pending so that `sync` replays pgvector's final state.
    KeptForReplay,
}

/// Durable write intents. [`PgOutbox`] is the real one; [`MemoryOutbox`] implements the same
/// rules in memory for unit tests.
#[async_trait]
pub trait Outbox: Send + Sync + fmt::Debug {
    /// Creates the table if missing (idempotent). The factory calls it in dual mode only.
    async fn bootstrap(&self) -> Result<(), GatewayError>;

    /// Records an intent before any store is written (one autocommit round trip). The
    /// writer owns it for `lease`: `sync` leaves it alone until then.
    async fn record(&self, intent: &Intent, lease: Duration) -> Result<IntentId, GatewayError>;

    /// Both stores applied the write: remove the entry unless a conflicting write or sync
    /// happened meanwhile (then it is kept pending, or re-created if a sync finished it).
    ///
    /// `not_concurrent` lists unclaimed entries of this process known not to have been in
    /// flight at the same time as this write (one finished its store writes before the other
    /// recorded its intent); they cannot have been reordered with it and are not conflicts.
    async fn complete(
        &self,
        id: IntentId,
        intent: &Intent,
        not_concurrent: &[IntentId],
    ) -> Result<Completion, GatewayError>;

    /// A store failed: the entry stays pending, released for `sync` at once.
    async fn fail(&self, id: IntentId, error: &str) -> Result<(), GatewayError>;

    /// For `sync`: claims up to `limit` pending entries with `id > after` whose lease has
    /// expired, in id order, and leases them for `lease`.
    async fn claim(
        &self,
        after: IntentId,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, GatewayError>;

    /// For `sync`: the entry was replayed.
    async fn mark_done(&self, ids: &[IntentId]) -> Result<(), GatewayError>;

    /// For `sync`: the replay failed; the entry stays pending with the error.
    async fn release(&self, ids: &[IntentId], error: &str) -> Result<(), GatewayError>;

    /// Pending entries (including writes in flight).
    async fn depth(&self) -> Result<u64, GatewayError>;

    /// Deletes done entries no pending entry can still conflict with; returns how many.
    async fn purge_done(&self) -> Result<u64, GatewayError>;
}

fn pg_err(operation: &'static str, err: sqlx::Error) -> GatewayError {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            GatewayError::unavailable(StoreKind::Pgvector, format!("{operation}: {err}"))
        }
        other => GatewayError::backend(StoreKind::Pgvector, operation, other),
    }
}

fn to_i64s<T: Copy + Into<i64>>(values: &[T]) -> Vec<i64> {
    values.iter().map(|v| (*v).into()).collect()
}

/// The outbox table in PostgreSQL, sharing the pgvector store's pool.
#[derive(Clone)]
pub struct PgOutbox {
    pool: PgPool,
    table: String,
}

impl fmt::Debug for PgOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOutbox")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl PgOutbox {
    /// `table` must be a plain lowercase identifier (checked).
    pub fn new(pool: PgPool, table: impl Into<String>) -> Result<Self, GatewayError> {
        let table = table.into();
        validate_table_name("DUAL_OUTBOX_TABLE", &table)?;
        Ok(Self { pool, table })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn create_table(&self) -> Result<(), GatewayError> {
        let t = &self.table;
        // No GIN index on chunk_ids: inserting ~1000 ids into a GIN index on every write
        // would sit on the caller's latency path; the overlap check runs off that path,
        // over pending entries only (a small set unless Milvus is down).
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                id bigserial PRIMARY KEY,
                op text NOT NULL,
                tenant_ids bigint[] NOT NULL,
                chunk_ids bigint[] NOT NULL,
                project_id bigint,
                created_at timestamptz NOT NULL DEFAULT now(),
                lease_until timestamptz,
                claimed_seq bigint,
                done_seq bigint,
                attempts integer NOT NULL DEFAULT 0,
                last_error text
            )"
        );
        sqlx::query(&ddl)
            .execute(&self.pool)
            .await
            .map_err(|e| pg_err("create outbox table", e))?;
        let idx =
            format!("CREATE INDEX IF NOT EXISTS {t}_pending ON {t} (id) WHERE done_seq IS NULL");
        sqlx::query(&idx)
            .execute(&self.pool)
            .await
            .map_err(|e| pg_err("create outbox index", e))?;
        Ok(())
    }

    /// Drops the table (tests clean up with it).
    pub async fn drop_table(&self) -> Result<(), GatewayError> {
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", self.table))
            .execute(&self.pool)
            .await
            .map_err(|e| pg_err("drop outbox table", e))?;
        Ok(())
    }

    fn seq(&self) -> String {
        format!("nextval(pg_get_serial_sequence('{}', 'id'))", self.table)
    }

    async fn insert(
        &self,
        intent: &Intent,
        lease: Option<Duration>,
    ) -> Result<IntentId, GatewayError> {
        let sql = format!(
            "INSERT INTO {} (op, tenant_ids, chunk_ids, project_id, lease_until)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::double precision))
             RETURNING id",
            self.table
        );
        let row = sqlx::query(&sql)
            .bind(intent.op.as_str())
            .bind(to_i64s(&intent.tenant_ids))
            .bind(to_i64s(&intent.chunk_ids))
            .bind(intent.project_id.map(i64::from))
            .bind(lease.map(|l| l.as_secs_f64()))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| pg_err("record outbox intent", e))?;
        Ok(row.get::<i64, _>(0))
    }
}

#[async_trait]
impl Outbox for PgOutbox {
    async fn bootstrap(&self) -> Result<(), GatewayError> {
        self.create_table().await
    }

    async fn record(&self, intent: &Intent, lease: Duration) -> Result<IntentId, GatewayError> {
        self.insert(intent, Some(lease)).await
    }

    async fn complete(
        &self,
        id: IntentId,
        intent: &Intent,
        not_concurrent: &[IntentId],
    ) -> Result<Completion, GatewayError> {
        let t = &self.table;
        // One statement: the conflict test and the delete/re-arm see one snapshot.
        let sql = format!(
            "WITH me AS (SELECT id, op, tenant_ids, chunk_ids, claimed_seq, done_seq FROM {t} WHERE id = $1),
             conflict AS (
                SELECT (SELECT claimed_seq IS NOT NULL OR done_seq IS NOT NULL FROM me)
                    OR EXISTS (
                        SELECT 1 FROM {t} o, me
                        WHERE o.id <> me.id
                          AND (o.done_seq IS NULL OR o.done_seq > me.id)
                          AND NOT (o.id = ANY($2) AND o.claimed_seq IS NULL AND o.done_seq IS NULL)
                          AND (o.chunk_ids && me.chunk_ids
                               OR ((o.op = 'delete_scope' OR me.op = 'delete_scope')
                                   AND o.tenant_ids && me.tenant_ids))
                    ) AS c
             ),
             removed AS (
                DELETE FROM {t} WHERE id = $1 AND (SELECT c FROM conflict) IS FALSE RETURNING id
             ),
             rearmed AS (
                UPDATE {t} SET claimed_seq = NULL, done_seq = NULL, lease_until = NULL
                WHERE id = $1 AND (SELECT c FROM conflict) IS TRUE RETURNING id
             )
             SELECT (SELECT count(*) FROM removed) AS removed, (SELECT count(*) FROM rearmed) AS rearmed"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(not_concurrent)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| pg_err("complete outbox intent", e))?;
        let removed: i64 = row.get("removed");
        let rearmed: i64 = row.get("rearmed");
        if removed > 0 {
            return Ok(Completion::Removed);
        }
        if rearmed == 0 {
            // Our entry is gone: a sync replayed it while we were in flight (lease expired)
            // and it was purged. Our write may have landed after that replay: re-record it.
            self.insert(intent, None).await?;
        }
        Ok(Completion::KeptForReplay)
    }

    async fn fail(&self, id: IntentId, error: &str) -> Result<(), GatewayError> {
        let sql = format!(
            "UPDATE {} SET lease_until = NULL, claimed_seq = NULL, done_seq = NULL,
                 attempts = attempts + 1, last_error = $2 WHERE id = $1",
            self.table
        );
        sqlx::query(&sql)
            .bind(id)
            .bind(error)
            .execute(&self.pool)
            .await
            .map_err(|e| pg_err("record outbox failure", e))?;
        Ok(())
    }

    async fn claim(
        &self,
        after: IntentId,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, GatewayError> {
        let t = &self.table;
        let seq = self.seq();
        // SKIP LOCKED: two syncs running at once split the work instead of replaying twice.
        let sql = format!(
            "WITH picked AS (
                SELECT id FROM {t}
                WHERE done_seq IS NULL AND id > $1 AND (lease_until IS NULL OR lease_until < now())
                ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
             )
             UPDATE {t} o SET claimed_seq = {seq},
                 lease_until = now() + make_interval(secs => $3::double precision)
             FROM picked WHERE o.id = picked.id
             RETURNING o.id, o.op, o.tenant_ids, o.chunk_ids, o.project_id, o.attempts, o.last_error"
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit as i64)
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| pg_err("claim outbox entries", e))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let ids = |col: &str| -> Result<Vec<i64>, GatewayError> {
                row.try_get::<Vec<i64>, _>(col)
                    .map_err(|e| pg_err("read outbox entry", e))
            };
            let tenants = ids("tenant_ids")?
                .into_iter()
                .map(TenantId::new)
                .collect::<Result<Vec<_>, _>>()?;
            let chunks = ids("chunk_ids")?
                .into_iter()
                .map(ChunkId::new)
                .collect::<Result<Vec<_>, _>>()?;
            let project: Option<i64> = row.get("project_id");
            entries.push(OutboxEntry {
                id: row.get("id"),
                intent: Intent {
                    op: row.get::<&str, _>("op").parse()?,
                    tenant_ids: tenants,
                    chunk_ids: chunks,
                    project_id: project.map(ProjectId::new).transpose()?,
                },
                attempts: row.get::<i32, _>("attempts").max(0) as u32,
                last_error: row.get("last_error"),
            });
        }
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    async fn mark_done(&self, ids: &[IntentId]) -> Result<(), GatewayError> {
        if ids.is_empty() {
            return Ok(());
        }
        // Each entry gets its own sequence value, drawn after the replay's writes finished.
        let sql = format!(
            "UPDATE {} SET done_seq = {}, lease_until = NULL WHERE id = ANY($1) AND claimed_seq IS NOT NULL",
            self.table,
            self.seq()
        );
        sqlx::query(&sql)
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(|e| pg_err("mark outbox entries done", e))?;
        Ok(())
    }

    async fn release(&self, ids: &[IntentId], error: &str) -> Result<(), GatewayError> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE {} SET lease_until = NULL, claimed_seq = NULL, attempts = attempts + 1,
                 last_error = $2 WHERE id = ANY($1)",
            self.table
        );
        sqlx::query(&sql)
            .bind(ids)
            .bind(error)
            .execute(&self.pool)
            .await
            .map_err(|e| pg_err("release outbox entries", e))?;
        Ok(())
    }

    async fn depth(&self) -> Result<u64, GatewayError> {
        let sql = format!("SELECT count(*) FROM {} WHERE done_seq IS NULL", self.table);
        let n: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| pg_err("count outbox entries", e))?;
        Ok(n as u64)
    }

    async fn purge_done(&self) -> Result<u64, GatewayError> {
        let t = &self.table;
        // A done entry matters only to writers whose intent is older than its done_seq;
        // every such writer still has a pending entry, so anything done before the oldest
        // pending entry is irrelevant.
        let sql = format!(
            "DELETE FROM {t} WHERE done_seq IS NOT NULL
               AND done_seq < COALESCE((SELECT min(id) FROM {t} WHERE done_seq IS NULL), 9223372036854775807)"
        );
        let done = sqlx::query(&sql)
            .execute(&self.pool)
            .await
            .map_err(|e| pg_err("purge outbox", e))?;
        Ok(done.rows_affected())
    }
}

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

    #[test]
    fn scope_deletes_overlap_by_tenant() {
        let scope = Intent::delete(&DeleteRequest::tenant(t(1)));
        assert!(scope.overlaps(&chunks(&[1])));
        let other_tenant = Intent {
            tenant_ids: vec![t(2)],
            ..chunks(&[1])
        };
        assert!(!scope.overlaps(&other_tenant));
    }
}
