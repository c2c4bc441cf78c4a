//! Operator reads beyond the port: paging by chunk id (backfill, reconcile), fetching by
//! id (replay) and counting.

use pgvector::Vector;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};
use vectorgate_domain::{
    ChunkId, Embedding, GatewayError, ProjectId, ScanFilter, StoreKind, TenantId, VectorRecord,
};

use crate::schema::quote_ident;
use crate::store::PgVectorStore;

impl PgVectorStore {
    /// Rows matching `filter` with `chunk_id > after`, ordered by chunk id, at most
    /// `limit` (paging for backfill and reconciliation).
    pub async fn scan(
        &self,
        filter: ScanFilter,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<VectorRecord>, GatewayError> {
        let op = "scan";
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut query = self.select("SELECT chunk_id, tenant_id, project_id, embedding FROM ");
        // Only the conditions present are written, so that the primary key index serves
        // the `chunk_id > $n ORDER BY chunk_id` range in every case.
        push_filter(&mut query, filter, after);
        query
            .push(" ORDER BY chunk_id LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.records(query, op).await
    }

    /// The stored records among `ids` (any tenant), ordered by chunk id.
    pub async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        let op = "fetch";
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ids.iter().map(|c| c.get()).collect();
        let mut conn = self.acquire(op).await?;
        let rows = sqlx::query(&self.inner.sql.fetch)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.map_table_error(op))?;
        rows.iter().map(|r| decode_record(r, op)).collect()
    }

    /// Up to `n` stored records picked at random, any tenant (`vectorgate recall` uses
    /// them as queries: a store's recall is best judged on vectors like the ones it holds).
    pub async fn sample(&self, n: usize) -> Result<Vec<VectorRecord>, GatewayError> {
        let op = "sample";
        let mut query = self.select("SELECT chunk_id, tenant_id, project_id, embedding FROM ");
        query
            .push(" ORDER BY random() LIMIT ")
            .push_bind(i64::try_from(n).unwrap_or(i64::MAX));
        self.records(query, op).await
    }

    /// Runs a `SELECT chunk_id, tenant_id, project_id, embedding` and decodes its rows.
    async fn records(
        &self,
        mut query: QueryBuilder<'static, Postgres>,
        op: &'static str,
    ) -> Result<Vec<VectorRecord>, GatewayError> {
        let mut conn = self.acquire(op).await?;
        let rows = query
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(self.map_table_error(op))?;
        rows.iter().map(|r| decode_record(r, op)).collect()
    }

    /// Exact number of rows matching `filter`.
    pub async fn count(&self, filter: ScanFilter) -> Result<u64, GatewayError> {
        let op = "count";
        let mut query = self.select("SELECT count(*) FROM ");
        push_filter(&mut query, filter, None);
        let mut conn = self.acquire(op).await?;
        let n: i64 = query
            .build_query_scalar()
            .fetch_one(&mut *conn)
            .await
            .map_err(self.map_table_error(op))?;
        Ok(n.max(0) as u64)
    }

    fn select(&self, head: &str) -> QueryBuilder<'static, Postgres> {
        let mut query = QueryBuilder::new(head);
        query.push(quote_ident(&self.inner.config.table));
        query
    }
}

/// ` WHERE tenant_id = $1 AND project_id = $2 AND chunk_id > $3`, each part only when given.
fn push_filter(
    query: &mut QueryBuilder<'static, Postgres>,
    filter: ScanFilter,
    after: Option<ChunkId>,
) {
    let mut first = true;
    let mut and = |query: &mut QueryBuilder<'static, Postgres>, condition: &str| {
        query.push(if first { " WHERE " } else { " AND " });
        query.push(condition);
        first = false;
    };
    if let Some(tenant) = filter.tenant_id {
        and(query, "tenant_id = ");
        query.push_bind(tenant.get());
    }
    if let Some(project) = filter.project_id {
        and(query, "project_id = ");
        query.push_bind(project.get());
    }
    if let Some(after) = after {
        and(query, "chunk_id > ");
        query.push_bind(after.get());
    }
}

pub(crate) fn decode_record(
    row: &PgRow,
    operation: &'static str,
) -> Result<VectorRecord, GatewayError> {
    let bad = |e: GatewayError| GatewayError::backend(StoreKind::Pgvector, operation, e);
    let decode =
        |e: sqlx::Error| GatewayError::backend(StoreKind::Pgvector, operation, &e).with_source(e);
    let embedding: Vector = row.try_get(3).map_err(decode)?;
    Ok(VectorRecord::new(
        ChunkId::new(row.try_get(0).map_err(decode)?).map_err(bad)?,
        TenantId::new(row.try_get(1).map_err(decode)?).map_err(bad)?,
        ProjectId::new(row.try_get(2).map_err(decode)?).map_err(bad)?,
        Embedding::new(embedding.to_vec()).map_err(bad)?,
    ))
}
