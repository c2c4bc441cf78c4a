//! Filtered k-NN search: the plan (exact scan of a small scope, or the vector index with
//! an iterative scan) and its execution.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgvector::Vector;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, Postgres, Row};
use vectorgate_domain::{
    ChunkId, GatewayError, ProjectId, SearchHit, SearchRequest, SearchScope, StoreKind,
};

use crate::config::limits;
use crate::metric::distance_to_score;
use crate::store::PgVectorStore;

/// How long a scope's "small enough for exact search" verdict is reused. Scope sizes
/// change slowly; a stale verdict only picks the other (still correct) plan for a while,
/// and without the cache the bounded count would cost a large tenant several ms per query.
const SCOPE_SIZE_TTL: Duration = Duration::from_secs(30);

/// Verdicts kept at most; the cache is emptied when it grows past this.
const SCOPE_SIZE_CACHE_MAX: usize = 10_000;

/// A scope as a hashable key: tenant and, when restricted, its sorted project ids.
type ScopeKey = (i64, Option<Vec<i64>>);

fn scope_key(scope: &SearchScope) -> ScopeKey {
    (
        scope.tenant_id().get(),
        scope
            .project_ids()
            .map(|set| set.iter().map(|p| p.get()).collect()),
    )
}

/// Recent "is this scope small" verdicts.
#[derive(Debug, Default)]
pub(crate) struct ScopeSizes(Mutex<HashMap<ScopeKey, (bool, Instant)>>);

impl ScopeSizes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ScopeKey, (bool, Instant)>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key: &ScopeKey) -> Option<bool> {
        self.lock()
            .get(key)
            .filter(|(_, at)| at.elapsed() < SCOPE_SIZE_TTL)
            .map(|(small, _)| *small)
    }

    fn put(&self, key: ScopeKey, small: bool) {
        let mut cache = self.lock();
        if cache.len() >= SCOPE_SIZE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (small, Instant::now()));
    }
}

impl PgVectorStore {
    pub(crate) async fn search_scope(
        &self,
        request: &SearchRequest,
    ) -> Result<Vec<SearchHit>, GatewayError> {
        let config = &self.inner.config;
        request.validate(config.dimension, config.metric)?;
        let op = "search";
        let k = request.top_k.get();
        let embedding = Vector::from(request.embedding.as_slice().to_vec());
        let mut conn = self.acquire(op).await?;
        let exact = self.scope_is_small(&mut conn, &request.scope).await?;
        let sql = self.search_sql(exact, &request.scope);
        let query = bind_search(sql, embedding, &request.scope, k);
        let rows = self.run_planned(op, &mut conn, exact, k, query).await?;
        let decode =
            |e: sqlx::Error| GatewayError::backend(StoreKind::Pgvector, op, &e).with_source(e);
        let bad = |e: GatewayError| GatewayError::backend(StoreKind::Pgvector, op, e);
        let mut hits = Vec::with_capacity(rows.len());
        for row in &rows {
            let distance: f64 = row.try_get(2).map_err(decode)?;
            let score = distance_to_score(config.metric, distance);
            if request.min_score.is_some_and(|min| score < min) {
                continue;
            }
            hits.push(SearchHit {
                chunk_id: ChunkId::new(row.try_get(0).map_err(decode)?).map_err(bad)?,
                project_id: ProjectId::new(row.try_get(1).map_err(decode)?).map_err(bad)?,
                score,
            });
        }
        // The relaxed-order iterative scan may return rows slightly out of order.
        SearchHit::rank(&mut hits);
        Ok(hits)
    }

    /// Runs a search statement (or its EXPLAIN) as planned: on the connection when exact,
    /// else inside the transaction that sets the vector index's search parameters.
    pub(crate) async fn run_planned(
        &self,
        op: &'static str,
        conn: &mut PoolConnection<Postgres>,
        exact: bool,
        k: u32,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<Vec<PgRow>, GatewayError> {
        if exact {
            return query
                .fetch_all(&mut **conn)
                .await
                .map_err(self.map_table_error(op));
        }
        // SET LOCAL needs a transaction; its settings end with it, so a pooled connection
        // never carries them into another caller's query.
        let mut tx = conn
            .begin_with(self.search_begin(k))
            .await
            .map_err(self.err(op))?;
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .map_err(self.map_table_error(op))?;
        tx.commit().await.map_err(self.err(op))?;
        Ok(rows)
    }

    /// The statement searching `scope` exactly or through the vector index.
    pub(crate) fn search_sql(&self, exact: bool, scope: &SearchScope) -> &str {
        let sql = &self.inner.sql;
        match (exact, scope.project_ids().is_some()) {
            (true, false) => &sql.exact_tenant,
            (true, true) => &sql.exact_projects,
            (false, false) => &sql.search_tenant,
            (false, true) => &sql.search_projects,
        }
    }

    /// Whether the scope holds at most `exact_search_max_rows` rows (then it is searched
    /// exactly); the verdict is cached for a while.
    async fn scope_is_small(
        &self,
        conn: &mut PoolConnection<Postgres>,
        scope: &SearchScope,
    ) -> Result<bool, GatewayError> {
        if self.inner.config.exact_search_max_rows == 0 {
            return Ok(false);
        }
        let key = scope_key(scope);
        if let Some(small) = self.inner.scope_sizes.get(&key) {
            return Ok(small);
        }
        let (small, rows) = self.choose_exact(conn, scope).await?;
        tracing::debug!(scope_rows = rows, exact = small, "search plan choice");
        self.inner.scope_sizes.put(key, small);
        Ok(small)
    }

    /// Whether `scope` is searched exactly now, uncached, and its rows counted up to
    /// `exact_search_max_rows + 1` (0 when the setting is 0: every scope uses the index).
    pub(crate) async fn choose_exact(
        &self,
        conn: &mut PoolConnection<Postgres>,
        scope: &SearchScope,
    ) -> Result<(bool, u64), GatewayError> {
        let max = self.inner.config.exact_search_max_rows;
        if max == 0 {
            return Ok((false, 0));
        }
        let rows = self.count_scope_up_to_limit(conn, scope).await?;
        Ok((rows <= u64::from(max), rows))
    }

    /// The scope's rows, counted up to `exact_search_max_rows + 1` (a huge tenant costs
    /// no more than a small one).
    async fn count_scope_up_to_limit(
        &self,
        conn: &mut PoolConnection<Postgres>,
        scope: &SearchScope,
    ) -> Result<u64, GatewayError> {
        let sql = &self.inner.sql;
        let limit = i64::from(self.inner.config.exact_search_max_rows) + 1;
        let tenant = scope.tenant_id().get();
        let query = match scope.project_ids() {
            None => sqlx::query_scalar::<_, i64>(&sql.scope_rows_tenant)
                .bind(tenant)
                .bind(limit),
            Some(projects) => sqlx::query_scalar(&sql.scope_rows_projects)
                .bind(tenant)
                .bind(projects.iter().map(|p| p.get()).collect::<Vec<i64>>())
                .bind(limit),
        };
        let rows = query
            .fetch_one(&mut **conn)
            .await
            .map_err(self.map_table_error("search"))?;
        Ok(rows.max(0) as u64)
    }

    /// The `BEGIN` of a vector-index search transaction with its per-query settings.
    pub(crate) fn search_begin(&self, k: u32) -> String {
        let config = &self.inner.config;
        // SET cannot take bind parameters; every value here is a u32 from the validated
        // settings or the request's TopK, never caller text. ef_search is raised to k
        // (HNSW returns at most ef_search rows per pass) within pgvector's limit; past it,
        // the iterative scan keeps going until k rows pass the filter.
        let ef_search = config.ef_search.max(k).min(*limits::EF_SEARCH.end());
        let probes = config.ivfflat_probes.min(config.ivfflat_lists);
        // relaxed_order: results may come slightly out of order, so the caller re-sorts
        // them by score; strict_order would cost extra work per query.
        // The three `enable_*` settings force the vector index: on a selective filter
        // the planner otherwise reads the scope through the (tenant_id, project_id)
        // b-tree and sorts it, an exact scan that grows with the scope (every plan but
        // the ordered vector-index scan needs a disabled Sort, Bitmap or Seq Scan node).
        format!(
            "BEGIN; \
             SET LOCAL hnsw.ef_search = {ef_search}; \
             SET LOCAL hnsw.iterative_scan = relaxed_order; \
             SET LOCAL hnsw.max_scan_tuples = {max_scan}; \
             SET LOCAL ivfflat.probes = {probes}; \
             SET LOCAL ivfflat.iterative_scan = relaxed_order; \
             SET LOCAL enable_sort = off; \
             SET LOCAL enable_bitmapscan = off; \
             SET LOCAL enable_seqscan = off",
            max_scan = config.max_scan_tuples,
        )
    }
}

/// `sql` with the search's values bound: the query vector, the tenant, the projects when
/// the scope names some, and k.
pub(crate) fn bind_search<'q>(
    sql: &'q str,
    embedding: Vector,
    scope: &SearchScope,
    k: u32,
) -> Query<'q, Postgres, PgArguments> {
    let query = sqlx::query(sql)
        .bind(embedding)
        .bind(scope.tenant_id().get());
    match scope.project_ids() {
        None => query.bind(i64::from(k)),
        Some(projects) => query
            .bind(projects.iter().map(|p| p.get()).collect::<Vec<i64>>())
            .bind(i64::from(k)),
    }
}
