//! The dual-mode outbox in PostgreSQL: the [`Outbox`] port on a table beside the
//! embeddings, sharing the store's pool and its error mapping.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Row};
use vectorgate_domain::outbox::{Completion, Intent, IntentId, Outbox, OutboxEntry};
use vectorgate_domain::{ChunkId, GatewayError, ProjectId, TenantId};

use crate::config::validate_identifier;
use crate::schema::quote_ident;
use crate::store::PgVectorStore;

fn to_i64s<T: Copy + Into<i64>>(values: &[T]) -> Vec<i64> {
    values.iter().map(|v| (*v).into()).collect()
}

/// The outbox table (`DUAL_OUTBOX_TABLE`) of a pgvector store's database.
#[derive(Clone)]
pub struct PgOutbox {
    store: PgVectorStore,
    /// Validated, quoted.
    table: String,
    /// As configured, for messages and catalog lookups.
    name: String,
}

impl fmt::Debug for PgOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOutbox")
            .field("table", &self.name)
            .finish_non_exhaustive()
    }
}

impl PgVectorStore {
    /// The outbox table `table` (a lowercase identifier, checked) in this store's database.
    pub fn outbox(&self, table: &str) -> Result<PgOutbox, GatewayError> {
        validate_identifier("DUAL_OUTBOX_TABLE", table)?;
        Ok(PgOutbox {
            store: self.clone(),
            table: quote_ident(table),
            name: table.to_string(),
        })
    }
}

impl PgOutbox {
    pub fn table(&self) -> &str {
        &self.name
    }

    async fn conn(
        &self,
        operation: &'static str,
    ) -> Result<PoolConnection<Postgres>, GatewayError> {
        self.store.acquire(operation).await
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
        self.store.ensure_table("create outbox table", &ddl).await?;
        let idx = format!(
            "CREATE INDEX IF NOT EXISTS {} ON {t} (id) WHERE done_seq IS NULL",
            quote_ident(&format!("{}_pending", self.name))
        );
        self.store.ensure_table("create outbox index", &idx).await
    }

    /// Drops the table (tests clean up with it).
    pub async fn drop_table(&self) -> Result<(), GatewayError> {
        let op = "drop outbox table";
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", self.table))
            .execute(&mut *self.conn(op).await?)
            .await
            .map_err(self.store.err(op))?;
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
        let op = "record outbox intent";
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
            .fetch_one(&mut *self.conn(op).await?)
            .await
            .map_err(self.store.err(op))?;
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
            .fetch_one(&mut *self.conn("complete outbox intent").await?)
            .await
            .map_err(self.store.err("complete outbox intent"))?;
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
            .execute(&mut *self.conn("record outbox failure").await?)
            .await
            .map_err(self.store.err("record outbox failure"))?;
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
            .fetch_all(&mut *self.conn("claim outbox entries").await?)
            .await
            .map_err(self.store.err("claim outbox entries"))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let ids = |col: &str| -> Result<Vec<i64>, GatewayError> {
                row.try_get::<Vec<i64>, _>(col)
                    .map_err(self.store.err("read outbox entry"))
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
            .execute(&mut *self.conn("mark outbox entries done").await?)
            .await
            .map_err(self.store.err("mark outbox entries done"))?;
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
            .execute(&mut *self.conn("release outbox entries").await?)
            .await
            .map_err(self.store.err("release outbox entries"))?;
        Ok(())
    }

    async fn depth(&self) -> Result<u64, GatewayError> {
        let sql = format!("SELECT count(*) FROM {} WHERE done_seq IS NULL", self.table);
        let n: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&mut *self.conn("count outbox entries").await?)
            .await
            .map_err(self.store.err("count outbox entries"))?;
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
            .execute(&mut *self.conn("purge outbox").await?)
            .await
            .map_err(self.store.err("purge outbox"))?;
        Ok(done.rows_affected())
    }
}
