//! The dual-mode outbox in PostgreSQL: the [`Outbox`] port on a table beside the
//! embeddings (one row per chunk id), sharing the store's pool and error mapping.
//!
//! Columns: `version` counts the writes recorded since the entry was created, `pending`
//! the writes whose Milvus call may still be in flight (held until `lease_until`),
//! `claimed` the version a relay claimed. The rules are in `docs/dual-mode.md`.

mod lead;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, Postgres, Row};
use vectorgate_domain::outbox::{Claim, Leadership, Outbox, OutboxStats, Settle, Wakeups};
use vectorgate_domain::{ChunkId, DeleteRequest, GatewayError, StoreKind};

use crate::config::validate_identifier;
use crate::retry::retry_transient;
use crate::schema::{self, quote_ident};
use crate::sql::ordered_delete;
use crate::store::PgVectorStore;

/// Half of each outbox page is left free, so that claiming, settling and re-recording an
/// entry (updates of unindexed columns) stay on its page as HOT updates, which write no
/// index entries: a claim of 2,000 entries writes a third of the WAL and takes half the time.
const OUTBOX_FILLFACTOR: u8 = 50;

fn ids(values: &[ChunkId]) -> Vec<i64> {
    let mut ids: Vec<i64> = values.iter().map(|c| c.get()).collect();
    // Ascending, without repeats: concurrent statements then lock rows in one order, and
    // ON CONFLICT never meets the same row twice in one statement.
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn chunk_ids(values: Vec<i64>, operation: &'static str) -> Result<Vec<ChunkId>, GatewayError> {
    values
        .into_iter()
        .map(|v| {
            ChunkId::new(v).map_err(|e| GatewayError::backend(StoreKind::Pgvector, operation, e))
        })
        .collect()
}

/// The outbox table (`DUAL_OUTBOX_TABLE`) of a pgvector store's database.
#[derive(Clone)]
pub struct PgOutbox {
    store: PgVectorStore,
    /// As configured: the name in messages, the catalog and the notification channel.
    name: String,
    /// Quoted for SQL.
    quoted: String,
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
            quoted: quote_ident(table),
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

    fn err(&self, operation: &'static str) -> impl Fn(sqlx::Error) -> GatewayError + '_ {
        self.store.err(operation)
    }

    /// Drops the table (tests clean up with it).
    pub async fn drop_table(&self) -> Result<(), GatewayError> {
        let op = "drop outbox table";
        sqlx::query(&format!("DROP TABLE IF EXISTS {}", self.quoted))
            .execute(&mut *self.conn(op).await?)
            .await
            .map_err(self.err(op))?;
        Ok(())
    }

    /// Locks the entries of `ids` in ascending order: the statements that follow touch them
    /// in an order of their own (deletes, then updates), which could otherwise deadlock
    /// with a concurrent `record` (which locks in ascending order).
    async fn lock_in_order(
        &self,
        conn: &mut PgConnection,
        ids: &[i64],
        op: &'static str,
    ) -> Result<(), GatewayError> {
        sqlx::query(&format!(
            "SELECT chunk_id FROM {} WHERE chunk_id = ANY($1) ORDER BY chunk_id FOR UPDATE",
            self.quoted
        ))
        .bind(ids)
        .execute(conn)
        .await
        .map_err(self.err(op))?;
        Ok(())
    }

    /// `INSERT` of `ids` as writes in flight (pending, leased), or one more write on the
    /// entries that exist; `$1` ids, `$2` lease in seconds.
    fn record_sql(&self, source: &str) -> String {
        let t = &self.quoted;
        format!(
            "INSERT INTO {t} AS o (chunk_id, pending, lease_until)
             SELECT id, 1, now() + make_interval(secs => $2::double precision) FROM {source}
             ON CONFLICT (chunk_id) DO UPDATE SET
                version = o.version + 1,
                pending = o.pending + 1,
                lease_until = greatest(o.lease_until, EXCLUDED.lease_until)"
        )
    }
}

#[async_trait]
impl Outbox for PgOutbox {
    async fn bootstrap(&self) -> Result<(), GatewayError> {
        let op = "create outbox table";
        let mut conn = self.conn(op).await?;
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace
             AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .bind(&self.name)
        .fetch_all(&mut *conn)
        .await
        .map_err(self.err(op))?;
        drop(conn);
        if columns.iter().any(|c| c == "op") {
            return Err(GatewayError::schema_mismatch(
                StoreKind::Pgvector,
                format!("table {}", self.name),
                "it has the layout of an older vectorgate (one row per write, column op) \
                 but one row per chunk id is expected; nothing was changed: drain it with \
                 that version's `vectorgate sync`, or drop it and run `vectorgate reconcile \
                 --repair`",
            ));
        }
        let t = &self.quoted;
        self.store
            .ensure_table(
                op,
                &format!(
                    "CREATE TABLE IF NOT EXISTS {t} (
                        chunk_id bigint PRIMARY KEY,
                        version bigint NOT NULL DEFAULT 1,
                        pending integer NOT NULL DEFAULT 0,
                        lease_until timestamptz NOT NULL DEFAULT now(),
                        claimed bigint,
                        failed boolean NOT NULL DEFAULT false,
                        attempts integer NOT NULL DEFAULT 0,
                        last_error text,
                        created_at timestamptz NOT NULL DEFAULT now()
                    ) WITH (fillfactor = {OUTBOX_FILLFACTOR})"
                ),
            )
            .await?;
        self.store
            .ensure_table(
                op,
                &format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} (created_at)",
                    quote_ident(&schema::index_name(&self.name, "created_idx"))
                ),
            )
            .await
    }

    async fn record(&self, chunks: &[ChunkId], lease: Duration) -> Result<(), GatewayError> {
        let op = "record outbox intent";
        if chunks.is_empty() {
            return Ok(());
        }
        let (ids, sql) = (ids(chunks), self.record_sql("unnest($1::bigint[]) AS id"));
        retry_transient(|| async {
            sqlx::query(&sql)
                .bind(&ids)
                .bind(lease.as_secs_f64())
                .execute(&mut *self.conn(op).await?)
                .await
                .map_err(self.err(op))
        })
        .await?;
        Ok(())
    }

    async fn delete_scope(
        &self,
        request: &DeleteRequest,
        lease: Duration,
    ) -> Result<Vec<ChunkId>, GatewayError> {
        let op = "delete";
        request.validate()?;
        let table = &self.store.config().table;
        let data = quote_ident(table);
        let registry = self
            .store
            .partitioned(op)
            .await?
            .then(|| quote_ident(&crate::layout::registry_name(table)));
        let (condition, project) = match request {
            DeleteRequest::Project { project_id, .. } => {
                ("tenant_id = $3 AND project_id = $4", Some(project_id.get()))
            }
            DeleteRequest::Tenant { .. } => ("tenant_id = $3", None),
            DeleteRequest::Chunks { .. } => return Err(GatewayError::misuse(
                "delete_scope takes a project or tenant delete; chunks are recorded with record()",
            )),
        };
        // One statement: the rows leave pgvector and their ids enter the outbox together.
        let deleted = "(SELECT chunk_id AS id FROM d ORDER BY chunk_id) AS gone";
        let sql = format!(
            "WITH d AS ({} RETURNING chunk_id),
             logged AS ({} RETURNING o.chunk_id)
             SELECT chunk_id FROM logged",
            ordered_delete(&data, condition, registry.as_deref()),
            self.record_sql(deleted)
        );
        let rows = retry_transient(|| async {
            let mut query = sqlx::query_scalar::<_, i64>(&sql)
                .bind(Vec::<i64>::new())
                .bind(lease.as_secs_f64())
                .bind(request.tenant_id().get());
            if let Some(project) = project {
                query = query.bind(project);
            }
            query
                .fetch_all(&mut *self.conn(op).await?)
                .await
                .map_err(self.store.map_table_error(op))
        })
        .await?;
        let mut deleted = chunk_ids(rows, op)?;
        deleted.sort();
        Ok(deleted)
    }

    async fn settle(&self, chunks: &[ChunkId], outcome: &Settle) -> Result<u64, GatewayError> {
        let op = "settle outbox intent";
        if chunks.is_empty() {
            return Ok(0);
        }
        let t = &self.quoted;
        // Every settle bumps `version`, so a relay that claimed the entry meanwhile (after
        // the lease ran out) keeps it and replays once more, after this write. An entry
        // that is gone (a relay replayed it while this write was slow) is recorded again.
        let sql = match outcome {
            Settle::Applied => format!(
                "WITH mine AS (SELECT unnest($1::bigint[]) AS id),
                 removed AS (
                    DELETE FROM {t} WHERE chunk_id = ANY($1) AND version = 1 AND pending = 1
                        AND claimed IS NULL AND NOT failed
                    RETURNING chunk_id),
                 kept AS (
                    UPDATE {t} SET pending = greatest(pending - 1, 0), version = version + 1
                    WHERE chunk_id = ANY($1) AND chunk_id NOT IN (SELECT chunk_id FROM removed)
                    RETURNING chunk_id),
                 again AS (
                    INSERT INTO {t} AS o (chunk_id) SELECT id FROM mine
                    WHERE id NOT IN (SELECT chunk_id FROM removed)
                      AND id NOT IN (SELECT chunk_id FROM kept)
                    ON CONFLICT (chunk_id) DO UPDATE SET version = o.version + 1
                    RETURNING chunk_id),
                 left_over AS (SELECT (SELECT count(*) FROM kept) + (SELECT count(*) FROM again) AS n)
                 SELECT n, (SELECT pg_notify($2, '') WHERE n > 0) IS NULL FROM left_over"
            ),
            Settle::Failed(_) => format!(
                "WITH mine AS (SELECT unnest($1::bigint[]) AS id),
                 kept AS (
                    UPDATE {t} SET pending = greatest(pending - 1, 0), version = version + 1,
                        failed = true, attempts = attempts + 1, last_error = $3
                    WHERE chunk_id = ANY($1)
                    RETURNING chunk_id),
                 again AS (
                    INSERT INTO {t} AS o (chunk_id, failed, attempts, last_error)
                    SELECT id, true, 1, $3 FROM mine WHERE id NOT IN (SELECT chunk_id FROM kept)
                    ON CONFLICT (chunk_id) DO UPDATE SET version = o.version + 1, failed = true,
                        attempts = o.attempts + 1, last_error = EXCLUDED.last_error
                    RETURNING chunk_id),
                 left_over AS (SELECT (SELECT count(*) FROM kept) + (SELECT count(*) FROM again) AS n)
                 SELECT n, (SELECT pg_notify($2, '') WHERE n > 0) IS NULL FROM left_over"
            ),
        };
        let ids = ids(chunks);
        let remaining: i64 = retry_transient(|| async {
            let mut conn = self.conn(op).await?;
            let mut tx = conn.begin().await.map_err(self.err(op))?;
            self.lock_in_order(&mut tx, &ids, op).await?;
            let mut query = sqlx::query(&sql).bind(&ids).bind(&self.name);
            if let Settle::Failed(error) = outcome {
                query = query.bind(error);
            }
            let row = query.fetch_one(&mut *tx).await.map_err(self.err(op))?;
            let remaining = row.try_get(0).map_err(self.err(op))?;
            tx.commit().await.map_err(self.err(op))?;
            Ok(remaining)
        })
        .await?;
        Ok(remaining.max(0) as u64)
    }

    async fn enqueue(&self, chunks: &[ChunkId]) -> Result<(), GatewayError> {
        let op = "enqueue outbox entries";
        if chunks.is_empty() {
            return Ok(());
        }
        let t = &self.quoted;
        // A write in flight on one of these ids then cannot remove the entry as its own.
        let (ids, sql) = (
            ids(chunks),
            format!(
                "INSERT INTO {t} AS o (chunk_id) SELECT unnest($1::bigint[])
                 ON CONFLICT (chunk_id) DO UPDATE SET version = o.version + 1"
            ),
        );
        retry_transient(|| async {
            sqlx::query(&sql)
                .bind(&ids)
                .execute(&mut *self.conn(op).await?)
                .await
                .map_err(self.err(op))
        })
        .await?;
        Ok(())
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Claim>, GatewayError> {
        let op = "claim outbox entries";
        let t = &self.quoted;
        // An entry whose lease ran out while writes were pending is taken over: its writers
        // are presumed gone, and a late one bumps the version when it settles. The picked
        // ids are updated through the primary key (`= ANY`): joined to the CTE instead, the
        // planner scanned the whole outbox on every claim, so a large backlog's catch-up
        // slowed with its size.
        let rows = sqlx::query(&format!(
            "WITH picked AS (
                SELECT chunk_id FROM {t}
                WHERE claimed IS NULL AND (pending = 0 OR lease_until < now())
                ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             UPDATE {t} o SET claimed = o.version, pending = 0
             WHERE o.chunk_id = ANY(ARRAY(SELECT chunk_id FROM picked))
             RETURNING o.chunk_id, o.version"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *self.conn(op).await?)
        .await
        .map_err(self.err(op))?;
        rows.iter()
            .map(|row| {
                Ok(Claim {
                    chunk_id: chunk_ids(vec![row.try_get(0).map_err(self.err(op))?], op)?[0],
                    version: row.try_get(1).map_err(self.err(op))?,
                })
            })
            .collect()
    }

    async fn complete(&self, claims: &[Claim]) -> Result<u64, GatewayError> {
        let op = "complete outbox entries";
        if claims.is_empty() {
            return Ok(0);
        }
        let t = &self.quoted;
        let (ids, versions): (Vec<i64>, Vec<i64>) =
            claims.iter().map(|c| (c.chunk_id.get(), c.version)).unzip();
        // `chunk_id = ANY($1)` lets the delete find its rows by primary key; joined to the
        // unnested claims alone, it hashed the whole outbox (52 ms instead of 7 at 100,000
        // entries).
        let sql = format!(
            "WITH c AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS c(id, version)),
             removed AS (
                DELETE FROM {t} o USING c
                WHERE o.chunk_id = ANY($1) AND o.chunk_id = c.id AND o.version = c.version
                    AND o.pending = 0
                RETURNING o.chunk_id),
             kept AS (
                UPDATE {t} SET claimed = NULL, failed = false, last_error = NULL
                WHERE chunk_id = ANY($1) AND chunk_id NOT IN (SELECT chunk_id FROM removed)
                RETURNING chunk_id)
             SELECT (SELECT count(*) FROM removed) + 0 * (SELECT count(*) FROM kept)"
        );
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        let removed: i64 = retry_transient(|| async {
            let mut conn = self.conn(op).await?;
            let mut tx = conn.begin().await.map_err(self.err(op))?;
            self.lock_in_order(&mut tx, &sorted, op).await?;
            let removed = sqlx::query_scalar(&sql)
                .bind(&ids)
                .bind(&versions)
                .fetch_one(&mut *tx)
                .await
                .map_err(self.err(op))?;
            tx.commit().await.map_err(self.err(op))?;
            Ok(removed)
        })
        .await?;
        Ok(removed.max(0) as u64)
    }

    async fn release(&self, claims: &[Claim], error: &str) -> Result<(), GatewayError> {
        let op = "release outbox entries";
        if claims.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = claims.iter().map(|c| c.chunk_id.get()).collect();
        let sql = format!(
            "UPDATE {} SET claimed = NULL, failed = true, attempts = attempts + 1, last_error = $2
             WHERE chunk_id = ANY($1)",
            self.quoted
        );
        retry_transient(|| async {
            sqlx::query(&sql)
                .bind(&ids)
                .bind(error)
                .execute(&mut *self.conn(op).await?)
                .await
                .map_err(self.err(op))
        })
        .await?;
        Ok(())
    }

    async fn reset_claims(&self) -> Result<(), GatewayError> {
        let op = "reset outbox claims";
        let sql = format!(
            "UPDATE {} SET claimed = NULL WHERE claimed IS NOT NULL",
            self.quoted
        );
        retry_transient(|| async {
            sqlx::query(&sql)
                .execute(&mut *self.conn(op).await?)
                .await
                .map_err(self.err(op))
        })
        .await?;
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats, GatewayError> {
        let op = "read outbox stats";
        let t = &self.quoted;
        let row = sqlx::query(&format!(
            "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8,
                    count(*) FILTER (WHERE failed),
                    (SELECT last_error FROM {t} WHERE last_error IS NOT NULL LIMIT 1)
             FROM {t}"
        ))
        .fetch_one(&mut *self.conn(op).await?)
        .await
        .map_err(self.store.map_table_error(op))?;
        let depth: i64 = row.try_get(0).map_err(self.err(op))?;
        let lag: Option<f64> = row.try_get(1).map_err(self.err(op))?;
        let failed: i64 = row.try_get(2).map_err(self.err(op))?;
        Ok(OutboxStats {
            depth: depth.max(0) as u64,
            lag: lag.map(|s| Duration::from_secs_f64(s.max(0.0))),
            failed: failed.max(0) as u64,
            last_error: row.try_get(3).map_err(self.err(op))?,
        })
    }

    async fn held(&self, chunks: &[ChunkId]) -> Result<Vec<ChunkId>, GatewayError> {
        let op = "read outbox entries";
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT chunk_id FROM {} WHERE chunk_id = ANY($1) ORDER BY chunk_id",
            self.quoted
        ))
        .bind(ids(chunks))
        .fetch_all(&mut *self.conn(op).await?)
        .await
        .map_err(self.err(op))?;
        chunk_ids(rows, op)
    }

    async fn try_lead(&self) -> Result<Option<Box<dyn Leadership>>, GatewayError> {
        self.lead().await
    }

    async fn subscribe(&self) -> Result<Box<dyn Wakeups>, GatewayError> {
        self.listen().await
    }
}
