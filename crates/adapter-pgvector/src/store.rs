//! [`PgVectorStore`]: construction, connections and the port; each operation's work is in
//! its own module (`write`, `search`, `scan`, `bulk`, `health`, `bootstrap`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use vectorgate_domain::{
    DeleteRequest, Dimension, GatewayError, HealthStatus, Metric, SearchHit, SearchRequest,
    StoreHealth, StoreKind, TenantConflict, VectorRecord, VectorStoreGateway,
};

use crate::config::PgVectorConfig;
use crate::error::Seam;
use crate::schema;
use crate::search::ScopeSizes;
use crate::sql::Statements;

/// The pgvector store: the authoritative copy of every embedding. Cheap to clone (the
/// pool and settings are shared).
#[derive(Clone)]
pub struct PgVectorStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: PgVectorConfig,
    pub pool: PgPool,
    pub seam: Seam,
    pub sql: Statements,
    pub scope_sizes: ScopeSizes,
    /// The table's layout as writes need it (see `layout.rs`), learned from the catalog by
    /// the first write or the bootstrap, and forgotten when a write finds the table gone or
    /// changed.
    pub layout: crate::layout::KnownLayout,
}

impl fmt::Debug for PgVectorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgVectorStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl PgVectorStore {
    /// Validates the settings and builds a lazy pool: no connection is opened until the
    /// first call. Must run inside a Tokio runtime (sqlx starts its pool housekeeping).
    pub fn new(config: PgVectorConfig) -> Result<Self, GatewayError> {
        config.validate()?;
        let url = config.database_url.as_ref().ok_or_else(|| {
            GatewayError::configuration(
                "DATABASE_URL",
                "",
                "a postgres:// URL (required by pgvector)",
            )
        })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(GatewayError::misuse(
                "PgVectorStore::new must be called inside a Tokio runtime",
            ));
        }
        let seam = Seam::new(
            url.endpoint().to_string(),
            url.password(),
            config.statement_timeout,
        );
        let options = with_deadline(url.connect_options(), &config);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options);
        let sql = Statements::new(&config);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                pool,
                seam,
                sql,
                scope_sizes: ScopeSizes::default(),
                layout: crate::layout::KnownLayout::default(),
            }),
        })
    }

    pub fn config(&self) -> &PgVectorConfig {
        &self.inner.config
    }

    /// Options for a connection of its own, outside the pool (the relay's lock).
    pub(crate) fn connect_options(&self) -> PgConnectOptions {
        let config = &self.inner.config;
        let url = config.database_url.as_ref().expect("checked in new()");
        with_deadline(url.connect_options(), config)
    }

    pub(crate) fn err(&self, operation: &'static str) -> impl Fn(sqlx::Error) -> GatewayError + '_ {
        move |e| self.inner.seam.map(operation, e)
    }

    /// Like `err` for statements under the bulk/index-build deadline.
    pub(crate) fn err_long(
        &self,
        operation: &'static str,
    ) -> impl Fn(sqlx::Error) -> GatewayError + '_ {
        let deadline = self.inner.config.index_build_timeout;
        move |e| self.inner.seam.map_within(operation, deadline, e)
    }

    /// Raises this transaction's deadline to `PGVECTOR_INDEX_BUILD_TIMEOUT_MS` (bulk loads
    /// and index builds run far longer than any other statement).
    pub(crate) async fn extend_deadline(
        &self,
        tx: &mut sqlx::PgConnection,
        operation: &'static str,
    ) -> Result<(), GatewayError> {
        // Only an integer from the validated settings goes into this SET: SET cannot take
        // bind parameters.
        let millis = self.inner.config.index_build_timeout.as_millis();
        crate::bootstrap::execute_ddl(tx, &format!("SET LOCAL statement_timeout = {millis}"))
            .await
            .map_err(self.err(operation))
    }

    /// Like `err`, but a missing table (SQLSTATE 42P01) becomes a schema error that says
    /// how to create it.
    pub(crate) fn map_table_error(
        &self,
        operation: &'static str,
    ) -> impl Fn(sqlx::Error) -> GatewayError + '_ {
        move |e| {
            self.forget_layout_on(&e);
            if let sqlx::Error::Database(db) = &e {
                if db.code().as_deref() == Some("42P01") {
                    return self.missing_table();
                }
            }
            self.inner.seam.map(operation, e)
        }
    }

    pub(crate) fn missing_table(&self) -> GatewayError {
        schema::mismatch_error(
            &self.inner.config.table,
            &[format!(
                "the table does not exist ({})",
                schema::CREATE_ADVICE
            )],
        )
    }

    /// A pooled connection. An empty pool has to connect first, which is capped by
    /// `connect_timeout` so that a server that is down is reported promptly.
    pub(crate) async fn acquire(
        &self,
        operation: &'static str,
    ) -> Result<PoolConnection<Postgres>, GatewayError> {
        let pool = &self.inner.pool;
        let result = if pool.size() == 0 {
            tokio::time::timeout(self.inner.config.connect_timeout, pool.acquire())
                .await
                .map_err(|_| self.inner.seam.connect_timed_out(operation))?
        } else {
            pool.acquire().await
        };
        result.map_err(self.err(operation))
    }
}

/// Every connection, pooled or not, starts with the statement deadline: sent as a startup
/// option, it holds from the first statement and needs no extra round trip. Options the
/// URL already names (`?options=...`) are kept.
fn with_deadline(options: PgConnectOptions, config: &PgVectorConfig) -> PgConnectOptions {
    options.application_name("vectorgate").options([(
        "statement_timeout",
        config.statement_timeout.as_millis().to_string(),
    )])
}

#[async_trait]
impl VectorStoreGateway for PgVectorStore {
    fn store_kind(&self) -> StoreKind {
        StoreKind::Pgvector
    }

    fn dimension(&self) -> Dimension {
        self.inner.config.dimension
    }

    fn metric(&self) -> Metric {
        self.inner.config.metric
    }

    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.upsert(records).await
    }

    async fn tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        PgVectorStore::tenant_conflicts(self, records).await
    }

    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        self.delete(request).await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError> {
        self.search_scope(request).await
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
                    warnings: Vec::new(),
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
