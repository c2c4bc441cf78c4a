//! The dual-mode outbox port: durable write intents, replayed into Milvus by `sync`.
//!
//! The composition crate's dual gateway drives it; the pgvector adapter implements it in
//! PostgreSQL. An entry is *pending* or *done*; claims and completions are ordered on one
//! sequence with the intents' ids, so comparing them orders events in time across
//! processes.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use strum::{EnumString, IntoStaticStr};

use crate::{ChunkId, DeleteRequest, GatewayError, ProjectId, StoreKind, TenantId, VectorRecord};

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

/// Durable write intents (the pgvector adapter's `PgOutbox`; the composition crate has an
/// in-memory twin for unit tests).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: i64) -> TenantId {
        TenantId::new(id).unwrap()
    }

    fn chunks(ids: &[i64]) -> Intent {
        Intent {
            op: IntentOp::Upsert,
            tenant_ids: vec![t(1)],
            chunk_ids: ids.iter().map(|i| ChunkId::new(*i).unwrap()).collect(),
            project_id: None,
        }
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
