//! The backfill checkpoint: the last chunk id known to be in Milvus, per backfill job
//! (source table, target collection and filter), stored in PostgreSQL next to the source
//! rows so that it survives the process.
//!
//! It is written only after the batch it names was acknowledged by Milvus: a kill at any
//! point leaves a checkpoint at or behind what Milvus holds, and since upserts are
//! idempotent a resumed run that re-sends a batch does no harm.

use anyhow::Context as _;
use serde::Serialize;
use sqlx::{PgPool, Row};
use vectorgate_domain::{ChunkId, ProjectId, ScanFilter, TenantId};

const TABLE: &str = "vectorgate_backfill_checkpoint";

/// Identifies one backfill job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobKey {
    pub source_table: String,
    pub target: String,
    pub tenant_id: Option<TenantId>,
    pub project_id: Option<ProjectId>,
}

impl JobKey {
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

/// What the table holds for a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub last_chunk_id: Option<ChunkId>,
    pub rows_copied: u64,
    pub total_rows: u64,
    pub completed: bool,
}

#[derive(Debug, Clone)]
pub struct CheckpointStore {
    pool: PgPool,
}

impl CheckpointStore {
    /// Creates the table when missing. Concurrent first runs serialise on an advisory lock
    /// (two `CREATE TABLE IF NOT EXISTS` racing can still collide on the type name).
    pub async fn open(pool: PgPool) -> anyhow::Result<Self> {
        let mut tx = pool
            .begin()
            .await
            .context("backfill checkpoint: cannot open a PostgreSQL transaction")?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(TABLE)
            .execute(&mut *tx)
            .await
            .context("backfill checkpoint: advisory lock")?;
        sqlx::query(
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
        .execute(&mut *tx)
        .await
        .context("backfill checkpoint: cannot create table vectorgate_backfill_checkpoint")?;
        tx.commit()
            .await
            .context("backfill checkpoint: commit of the table creation")?;
        Ok(Self { pool })
    }

    pub async fn load(&self, job: &JobKey) -> anyhow::Result<Option<Checkpoint>> {
        let row = sqlx::query(
            "SELECT last_chunk_id, rows_copied, total_rows, completed
             FROM vectorgate_backfill_checkpoint WHERE job_key = $1",
        )
        .bind(job.key())
        .fetch_optional(&self.pool)
        .await
        .context("backfill checkpoint: read")?;
        row.map(|row| -> anyhow::Result<Checkpoint> {
            let last: Option<i64> = row.try_get("last_chunk_id")?;
            Ok(Checkpoint {
                last_chunk_id: last.map(ChunkId::new).transpose()?,
                rows_copied: u64::try_from(row.try_get::<i64, _>("rows_copied")?)?,
                total_rows: u64::try_from(row.try_get::<i64, _>("total_rows")?)?,
                completed: row.try_get("completed")?,
            })
        })
        .transpose()
        .context("backfill checkpoint: unreadable row")
    }

    /// Starts the job over: the checkpoint says nothing is copied yet.
    pub async fn reset(&self, job: &JobKey, total_rows: u64) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO vectorgate_backfill_checkpoint
                (job_key, source_table, target, tenant_id, project_id, last_chunk_id,
                 rows_copied, total_rows, completed, started_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, NULL, 0, $6, false, now(), now())
             ON CONFLICT (job_key) DO UPDATE SET
                last_chunk_id = NULL, rows_copied = 0, total_rows = EXCLUDED.total_rows,
                completed = false, started_at = now(), updated_at = now()",
        )
        .bind(job.key())
        .bind(&job.source_table)
        .bind(&job.target)
        .bind(job.tenant_id.map(TenantId::get))
        .bind(job.project_id.map(ProjectId::get))
        .bind(to_i64(total_rows))
        .execute(&self.pool)
        .await
        .context("backfill checkpoint: reset")?;
        Ok(())
    }

    /// Records that every row up to `last_chunk_id` is in Milvus.
    pub async fn advance(
        &self,
        job: &JobKey,
        last_chunk_id: ChunkId,
        rows_copied: u64,
        total_rows: u64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE vectorgate_backfill_checkpoint
             SET last_chunk_id = $2, rows_copied = $3, total_rows = $4, updated_at = now()
             WHERE job_key = $1",
        )
        .bind(job.key())
        .bind(last_chunk_id.get())
        .bind(to_i64(rows_copied))
        .bind(to_i64(total_rows))
        .execute(&self.pool)
        .await
        .context("backfill checkpoint: commit of a batch")?;
        Ok(())
    }

    pub async fn complete(&self, job: &JobKey) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE vectorgate_backfill_checkpoint SET completed = true, updated_at = now()
             WHERE job_key = $1",
        )
        .bind(job.key())
        .execute(&self.pool)
        .await
        .context("backfill checkpoint: mark completed")?;
        Ok(())
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_keys_name_table_target_and_filter() {
        let all = JobKey::new("chunks", "127.0.0.1:19530/kc", ScanFilter::all());
        assert_eq!(all.key(), "chunks -> 127.0.0.1:19530/kc tenant=* project=*");
        let filter = ScanFilter::new(
            Some(TenantId::new(3).unwrap()),
            Some(ProjectId::new(4).unwrap()),
        )
        .unwrap();
        let one = JobKey::new("chunks", "127.0.0.1:19530/kc", filter);
        assert_eq!(one.key(), "chunks -> 127.0.0.1:19530/kc tenant=3 project=4");
    }
}
