//! Creating what the store needs (extension, table, indexes) and checking what exists.

use sqlx::{Connection, PgConnection};
use vectorgate_domain::GatewayError;

use crate::layout::TableLayout;
use crate::schema;
use crate::store::PgVectorStore;

/// One advisory lock for every DDL vectorgate runs in a database: `CREATE ... IF NOT
/// EXISTS` of concurrent sessions can still collide on catalog rows (unique violations in
/// pg_extension/pg_type), so processes starting together take turns.
pub(crate) const DDL_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('vectorgate.ddl'))";

impl PgVectorStore {
    /// Creates the extension, the table, its scope index and its vector index when they
    /// are missing. An existing table that does not fit the settings (dimension, metric
    /// of its vector index, missing or retyped column) is a `SchemaMismatch` naming both
    /// sides, and nothing is changed. Safe to run concurrently: bootstraps serialise on an
    /// advisory lock and every statement is `IF NOT EXISTS`.
    pub async fn bootstrap(&self) -> Result<(), GatewayError> {
        let config = &self.inner.config;
        let op = "bootstrap";
        let mut conn = self.acquire(op).await?;
        let mut tx = conn.begin().await.map_err(self.err_long(op))?;
        self.extend_deadline(&mut tx, op).await?;
        execute_ddl(&mut tx, DDL_LOCK)
            .await
            .map_err(self.err_long(op))?;
        let installed: Option<String> =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err_long(op))?;
        if installed.is_none() {
            execute_ddl(&mut tx, "CREATE EXTENSION IF NOT EXISTS vector")
                .await
                .map_err(self.err_long(op))?;
        }
        let info = schema::inspect(&mut tx, &config.table)
            .await
            .map_err(self.err_long(op))?;
        let index_method = info
            .vector_indexes
            .first()
            .map_or(config.index.access_method(), |i| i.access_method.as_str());
        if let Some(warning) = installed
            .as_deref()
            .and_then(|v| crate::health::hnsw_version_warning(v, index_method))
        {
            tracing::warn!(table = %config.table, "{warning}");
        }
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
                execute_ddl(&mut tx, &ddl)
                    .await
                    .map_err(self.err_long(op))?;
            }
        }
        execute_ddl(&mut tx, &schema::create_scope_index_sql(&config.table))
            .await
            .map_err(self.err_long(op))?;
        if info.vector_indexes.is_empty() {
            execute_ddl(&mut tx, &schema::create_vector_index_sql(config))
                .await
                .map_err(self.err_long(op))?;
        }
        tx.commit().await.map_err(self.err_long(op))?;
        let layout = if info.exists {
            info.layout
        } else {
            TableLayout::for_new_table(config)
        };
        self.inner
            .layout
            .set(matches!(layout, TableLayout::TenantHash { .. }));
        tracing::debug!(table = %config.table, created = !info.exists, %layout, "bootstrap done");
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
pub(crate) async fn execute_ddl(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).persistent(false).execute(conn).await?;
    Ok(())
}
