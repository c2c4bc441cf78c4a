//! The operator tables that live beside the embeddings: the last mode a database was used
//! with (`vectorgate_state`) and backfill checkpoints (`vectorgate_backfill_checkpoint`).

use serde::Serialize;
use sqlx::{Connection, Row};
use vectorgate_domain::{ChunkId, GatewayError, ProjectId, ScanFilter, StoreKind, TenantId};

use crate::bootstrap::{execute_ddl, DDL_LOCK};
use crate::store::PgVectorStore;

const STATE_TABLE: &str = "vectorgate_state";
const CHECKPOINT_TABLE: &str = "vectorgate_backfill_checkpoint";

/// One backfill job: source table, target and filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackfillJob {
    pub source_table: String,
    pub target: String,
    pub tenant_id: Option<TenantId>,
    pub project_id: Option<ProjectId>,
}

impl BackfillJob {
    pub fn new(source_table: &str, target: &str, filter: ScanFilter) -> Self {
        Self {
            source_table: source_table.to_string(),
            target: target.to_string(),
            tenant_id: filter.tenant_id,
            project_id: filter.project_id,
        }
    }

    /// The primary key: every part, `*` for an absent filter.
    pub fn key(&self) -> String {
        let part = |v: Option<i64>| v.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!(
            "{} -> {} tenant={} project={}",
            self.source_table,
            self.target,
            part(self.tenant_id.map(TenantId::get)),
            part(self.project_id.map(ProjectId::get)),
        )
    }
}

/// What the checkpoint table holds for a job: the last chunk id known to be copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub last_chunk_id: Option<ChunkId>,
    pub rows_copied: u64,
    pub total_rows: u64,
    pub completed: bool,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PgVectorStore {
    /// Creates a small table once, serialised with every other vectorgate DDL.
    pub(crate) async fn ensure_table(
        &self,
        operation: &'static str,
        ddl: &str,
    ) -> Result<(), GatewayError> {
        let mut conn = self.acquire(operation).await?;
        let mut tx = conn.begin().await.map_err(self.err(operation))?;
        execute_ddl(&mut tx, DDL_LOCK)
            .await
            .map_err(self.err(operation))?;
        execute_ddl(&mut tx, ddl)
            .await
            .map_err(self.err(operation))?;
        tx.commit().await.map_err(self.err(operation))
    }

    async fn ensure_state_table(&self, op: &'static str) -> Result<(), GatewayError> {
        self.ensure_table(
            op,
            "CREATE TABLE IF NOT EXISTS vectorgate_state (
                key text PRIMARY KEY, value text NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
    }

    /// The value recorded under `key` in `vectorgate_state`, if any.
    pub async fn load_state(&self, key: &str) -> Result<Option<String>, GatewayError> {
        let op = "read state";
        self.ensure_state_table(op).await?;
        let mut conn = self.acquire(op).await?;
        sqlx::query_scalar(&format!("SELECT value FROM {STATE_TABLE} WHERE key = $1"))
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.err(op))
    }

    /// Records `value` under `key` in `vectorgate_state` and returns what was recorded
    /// before, if anything.
    pub async fn swap_state(&self, key: &str, value: &str) -> Result<Option<String>, GatewayError> {
        let op = "record state";
        self.ensure_state_table(op).await?;
        let mut conn = self.acquire(op).await?;
        let previous: Option<Option<String>> = sqlx::query_scalar(&format!(
            "WITH old AS (SELECT value FROM {STATE_TABLE} WHERE key = $1)
             INSERT INTO {STATE_TABLE} (key, value, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()
             RETURNING (SELECT value FROM old)"
        ))
        .bind(key)
        .bind(value)
        .fetch_optional(&mut *conn)
        .await
        .map_err(self.err(op))?;
        Ok(previous.flatten())
    }

    /// Creates the checkpoint table when missing.
    pub async fn open_checkpoints(&self) -> Result<(), GatewayError> {
        self.ensure_table(
            "open backfill checkpoints",
            "CREATE TABLE IF NOT EXISTS vectorgate_backfill_checkpoint (
                job_key text PRIMARY KEY,
                source_table text NOT NULL,
                target text NOT NULL,
                tenant_id bigint,
                project_id bigint,
                last_chunk_id bigint,
                rows_copied bigint NOT NULL,
                total_rows bigint NOT NULL,
                completed boolean NOT NULL DEFAULT false,
                started_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
    }

    pub async fn load_checkpoint(
        &self,
        job: &BackfillJob,
    ) -> Result<Option<Checkpoint>, GatewayError> {
        let op = "read backfill checkpoint";
        let mut conn = self.acquire(op).await?;
        let row = sqlx::query(&format!(
            "SELECT last_chunk_id, rows_copied, total_rows, completed
             FROM {CHECKPOINT_TABLE} WHERE job_key = $1"
        ))
        .bind(job.key())
        .fetch_optional(&mut *conn)
        .await
        .map_err(self.err(op))?;
        let Some(row) = row else { return Ok(None) };
        let decode =
            |e: sqlx::Error| GatewayError::backend(StoreKind::Pgvector, op, &e).with_source(e);
        let last: Option<i64> = row.try_get("last_chunk_id").map_err(decode)?;
        let count = |name: &str| -> Result<u64, GatewayError> {
            Ok(row.try_get::<i64, _>(name).map_err(decode)?.max(0) as u64)
        };
        Ok(Some(Checkpoint {
            last_chunk_id: last.map(ChunkId::new).transpose()?,
            rows_copied: count("rows_copied")?,
            total_rows: count("total_rows")?,
            completed: row.try_get("completed").map_err(decode)?,
        }))
    }

    /// Starts the job over: the checkpoint says nothing is copied yet.
    pub async fn reset_checkpoint(
        &self,
        job: &BackfillJob,
        total_rows: u64,
    ) -> Result<(), GatewayError> {
        let op = "reset backfill checkpoint";
        let mut conn = self.acquire(op).await?;
        sqlx::query(&format!(
            "INSERT INTO {CHECKPOINT_TABLE}
                (job_key, source_table, target, tenant_id, project_id, last_chunk_id,
                 rows_copied, total_rows, completed, started_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, NULL, 0, $6, false, now(), now())
             ON CONFLICT (job_key) DO UPDATE SET
                last_chunk_id = NULL, rows_copied = 0, total_rows = EXCLUDED.total_rows,
                completed = false, started_at = now(), updated_at = now()"
        ))
        .bind(job.key())
        .bind(&job.source_table)
        .bind(&job.target)
        .bind(job.tenant_id.map(TenantId::get))
        .bind(job.project_id.map(ProjectId::get))
        .bind(to_i64(total_rows))
        .execute(&mut *conn)
        .await
        .map_err(self.err(op))?;
        Ok(())
    }

    /// Records that every row up to `last_chunk_id` is copied.
    pub async fn advance_checkpoint(
        &self,
        job: &BackfillJob,
        last_chunk_id: ChunkId,
        rows_copied: u64,
        total_rows: u64,
    ) -> Result<(), GatewayError> {
        let op = "advance backfill checkpoint";
        let mut conn = self.acquire(op).await?;
        sqlx::query(&format!(
            "UPDATE {CHECKPOINT_TABLE}
             SET last_chunk_id = $2, rows_copied = $3, total_rows = $4, updated_at = now()
             WHERE job_key = $1"
        ))
        .bind(job.key())
        .bind(last_chunk_id.get())
        .bind(to_i64(rows_copied))
        .bind(to_i64(total_rows))
        .execute(&mut *conn)
        .await
        .map_err(self.err(op))?;
        Ok(())
    }

    pub async fn complete_checkpoint(&self, job: &BackfillJob) -> Result<(), GatewayError> {
        let op = "complete backfill checkpoint";
        let mut conn = self.acquire(op).await?;
        sqlx::query(&format!(
            "UPDATE {CHECKPOINT_TABLE} SET completed = true, updated_at = now() WHERE job_key = $1"
        ))
        .bind(job.key())
        .execute(&mut *conn)
        .await
        .map_err(self.err(op))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_keys_name_table_target_and_filter() {
        let all = BackfillJob::new("chunks", "127.0.0.1:19530/kc", ScanFilter::all());
        assert_eq!(all.key(), "chunks -> 127.0.0.1:19530/kc tenant=* project=*");
        let filter = ScanFilter::new(
            Some(TenantId::new(3).unwrap()),
            Some(ProjectId::new(4).unwrap()),
        )
        .unwrap();
        let one = BackfillJob::new("chunks", "127.0.0.1:19530/kc", filter);
        assert_eq!(one.key(), "chunks -> 127.0.0.1:19530/kc tenant=3 project=4");
    }
}
