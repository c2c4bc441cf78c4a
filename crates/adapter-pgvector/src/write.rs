//! Upserts (batched, one statement per batch) and deletes (one statement, tenant-bounded).

use futures::{StreamExt, TryStreamExt};
use pgvector::Vector;
use sqlx::{Connection, PgConnection, Row};
use vectorgate_domain::{
    validate_records, ChunkId, DeleteRequest, GatewayError, ProjectFilter, StoreKind,
    TenantConflict, TenantId, VectorRecord,
};

use crate::layout::{self, TenantRace};
use crate::retry::retry_transient;
use crate::store::PgVectorStore;

impl PgVectorStore {
    pub(crate) async fn upsert(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        // The whole call is checked before the first batch is sent, so a bad record
        // anywhere writes nothing.
        validate_records(
            records,
            self.inner.config.dimension,
            self.inner.config.metric,
        )?;
        if records.is_empty() {
            return Ok(0);
        }
        // Ascending ids: concurrent upserts of overlapping ids then lock rows in the same
        // order and cannot deadlock each other.
        let mut ordered: Vec<&VectorRecord> = records.iter().collect();
        ordered.sort_unstable_by_key(|r| r.chunk_id);
        let batches: Vec<&[&VectorRecord]> = ordered.chunks(self.inner.config.batch_size).collect();
        // A call of several batches is checked as a whole first, so a conflict in a later
        // batch writes nothing either; each batch checks again in its own transaction,
        // which catches a move racing this check (batches committed before it then stay).
        if batches.len() > 1 {
            let conflicts = self.tenant_conflicts(records).await?;
            if !conflicts.is_empty() {
                return Err(GatewayError::TenantConflict { conflicts });
            }
        }
        let concurrency = self
            .inner
            .config
            .upsert_concurrency
            .min(batches.len())
            .max(1);
        // Batches hold disjoint ids (duplicates were refused above), so running them side
        // by side cannot make them wait on each other's rows. A failure leaves the batches
        // that already committed in place.
        // The futures are built up front (not in a stream closure), which keeps the
        // async_trait future Send without higher-ranked closure lifetimes.
        let pending: Vec<_> = batches
            .into_iter()
            .map(|batch| self.upsert_batch(batch))
            .collect();
        futures::stream::iter(pending)
            .buffer_unordered(concurrency)
            .try_fold(0, |total, written| async move { Ok(total + written) })
            .await
    }

    /// One batch: one statement (one round trip, one transaction), on a pooled connection,
    /// retried when PostgreSQL aborted it to break a deadlock.
    async fn upsert_batch(&self, batch: &[&VectorRecord]) -> Result<u64, GatewayError> {
        let op = "upsert";
        let mut chunk_ids = Vec::with_capacity(batch.len());
        let mut tenant_ids = Vec::with_capacity(batch.len());
        let mut project_ids = Vec::with_capacity(batch.len());
        let mut embeddings = Vec::with_capacity(batch.len());
        for record in batch {
            chunk_ids.push(record.chunk_id.get());
            tenant_ids.push(record.tenant_id.get());
            project_ids.push(record.project_id.get());
            embeddings.push(Vector::from(record.embedding.as_slice().to_vec()));
        }
        let (chunk_ids, tenant_ids, project_ids, embeddings) = (
            &chunk_ids[..],
            &tenant_ids[..],
            &project_ids[..],
            &embeddings[..],
        );
        let partitioned = self.partitioned(op).await?;
        let sql = &self.inner.sql;
        retry_transient(|| async move {
            let mut conn = self.acquire(op).await?;
            let statement = sqlx::query(if partitioned {
                &sql.upsert_partitioned
            } else {
                &sql.upsert
            })
            .bind(chunk_ids)
            .bind(tenant_ids)
            .bind(project_ids)
            .bind(embeddings);
            if self.inner.config.allow_tenant_move && !partitioned {
                let result = statement
                    .execute(&mut *conn)
                    .await
                    .map_err(self.map_table_error(op))?;
                return Ok(result.rows_affected());
            }
            let mut tx = conn.begin().await.map_err(self.err(op))?;
            if self.inner.config.allow_tenant_move {
                // A partitioned table moves a chunk by deleting it from its old tenant's
                // partition; the insert below then adds it to the new one. The registry
                // rows are claimed first, so concurrent movers of a chunk take turns.
                for step in [&sql.claim_chunks, &sql.move_out] {
                    sqlx::query(step)
                        .bind(chunk_ids)
                        .bind(tenant_ids)
                        .execute(&mut *tx)
                        .await
                        .map_err(self.map_table_error(op))?;
                }
            }
            let written = match statement.execute(&mut *tx).await {
                Ok(result) => result.rows_affected(),
                Err(e) if layout::is_registry_conflict(&e, &self.inner.config.table) => {
                    // The registry refused a chunk id another tenant holds: the batch is
                    // rolled back and the holders named. Found none, the holder went away
                    // meanwhile, or its row left without the triggers (TRUNCATE) and only
                    // its registry row stayed: that one is removed, and the batch run again.
                    tx.rollback().await.map_err(self.err(op))?;
                    let conflicts = if self.inner.config.allow_tenant_move {
                        Vec::new()
                    } else {
                        self.conflicts_on(&mut conn, chunk_ids, tenant_ids).await?
                    };
                    if conflicts.is_empty() {
                        sqlx::query(&sql.heal_registry)
                            .bind(chunk_ids)
                            .execute(&mut *conn)
                            .await
                            .map_err(self.map_table_error(op))?;
                        return Err(GatewayError::backend(StoreKind::Pgvector, op, TenantRace)
                            .with_source(TenantRace));
                    }
                    return Err(GatewayError::TenantConflict { conflicts });
                }
                Err(e) => return Err(self.map_table_error(op)(e)),
            };
            // One table: the statement skips rows stored under another tenant; finding
            // fewer rows written than sent, the batch is rolled back and the skipped ones
            // reported.
            if !self.inner.config.allow_tenant_move && written < chunk_ids.len() as u64 {
                let conflicts = self.conflicts_on(&mut tx, chunk_ids, tenant_ids).await?;
                if !conflicts.is_empty() {
                    tx.rollback().await.map_err(self.err(op))?;
                    return Err(GatewayError::TenantConflict { conflicts });
                }
            }
            tx.commit().await.map_err(self.err(op))?;
            Ok(written)
        })
        .await
    }

    /// The records whose chunk id is stored under another tenant (none when moves are
    /// allowed).
    pub(crate) async fn tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        if self.inner.config.allow_tenant_move || records.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = records.iter().map(|r| r.chunk_id.get()).collect();
        let tenants: Vec<i64> = records.iter().map(|r| r.tenant_id.get()).collect();
        let mut conn = self.acquire("upsert").await?;
        self.conflicts_on(&mut conn, &ids, &tenants).await
    }

    async fn conflicts_on(
        &self,
        conn: &mut PgConnection,
        chunk_ids: &[i64],
        tenant_ids: &[i64],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        let op = "upsert";
        let rows = sqlx::query(&self.inner.sql.tenant_conflicts)
            .bind(chunk_ids)
            .bind(tenant_ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.map_table_error(op))?;
        let decode =
            |e: sqlx::Error| GatewayError::backend(StoreKind::Pgvector, op, &e).with_source(e);
        let bad = |e: GatewayError| GatewayError::backend(StoreKind::Pgvector, op, e);
        rows.iter()
            .map(|row| {
                Ok(TenantConflict {
                    chunk_id: ChunkId::new(row.try_get(0).map_err(decode)?).map_err(bad)?,
                    owner: TenantId::new(row.try_get(1).map_err(decode)?).map_err(bad)?,
                    requested: TenantId::new(row.try_get(2).map_err(decode)?).map_err(bad)?,
                })
            })
            .collect()
    }

    pub(crate) async fn delete(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        request.validate()?;
        let op = "delete";
        if matches!(request, DeleteRequest::Chunks { chunk_ids, .. } if chunk_ids.is_empty()) {
            return Ok(0);
        }
        let partitioned = self.partitioned(op).await?;
        let result = retry_transient(|| async {
            let sql = &self.inner.sql;
            let query = match request {
                DeleteRequest::Chunks {
                    tenant_id,
                    projects,
                    chunk_ids,
                } => {
                    let ids: Vec<i64> = chunk_ids.iter().map(|c| c.get()).collect();
                    match projects {
                        ProjectFilter::All => sqlx::query(sql.delete_chunks.get(partitioned))
                            .bind(tenant_id.get())
                            .bind(ids),
                        ProjectFilter::Only(set) => {
                            sqlx::query(sql.delete_chunks_in_projects.get(partitioned))
                                .bind(tenant_id.get())
                                .bind(ids)
                                .bind(set.iter().map(|p| p.get()).collect::<Vec<i64>>())
                        }
                    }
                }
                DeleteRequest::Project {
                    tenant_id,
                    project_id,
                } => sqlx::query(sql.delete_project.get(partitioned))
                    .bind(tenant_id.get())
                    .bind(project_id.get()),
                DeleteRequest::Tenant { tenant_id } => {
                    sqlx::query(sql.delete_tenant.get(partitioned)).bind(tenant_id.get())
                }
            };
            let mut conn = self.acquire(op).await?;
            query
                .execute(&mut *conn)
                .await
                .map_err(self.map_table_error(op))
        })
        .await?;
        Ok(result.rows_affected())
    }
}
