use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use pgvector::Vector;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};
use vectorgate_domain::{
    validate_records, ChunkId, CollectionStatus, DeleteRequest, Dimension, Embedding, GatewayError,
    HealthStatus, ProjectFilter, ProjectId, ScanFilter, SearchHit, SearchRequest, SearchScope,
    StoreHealth, StoreKind, TenantId, VectorRecord, VectorStoreGateway,
};

use crate::config::{distance_to_score, operator, redact_url, PgIndex, PgVectorConfig};
use crate::copy;
use crate::error::{connect_timed_out, map_sqlx, Endpoint};
use crate::schema;

/// pgvector's upper limit for `hnsw.ef_search`.
const MAX_EF_SEARCH: u32 = 1000;

/// Size of one CopyData message in `bulk_load`: large enough to amortise the per-message
/// cost, small enough to keep memory flat whatever the number of rows.
const COPY_CHUNK_BYTES: usize = 4 << 20;

/// What `bulk_load_timed` did and how long each part took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BulkLoadReport {
    pub rows: u64,
    /// Streaming the rows with COPY (including dropping the vector index first when it is
    /// rebuilt afterwards).
    pub load: Duration,
    /// Building the vector index after the load, when asked for.
    pub index_build: Option<Duration>,
}

/// The pgvector store: the authoritative copy of every embedding. Cheap to clone (the
/// pool and settings are shared).
#[derive(Clone)]
pub struct PgVectorStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: PgVectorConfig,
    pool: PgPool,
    endpoint: Endpoint,
    sql: Statements,
    scope_sizes: Mutex<HashMap<ScopeKey, (bool, Instant)>>,
}

/// How long a scope's "small enough for exact search" verdict is reused. Scope sizes
/// change slowly; a stale verdict only picks the other (still correct) plan for a while,
/// and without the cache the bounded count would cost a large tenant several ms per query.
const SCOPE_SIZE_TTL: Duration = Duration::from_secs(30);

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

/// Verdicts kept at most; the cache is emptied when it grows past this.
const SCOPE_SIZE_CACHE_MAX: usize = 10_000;

/// SQL text fixed at construction: the table name is validated once and then only
/// values are bound.
struct Statements {
    upsert: String,
    search_tenant: String,
    search_projects: String,
    exact_tenant: String,
    exact_projects: String,
    scope_rows_tenant: String,
    scope_rows_projects: String,
    delete_chunks: String,
    delete_chunks_in_projects: String,
    delete_project: String,
    delete_tenant: String,
    fetch: String,
    copy_in: String,
}

impl Statements {
    fn new(config: &PgVectorConfig) -> Self {
        let t = &config.table;
        let op = operator(config.metric);
        let select = format!(
            "SELECT chunk_id, project_id, embedding {op} $1 AS distance FROM {t} WHERE tenant_id = $2"
        );
        Self {
            upsert: format!(
                "INSERT INTO {t} (chunk_id, tenant_id, project_id, embedding, updated_at) \
                 SELECT u.chunk_id, u.tenant_id, u.project_id, u.embedding, now() \
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::vector[]) \
                   AS u(chunk_id, tenant_id, project_id, embedding) \
                 ON CONFLICT (chunk_id) DO UPDATE SET \
                   tenant_id = EXCLUDED.tenant_id, project_id = EXCLUDED.project_id, \
                   embedding = EXCLUDED.embedding, updated_at = EXCLUDED.updated_at"
            ),
            search_tenant: format!("{select} ORDER BY embedding {op} $1 LIMIT $3"),
            search_projects: format!(
                "{select} AND project_id = ANY($3) ORDER BY embedding {op} $1 LIMIT $4"
            ),
            // The OFFSET 0 fence keeps the planner from pushing the ORDER BY into the
            // subquery, so the vector index cannot serve it: the scope is read (through
            // the tenant/project index or the table), each distance computed once, and
            // the best k kept by a top-k sort. Exact, without a transaction to switch
            // index scans off.
            exact_tenant: format!(
                "SELECT chunk_id, project_id, distance FROM ({select} OFFSET 0) s \
                 ORDER BY distance LIMIT $3"
            ),
            exact_projects: format!(
                "SELECT chunk_id, project_id, distance FROM \
                 ({select} AND project_id = ANY($3) OFFSET 0) s ORDER BY distance LIMIT $4"
            ),
            // Bounded counts: they stop after LIMIT rows of the scope index, so a huge
            // tenant costs no more than a small one.
            scope_rows_tenant: format!(
                "SELECT count(*) FROM (SELECT 1 FROM {t} WHERE tenant_id = $1 LIMIT $2) s"
            ),
            scope_rows_projects: format!(
                "SELECT count(*) FROM (SELECT 1 FROM {t} \
                 WHERE tenant_id = $1 AND project_id = ANY($2) LIMIT $3) s"
            ),
            delete_chunks: format!(
                "DELETE FROM {t} WHERE tenant_id = $1 AND chunk_id = ANY($2)"
            ),
            delete_chunks_in_projects: format!(
                "DELETE FROM {t} WHERE tenant_id = $1 AND chunk_id = ANY($2) AND project_id = ANY($3)"
            ),
            delete_project: format!("DELETE FROM {t} WHERE tenant_id = $1 AND project_id = $2"),
            delete_tenant: format!("DELETE FROM {t} WHERE tenant_id = $1"),
            fetch: format!(
                "SELECT chunk_id, tenant_id, project_id, embedding FROM {t} \
                 WHERE chunk_id = ANY($1) ORDER BY chunk_id"
            ),
            copy_in: format!(
                "COPY {t} (chunk_id, tenant_id, project_id, embedding) FROM STDIN WITH (FORMAT binary)"
            ),
        }
    }
}

impl fmt::Debug for PgVectorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgVectorStore")
            .field("config", &self.inner.config)
            .field("endpoint", &self.inner.endpoint.0)
            .finish_non_exhaustive()
    }
}

impl PgVectorStore {
    /// Validates the settings and builds a lazy pool: no connection is opened until the
    /// first call. Must run inside a Tokio runtime (sqlx starts its pool housekeeping).
    pub fn new(config: PgVectorConfig) -> Result<Self, GatewayError> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(GatewayError::configuration(
                "runtime",
                "none",
                "PgVectorStore::new called inside a Tokio runtime",
            ));
        }
        let options = PgConnectOptions::from_str(&config.database_url).map_err(|err| {
            GatewayError::configuration(
                "DATABASE_URL",
                redact_url(&config.database_url),
                format!("postgres://user[:password]@host:port/database ({err})"),
            )
        })?;
        let options = options.application_name("vectorgate");
        let endpoint = Endpoint(format!("{}:{}", options.get_host(), options.get_port()));
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options);
        let sql = Statements::new(&config);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                pool,
                endpoint,
                sql,
                scope_sizes: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The pool, shared with the composition layer's own tables in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn config(&self) -> &PgVectorConfig {
        &self.inner.config
    }

    fn err(&self, operation: &'static str) -> impl Fn(sqlx::Error) -> GatewayError + '_ {
        move |e| map_sqlx(&self.inner.endpoint, operation, e)
    }

    /// A pooled connection. An empty pool has to connect first, which is capped by
    /// `connect_timeout` so that a server that is down is reported promptly.
    async fn acquire(
        &self,
        operation: &'static str,
    ) -> Result<PoolConnection<Postgres>, GatewayError> {
        let pool = &self.inner.pool;
        let result = if pool.size() == 0 {
            tokio::time::timeout(self.inner.config.connect_timeout, pool.acquire())
                .await
                .map_err(|_| connect_timed_out(&self.inner.endpoint, operation))?
        } else {
            pool.acquire().await
        };
        result.map_err(self.err(operation))
    }

    /// Creates the extension, the table, its scope index and its vector index when they
    /// are missing. An existing table that does not fit the settings (dimension, metric
    /// of its vector index, missing or retyped column) is a `SchemaMismatch` naming both
    /// sides, and nothing is changed. Safe to run concurrently: bootstraps serialise on an
    /// advisory lock and every statement is `IF NOT EXISTS`.
    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.inner.config.table))]
    pub async fn bootstrap(&self) -> Result<(), GatewayError> {
        let config = &self.inner.config;
        let op = "bootstrap";
        let mut conn = self.acquire(op).await?;
        let mut tx = conn.begin().await.map_err(self.err(op))?;
        // One lock for every vectorgate bootstrap: CREATE EXTENSION and catalog updates of
        // concurrent DDL would otherwise race (unique violations in pg_extension/pg_type).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('vectorgate.pgvector.bootstrap'))")
            .execute(&mut *tx)
            .await
            .map_err(self.err(op))?;
        let installed: Option<String> =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err(op))?;
        if installed.is_none() {
            execute_ddl(&mut tx, "CREATE EXTENSION IF NOT EXISTS vector")
                .await
                .map_err(self.err(op))?;
        }
        let info = schema::inspect(&mut tx, &config.table)
            .await
            .map_err(self.err(op))?;
        if info.exists {
            let problems = schema::mismatches(&info, config);
            if !problems.is_empty() {
                // Dropping the transaction rolls back; nothing was written anyway.
                return Err(schema::mismatch_error(&config.table, &problems));
            }
            if let Some(existing) = info.vector_indexes.first() {
                if existing.access_method != config.index.access_method() {
                    tracing::warn!(
                        table = %config.table,
                        index = %existing.name,
                        found = %existing.access_method,
                        configured = config.index.access_method(),
                        "existing vector index has another type than configured; keeping it"
                    );
                }
            }
        } else {
            for ddl in schema::create_table_sql(config) {
                execute_ddl(&mut tx, &ddl).await.map_err(self.err(op))?;
            }
        }
        execute_ddl(&mut tx, &schema::create_scope_index_sql(&config.table))
            .await
            .map_err(self.err(op))?;
        if info.vector_indexes.is_empty() {
            execute_ddl(&mut tx, &schema::create_vector_index_sql(config))
                .await
                .map_err(self.err(op))?;
        }
        tx.commit().await.map_err(self.err(op))?;
        tracing::debug!(table = %config.table, created = !info.exists, "bootstrap done");
        Ok(())
    }

    /// Streams the records with `COPY ... FORMAT binary` in one transaction (all or
    /// nothing). With `build_index_after`, the table's vector index is dropped first and
    /// rebuilt after the load, which is far faster than maintaining it row by row; readers
    /// of the table wait until the transaction commits. A chunk id that already exists
    /// fails the whole load (COPY does not upsert; use `upsert_vectors` for that).
    pub async fn bulk_load(
        &self,
        records: &[VectorRecord],
        build_index_after: bool,
    ) -> Result<u64, GatewayError> {
        Ok(self.bulk_load_timed(records, build_index_after).await?.rows)
    }

    /// `bulk_load`, also reporting how long the load and the index build took.
    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.inner.config.table, rows = records.len(), build_index_after))]
    pub async fn bulk_load_timed(
        &self,
        records: &[VectorRecord],
        build_index_after: bool,
    ) -> Result<BulkLoadReport, GatewayError> {
        let config = &self.inner.config;
        validate_records(records, config.dimension)?;
        if records.is_empty() {
            return Ok(BulkLoadReport {
                rows: 0,
                load: Duration::ZERO,
                index_build: None,
            });
        }
        let op = "bulk_load";
        let started = Instant::now();
        let mut conn = self.acquire(op).await?;
        let mut tx = conn.begin().await.map_err(self.err(op))?;
        let mut rebuild = Vec::new();
        if build_index_after {
            let info = schema::inspect(&mut tx, &config.table)
                .await
                .map_err(self.err(op))?;
            if !info.exists {
                return Err(self.missing_table());
            }
            for index in &info.vector_indexes {
                let drop = format!("DROP INDEX {}", schema::quote_ident(&index.name));
                execute_ddl(&mut tx, &drop).await.map_err(self.err(op))?;
                // The server's own definition rebuilds exactly what was there.
                rebuild.push(index.definition.clone());
            }
            if rebuild.is_empty() {
                rebuild.push(schema::create_vector_index_sql(config));
            }
        }
        let rows = {
            let mut copy_in = tx
                .copy_in_raw(&self.inner.sql.copy_in)
                .await
                .map_err(self.map_table_error(op))?;
            let mut buf = Vec::with_capacity(COPY_CHUNK_BYTES + 64 * 1024);
            copy::header(&mut buf);
            for record in records {
                copy::row(&mut buf, record);
                if buf.len() >= COPY_CHUNK_BYTES {
                    copy_in.send(buf.as_slice()).await.map_err(self.err(op))?;
                    buf.clear();
                }
            }
            copy::trailer(&mut buf);
            copy_in.send(buf.as_slice()).await.map_err(self.err(op))?;
            copy_in.finish().await.map_err(self.err(op))?
        };
        let load = started.elapsed();
        let mut index_build = None;
        if build_index_after {
            let build_started = Instant::now();
            // Only an integer from the validated settings goes into this SET: SET cannot
            // take bind parameters.
            let memory = format!(
                "SET LOCAL maintenance_work_mem = '{}MB'",
                config.index_build_memory_mb
            );
            execute_ddl(&mut tx, &memory).await.map_err(self.err(op))?;
            for definition in &rebuild {
                execute_ddl(&mut tx, definition)
                    .await
                    .map_err(self.err(op))?;
            }
            index_build = Some(build_started.elapsed());
        }
        tx.commit().await.map_err(self.err(op))?;
        tracing::debug!(rows, ?load, ?index_build, "bulk load done");
        Ok(BulkLoadReport {
            rows,
            load,
            index_build,
        })
    }

    /// Rows matching `filter` with `chunk_id > after`, ordered by chunk id, at most
    /// `limit` (paging for backfill and reconciliation).
    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.inner.config.table, limit))]
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
        // Only the conditions present are written, so that the PK index serves the
        // `chunk_id > $n ORDER BY chunk_id` range in every case.
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if filter.tenant_id.is_some() {
            conditions.push(format!("tenant_id = ${}", next()));
        }
        if filter.project_id.is_some() {
            conditions.push(format!("project_id = ${}", next()));
        }
        if after.is_some() {
            conditions.push(format!("chunk_id > ${}", next()));
        }
        let limit_param = next();
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT chunk_id, tenant_id, project_id, embedding FROM {} {where_clause} \
             ORDER BY chunk_id LIMIT ${limit_param}",
            self.inner.config.table
        );
        let mut query = sqlx::query(&sql);
        if let Some(t) = filter.tenant_id {
            query = query.bind(t.get());
        }
        if let Some(p) = filter.project_id {
            query = query.bind(p.get());
        }
        if let Some(a) = after {
            query = query.bind(a.get());
        }
        let query = query.bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let mut conn = self.acquire(op).await?;
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(self.map_table_error(op))?;
        rows.iter().map(|r| decode_record(r, op)).collect()
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

    /// Exact number of rows matching `filter`.
    pub async fn count(&self, filter: ScanFilter) -> Result<u64, GatewayError> {
        let op = "count";
        let t = &self.inner.config.table;
        let sql = match (filter.tenant_id, filter.project_id) {
            (None, _) => format!("SELECT count(*) FROM {t}"),
            (Some(_), None) => format!("SELECT count(*) FROM {t} WHERE tenant_id = $1"),
            (Some(_), Some(_)) => {
                format!("SELECT count(*) FROM {t} WHERE tenant_id = $1 AND project_id = $2")
            }
        };
        let mut query = sqlx::query_scalar::<_, i64>(&sql);
        if let Some(tn) = filter.tenant_id {
            query = query.bind(tn.get());
            if let Some(p) = filter.project_id {
                query = query.bind(p.get());
            }
        }
        let mut conn = self.acquire(op).await?;
        let n = query
            .fetch_one(&mut *conn)
            .await
            .map_err(self.map_table_error(op))?;
        Ok(n.max(0) as u64)
    }

    fn missing_table(&self) -> GatewayError {
        schema::mismatch_error(
            &self.inner.config.table,
            &["the table does not exist (run bootstrap first)".to_string()],
        )
    }

    /// Like `err`, but a missing table (SQLSTATE 42P01) becomes a schema error that says
    /// to bootstrap.
    fn map_table_error(
        &self,
        operation: &'static str,
    ) -> impl Fn(sqlx::Error) -> GatewayError + '_ {
        move |e| {
            if let sqlx::Error::Database(db) = &e {
                if db.code().as_deref() == Some("42P01") {
                    return self.missing_table();
                }
            }
            map_sqlx(&self.inner.endpoint, operation, e)
        }
    }

    async fn upsert_pooled(&self, batch: &[&VectorRecord]) -> Result<u64, GatewayError> {
        let mut conn = self.acquire("upsert").await?;
        self.upsert_batch(&mut conn, batch).await
    }

    async fn upsert_batch(
        &self,
        conn: &mut PoolConnection<Postgres>,
        batch: &[&VectorRecord],
    ) -> Result<u64, GatewayError> {
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
        // One statement = one round trip and, in autocommit, one transaction.
        let result = sqlx::query(&self.inner.sql.upsert)
            .bind(chunk_ids)
            .bind(tenant_ids)
            .bind(project_ids)
            .bind(embeddings)
            .execute(&mut **conn)
            .await
            .map_err(self.map_table_error(op))?;
        Ok(result.rows_affected())
    }

    async fn inspect_health(&self) -> Result<StoreHealth, GatewayError> {
        let op = "health";
        let config = &self.inner.config;
        let mut conn = self.acquire(op).await?;
        let (pg_version, ext_version): (String, Option<String>) = sqlx::query_as(
            "SELECT current_setting('server_version'), \
                    (SELECT extversion FROM pg_extension WHERE extname = 'vector')",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(self.err(op))?;
        let server_version = Some(match &ext_version {
            Some(v) => format!("PostgreSQL {pg_version}, pgvector {v}"),
            None => format!("PostgreSQL {pg_version}, pgvector not installed"),
        });
        let info = schema::inspect(&mut conn, &config.table)
            .await
            .map_err(self.err(op))?;
        let mut problems = Vec::new();
        if ext_version.is_none() {
            problems.push("the vector extension is not installed".to_string());
        }
        let mut collection = CollectionStatus {
            name: config.table.clone(),
            exists: info.exists,
            ..CollectionStatus::default()
        };
        if !info.exists {
            problems.push(format!(
                "table {} does not exist (run bootstrap)",
                config.table
            ));
        } else {
            problems.extend(schema::mismatches(&info, config));
            collection.dimension = info.dimension();
            collection.metric = info.metric();
            match info.vector_indexes.first() {
                Some(index) => {
                    collection.index_type = Some(index.access_method.clone());
                    let mut params: BTreeMap<String, String> =
                        index.options.iter().cloned().collect();
                    params.insert("opclass".into(), index.opclass.clone());
                    params.insert("index_name".into(), index.name.clone());
                    collection.index_params = params;
                }
                None => {
                    problems.push("no vector index: every search scans the whole table".to_string())
                }
            }
            let reltuples: f32 = sqlx::query_scalar(
                "SELECT reltuples FROM pg_class \
                 WHERE relname = $1 AND relnamespace = current_schema()::regnamespace",
            )
            .bind(&config.table)
            .fetch_one(&mut *conn)
            .await
            .map_err(self.err(op))?;
            if reltuples >= 0.0 {
                collection.row_count = Some(reltuples.round() as u64);
                collection.row_count_estimated = true;
            } else {
                // Never analysed: no estimate exists yet, so count (such a table is new
                // and small, or autovacuum would have analysed it).
                drop(conn);
                collection.row_count = Some(self.count(ScanFilter::all()).await?);
                collection.row_count_estimated = false;
            }
        }
        Ok(StoreHealth {
            store: StoreKind::Pgvector,
            reachable: true,
            server_version,
            collection: Some(collection),
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        })
    }

    /// Whether the scope holds at most `exact_search_max_rows` rows (then it is searched
    /// exactly).
    async fn scope_is_small(
        &self,
        conn: &mut PoolConnection<Postgres>,
        scope: &SearchScope,
    ) -> Result<bool, GatewayError> {
        let max = self.inner.config.exact_search_max_rows;
        if max == 0 {
            return Ok(false);
        }
        let key = scope_key(scope);
        if let Some(&(small, at)) = self.scope_sizes().get(&key) {
            if at.elapsed() < SCOPE_SIZE_TTL {
                return Ok(small);
            }
        }
        let sql = &self.inner.sql;
        let limit = i64::from(max) + 1;
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
        let small = rows < limit;
        tracing::debug!(scope_rows = rows, exact = small, "search plan choice");
        let mut cache = self.scope_sizes();
        if cache.len() >= SCOPE_SIZE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (small, Instant::now()));
        Ok(small)
    }

    fn scope_sizes(&self) -> std::sync::MutexGuard<'_, HashMap<ScopeKey, (bool, Instant)>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        self.inner
            .scope_sizes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `BEGIN` of a vector-index search transaction with its per-query settings.
    fn search_begin(&self, k: u32) -> String {
        let config = &self.inner.config;
        // SET cannot take bind parameters; every value here is a u32 from the validated
        // settings or the request's TopK, never caller text. ef_search is raised to k
        // (HNSW returns at most ef_search rows per pass) within pgvector's limit; past it,
        // the iterative scan keeps going until k rows pass the filter.
        let ef_search = config.ef_search.max(k).min(MAX_EF_SEARCH);
        let probes = match config.index {
            PgIndex::IvfFlat { lists } => config.ivfflat_probes.min(lists),
            PgIndex::Hnsw { .. } => config.ivfflat_probes,
        };
        // relaxed_order: results may come slightly out of order, so the caller re-sorts
        // them by score; strict_order would cost extra work per query.
        format!(
            "BEGIN; \
             SET LOCAL hnsw.ef_search = {ef_search}; \
             SET LOCAL hnsw.iterative_scan = relaxed_order; \
             SET LOCAL hnsw.max_scan_tuples = {max_scan}; \
             SET LOCAL ivfflat.probes = {probes}; \
             SET LOCAL ivfflat.iterative_scan = relaxed_order",
            max_scan = config.max_scan_tuples,
        )
    }
}

fn decode_record(row: &PgRow, operation: &'static str) -> Result<VectorRecord, GatewayError> {
    let bad = |e: GatewayError| GatewayError::backend(StoreKind::Pgvector, operation, e);
    let decode = |e: sqlx::Error| GatewayError::backend(StoreKind::Pgvector, operation, e);
    let embedding: Vector = row.try_get(3).map_err(decode)?;
    Ok(VectorRecord::new(
        ChunkId::new(row.try_get(0).map_err(decode)?).map_err(bad)?,
        TenantId::new(row.try_get(1).map_err(decode)?).map_err(bad)?,
        ProjectId::new(row.try_get(2).map_err(decode)?).map_err(bad)?,
        Embedding::new(embedding.to_vec()).map_err(bad)?,
    ))
}

#[async_trait]
impl VectorStoreGateway for PgVectorStore {
    fn store_kind(&self) -> StoreKind {
        StoreKind::Pgvector
    }

    fn dimension(&self) -> Dimension {
        self.inner.config.dimension
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.inner.config.table, rows = records.len()))]
    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
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
        let concurrency = self.inner.config.upsert_concurrency.min(batches.len());
        if concurrency <= 1 {
            let mut conn = self.acquire("upsert").await?;
            let mut written = 0;
            for batch in batches {
                written += self.upsert_batch(&mut conn, batch).await?;
            }
            return Ok(written);
        }
        // Batches hold disjoint ids (duplicates were refused above), so running them side
        // by side cannot make them wait on each other's rows. As with sequential batches,
        // a failure leaves the batches that already committed in place.
        // The futures are built up front (not in a stream closure), which keeps the
        // async_trait future Send without higher-ranked closure lifetimes.
        let pending: Vec<_> = batches
            .into_iter()
            .map(|batch| self.upsert_pooled(batch))
            .collect();
        futures::stream::iter(pending)
            .buffer_unordered(concurrency)
            .try_fold(0, |total, written| async move { Ok(total + written) })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.inner.config.table, tenant = %request.tenant_id()))]
    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        request.validate()?;
        let op = "delete";
        let sql = &self.inner.sql;
        let query = match request {
            DeleteRequest::Chunks { chunk_ids, .. } if chunk_ids.is_empty() => return Ok(0),
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
        let result = query
            .execute(&mut *conn)
            .await
            .map_err(self.map_table_error(op))?;
        Ok(result.rows_affected())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(table = %self.inner.config.table, tenant = %request.scope.tenant_id(), k = request.top_k.get()))]
    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError> {
        let config = &self.inner.config;
        request.validate(config.dimension)?;
        let op = "search";
        let k = request.top_k.get();
        let embedding = Vector::from(request.embedding.as_slice().to_vec());
        let tenant = request.scope.tenant_id().get();
        let mut conn = self.acquire(op).await?;
        let exact = self.scope_is_small(&mut conn, &request.scope).await?;
        let sql = &self.inner.sql;
        let (tenant_sql, projects_sql) = if exact {
            (&sql.exact_tenant, &sql.exact_projects)
        } else {
            (&sql.search_tenant, &sql.search_projects)
        };
        let query = match request.scope.project_ids() {
            None => sqlx::query(tenant_sql)
                .bind(embedding)
                .bind(tenant)
                .bind(i64::from(k)),
            Some(projects) => sqlx::query(projects_sql)
                .bind(embedding)
                .bind(tenant)
                .bind(projects.iter().map(|p| p.get()).collect::<Vec<i64>>())
                .bind(i64::from(k)),
        };
        let rows = if exact {
            query.fetch_all(&mut *conn).await
        } else {
            // SET LOCAL needs a transaction; its settings end with it, so a pooled
            // connection never carries them into another caller's query.
            let mut tx = conn
                .begin_with(self.search_begin(k))
                .await
                .map_err(self.err(op))?;
            let rows = query.fetch_all(&mut *tx).await;
            if rows.is_ok() {
                tx.commit().await.map_err(self.err(op))?;
            }
            rows
        }
        .map_err(self.map_table_error(op))?;
        let mut hits = Vec::with_capacity(rows.len());
        for row in &rows {
            let decode = |e: sqlx::Error| GatewayError::backend(StoreKind::Pgvector, op, e);
            let bad = |e: GatewayError| GatewayError::backend(StoreKind::Pgvector, op, e);
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
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.chunk_id.cmp(&b.chunk_id))
        });
        Ok(hits)
    }

    async fn health(&self) -> Result<HealthStatus, GatewayError> {
        match self.inspect_health().await {
            Ok(store) => Ok(HealthStatus::single(store)),
            // Unreachable is an answer of a health check, not a failure of it.
            Err(GatewayError::Unavailable { reason, .. }) => {
                Ok(HealthStatus::single(StoreHealth {
                    store: StoreKind::Pgvector,
                    reachable: false,
                    server_version: None,
                    collection: None,
                    problem: Some(reason),
                }))
            }
            Err(other) => Err(other),
        }
    }

    async fn close(&self) -> Result<(), GatewayError> {
        self.inner.pool.close().await;
        Ok(())
    }
}

/// Runs one statement without parameters (DDL, `SET LOCAL`).
///
/// `sqlx::raw_sql(..).execute(..)` would be the obvious call, but rustc cannot prove its
/// future `Send` (a higher-ranked lifetime in its `Executor` bound), which made every
/// caller's future, `bootstrap` first, unusable from a spawned task. A one-off unnamed
/// prepared statement runs the same single statement and keeps the futures `Send`; it is
/// not cached because the text is used once.
async fn execute_ddl(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).persistent(false).execute(conn).await?;
    Ok(())
}
