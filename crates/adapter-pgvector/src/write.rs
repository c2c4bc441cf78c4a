//! Upserts (batched, one statement per batch) and deletes (one statement, tenant-bounded).

use futures::{StreamExt, TryStreamExt};
use pgvector::Vector;
use vectorgate_domain::{
    validate_records, DeleteRequest, GatewayError, ProjectFilter, VectorRecord,
};

use crate::retry::retry_transient;
use crate::store::PgVectorStore;

impl PgVectorStore {
    pub(crate) async fn upsert(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        // The whole call is checked before the first batch is sent, so a bad record
        // anywhere writes nothing.
        validate_records(records, self.inner.config.dimension)?;
        if records.is_empty() {
            return Ok(0);
        }
        // Ascending ids: concurrent upserts of overlapping ids then lock rows in the same
        // order and cannot deadlock each other.
        let mut ordered: Vec<&VectorRecord> = records.iter().collect();
        ordered.sort_unstable_by_key(|r| r.chunk_id);
        let batches: Vec<&[&VectorRecord]> = ordered.chunks(self.inner.config.batch_size).collect();
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
        retry_transient(|| async move {
            let mut conn = self.acquire(op).await?;
            let result = sqlx::query(&self.inner.sql.upsert)
                .bind(chunk_ids)
                .bind(tenant_ids)
                .bind(project_ids)
                .bind(embeddings)
                .execute(&mut *conn)
                .await
                .map_err(self.map_table_error(op))?;
            Ok(result.rows_affected())
        })
        .await
    }

    pub(crate) async fn delete(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        request.validate()?;
        let op = "delete";
        if matches!(request, DeleteRequest::Chunks { chunk_ids, .. } if chunk_ids.is_empty()) {
            return Ok(0);
        }
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
                        ProjectFilter::All => sqlx::query(&sql.delete_chunks)
                            .bind(tenant_id.get())
                            .bind(ids),
                        ProjectFilter::Only(set) => sqlx::query(&sql.delete_chunks_in_projects)
                            .bind(tenant_id.get())
                            .bind(ids)
                            .bind(set.iter().map(|p| p.get()).collect::<Vec<i64>>()),
                    }
                }
                DeleteRequest::Project {
                    tenant_id,
                    project_id,
                } => sqlx::query(&sql.delete_project)
                    .bind(tenant_id.get())
                    .bind(project_id.get()),
                DeleteRequest::Tenant { tenant_id } => {
                    sqlx::query(&sql.delete_tenant).bind(tenant_id.get())
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
