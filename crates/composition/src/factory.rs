//! Builds the gateway for the configured mode.
//!
//! `pgvector` touches nothing of Milvus (no client is even constructed); `milvus` never
//! opens a PostgreSQL pool; `dual` wires both behind [`DualGateway`]. Every store is wrapped
//! in [`Instrumented`]. The mode in use is logged, and when it differs from the one this
//! database saw last (table `vectorgate_state`), one info line names both.
//!
//! Construction goes through [`StoreProvider`] so that tests can count which stores a mode
//! builds; [`AdapterProvider`] is the real one.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use vectorgate_adapter_milvus::MilvusStore;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_domain::{
    ChunkId, GatewayError, ScanFilter, StoreKind, VectorRecord, VectorStoreGateway,
};

use crate::dual::{DualGateway, DualOptions, DualStores, RowKey, StoreRows};
use crate::observability::Instrumented;
use crate::outbox::{Outbox, PgOutbox};
use crate::schema_gate::{SchemaOnFirstUse, SchemaSetup};
use crate::settings::{Settings, VectorStoreMode};

/// Name of the small key/value table recording the last mode used with a database.
pub const STATE_TABLE: &str = "vectorgate_state";

/// The pgvector side as the factory needs it.
#[derive(Clone)]
pub struct PgParts {
    pub gateway: Arc<dyn VectorStoreGateway>,
    pub rows: Arc<dyn StoreRows>,
    /// Not bootstrapped; the factory bootstraps it in dual mode only.
    pub outbox: Arc<dyn Outbox>,
    pub mode_state: Arc<dyn ModeState>,
}

impl std::fmt::Debug for PgParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgParts")
            .field("outbox", &self.outbox)
            .finish_non_exhaustive()
    }
}

/// The Milvus side as the factory needs it. Building it does no I/O: the factory runs
/// `schema` itself, so that dual mode can start while Milvus is unreachable.
#[derive(Clone)]
pub struct MilvusParts {
    pub gateway: Arc<dyn VectorStoreGateway>,
    pub rows: Arc<dyn StoreRows>,
    pub schema: Arc<dyn SchemaSetup>,
}

impl std::fmt::Debug for MilvusParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilvusParts").finish_non_exhaustive()
    }
}

/// Constructs each store (pgvector: and bootstraps its table). The factory calls only the
/// methods of the stores the mode uses.
#[async_trait]
pub trait StoreProvider: Send + Sync {
    async fn pgvector(&self, settings: &Settings) -> Result<PgParts, GatewayError>;
    async fn milvus(&self, settings: &Settings) -> Result<MilvusParts, GatewayError>;
}

/// Where the last mode used with a database is recorded.
#[async_trait]
pub trait ModeState: Send + Sync {
    /// Records `mode` under `key` and returns the value recorded before, if any.
    async fn swap(&self, key: &str, mode: VectorStoreMode) -> Result<Option<String>, GatewayError>;
}

/// `vectorgate_state(key text primary key, value text, updated_at timestamptz)`.
#[derive(Debug, Clone)]
pub struct PgModeState {
    pool: PgPool,
}

impl PgModeState {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl ModeState for PgModeState {
    async fn swap(&self, key: &str, mode: VectorStoreMode) -> Result<Option<String>, GatewayError> {
        let err = |op: &'static str| {
            move |e: sqlx::Error| GatewayError::backend(StoreKind::Pgvector, op, e)
        };
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
                key text PRIMARY KEY, value text NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now())"
        ))
        .execute(&self.pool)
        .await
        .map_err(err("create state table"))?;
        let previous: Option<Option<String>> = sqlx::query_scalar(&format!(
            "WITH old AS (SELECT value FROM {STATE_TABLE} WHERE key = $1)
             INSERT INTO {STATE_TABLE} (key, value, updated_at) VALUES ($1, $2, now())
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()
             RETURNING (SELECT value FROM old)"
        ))
        .bind(key)
        .bind(mode.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(err("record vector store mode"))?;
        Ok(previous.flatten())
    }
}

/// Row access of the pgvector adapter for `sync`.
#[derive(Debug, Clone)]
pub struct PgRows(pub PgVectorStore);

#[async_trait]
impl StoreRows for PgRows {
    async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        self.0.fetch(ids).await
    }

    async fn scope_keys(&self, filter: ScanFilter) -> Result<Vec<RowKey>, GatewayError> {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = self.0.scan(filter, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.chunk_id);
            keys.extend(page.iter().map(|r| RowKey {
                chunk_id: r.chunk_id,
                tenant_id: r.tenant_id,
                project_id: r.project_id,
            }));
        }
        Ok(keys)
    }
}

/// Row access of the Milvus adapter for `sync`.
#[derive(Debug, Clone)]
pub struct MilvusRows(pub MilvusStore);

#[async_trait]
impl StoreRows for MilvusRows {
    async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        self.0.fetch(ids).await
    }

    async fn scope_keys(&self, filter: ScanFilter) -> Result<Vec<RowKey>, GatewayError> {
        let rows = self
            .0
            .scan_range(filter, ChunkId::new(0)?, ChunkId::new(i64::MAX)?, false)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| RowKey {
                chunk_id: r.chunk_id,
                tenant_id: r.tenant_id,
                project_id: r.project_id,
            })
            .collect())
    }
}

/// The concrete stores, for the CLI's operator commands (backfill, reconcile, health,
/// collection) that need more than the port. Construction does no I/O.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    pub pgvector: Option<PgVectorStore>,
    pub milvus: Option<MilvusStore>,
}

impl Stores {
    /// The stores the mode uses (pgvector mode: no Milvus client; milvus mode: no pool).
    pub fn for_mode(settings: &Settings) -> Result<Self, GatewayError> {
        Ok(Self {
            pgvector: settings
                .mode
                .uses_pgvector()
                .then(|| Self::pgvector_store(settings))
                .transpose()?,
            milvus: settings
                .mode
                .uses_milvus()
                .then(|| Self::milvus_store(settings))
                .transpose()?,
        })
    }

    /// Both stores, whatever the mode (backfill, reconcile, sync). Needs `DATABASE_URL`.
    pub fn both(settings: &Settings) -> Result<Self, GatewayError> {
        Ok(Self {
            pgvector: Some(Self::pgvector_store(settings)?),
            milvus: Some(Self::milvus_store(settings)?),
        })
    }

    pub fn pgvector_store(settings: &Settings) -> Result<PgVectorStore, GatewayError> {
        PgVectorStore::new(settings.pgvector_config()?)
    }

    pub fn milvus_store(settings: &Settings) -> Result<MilvusStore, GatewayError> {
        MilvusStore::new(settings.milvus_config())
    }

    /// The pgvector store, or a configuration error naming `DATABASE_URL`.
    pub fn require_pgvector(&self) -> Result<&PgVectorStore, GatewayError> {
        self.pgvector.as_ref().ok_or_else(|| {
            GatewayError::configuration(
                "DATABASE_URL",
                "",
                "a postgres:// URL (this command needs pgvector)",
            )
        })
    }

    /// The Milvus store, or a configuration error naming `VECTOR_STORE_MODE`.
    pub fn require_milvus(&self) -> Result<&MilvusStore, GatewayError> {
        self.milvus.as_ref().ok_or_else(|| {
            GatewayError::configuration(
                "VECTOR_STORE_MODE",
                "pgvector",
                "milvus or dual (this command needs Milvus)",
            )
        })
    }

    /// The dual gateway over these two stores (no I/O; call
    /// [`Outbox::bootstrap`] or build through the factory to create the outbox table).
    pub fn dual_gateway(&self, settings: &Settings) -> Result<DualGateway, GatewayError> {
        let pg = self.require_pgvector()?.clone();
        let milvus = self.require_milvus()?.clone();
        let outbox = PgOutbox::new(pg.pool().clone(), settings.dual.outbox_table.clone())?;
        Ok(DualGateway::new(
            DualStores {
                pgvector: Instrumented::wrap(Arc::new(pg.clone())),
                pgvector_rows: Arc::new(PgRows(pg)),
                milvus: Instrumented::wrap(Arc::new(milvus.clone())),
                milvus_rows: Arc::new(MilvusRows(milvus)),
                outbox: Arc::new(outbox),
            },
            DualOptions::from(&settings.dual),
        ))
    }
}

/// The real provider: the pgvector and Milvus adapters.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdapterProvider;

#[async_trait]
impl StoreProvider for AdapterProvider {
    async fn pgvector(&self, settings: &Settings) -> Result<PgParts, GatewayError> {
        let store = Stores::pgvector_store(settings)?;
        store.bootstrap().await?;
        let pool = store.pool().clone();
        Ok(PgParts {
            outbox: Arc::new(PgOutbox::new(
                pool.clone(),
                settings.dual.outbox_table.clone(),
            )?),
            mode_state: Arc::new(PgModeState::new(pool)),
            rows: Arc::new(PgRows(store.clone())),
            gateway: Arc::new(store),
        })
    }

    async fn milvus(&self, settings: &Settings) -> Result<MilvusParts, GatewayError> {
        let store = Stores::milvus_store(settings)?;
        Ok(MilvusParts {
            rows: Arc::new(MilvusRows(store.clone())),
            schema: Arc::new(store.clone()),
            gateway: Arc::new(store),
        })
    }
}

/// Builds the gateway for `settings.mode`.
#[derive(Debug, Clone, Copy)]
pub struct VectorStoreFactory;

impl VectorStoreFactory {
    /// The gateway for the configured mode, schemas bootstrapped, instrumented.
    pub async fn build(settings: &Settings) -> Result<Arc<dyn VectorStoreGateway>, GatewayError> {
        Self::build_with(settings, &AdapterProvider).await
    }

    /// The dual gateway itself (for `sync` and tests), whatever `settings.mode` says.
    pub async fn build_dual(settings: &Settings) -> Result<Arc<DualGateway>, GatewayError> {
        Self::build_dual_with(settings, &AdapterProvider).await
    }

    /// As [`Self::build`], with the stores made by `provider`.
    pub async fn build_with(
        settings: &Settings,
        provider: &dyn StoreProvider,
    ) -> Result<Arc<dyn VectorStoreGateway>, GatewayError> {
        let gateway: Arc<dyn VectorStoreGateway> = match settings.mode {
            VectorStoreMode::Pgvector => {
                let pg = provider.pgvector(settings).await?;
                record_mode(settings, Some(pg.mode_state.as_ref())).await;
                Instrumented::wrap(pg.gateway)
            }
            VectorStoreMode::Milvus => {
                let milvus = provider.milvus(settings).await?;
                milvus.schema.ensure_schema().await?;
                record_mode(settings, None).await;
                Instrumented::wrap(milvus.gateway)
            }
            VectorStoreMode::Dual => {
                Instrumented::wrap(Self::build_dual_with(settings, provider).await?)
            }
        };
        Ok(gateway)
    }

    /// As [`Self::build_dual`], with the stores made by `provider`.
    pub async fn build_dual_with(
        settings: &Settings,
        provider: &dyn StoreProvider,
    ) -> Result<Arc<DualGateway>, GatewayError> {
        let milvus = provider.milvus(settings).await?;
        let (pg, milvus_schema) =
            tokio::join!(provider.pgvector(settings), milvus.schema.ensure_schema());
        let pg = pg?;
        let milvus = match milvus_schema {
            Ok(()) => milvus,
            // pgvector is the source of truth: a Milvus that is down at start must not keep
            // the service down. Anything else (a schema mismatch, bad settings) will not
            // heal by waiting and fails the build.
            Err(err) if err.is_unavailable() => {
                tracing::warn!(
                    store = "milvus",
                    error = %err,
                    "dual mode starts without Milvus: its writes go to the outbox until Milvus \
                     is reached, then its collection is created or verified on first use; \
                     run `vectorgate sync` once it is back"
                );
                let gated = Arc::new(SchemaOnFirstUse::new(
                    milvus.gateway,
                    milvus.rows,
                    milvus.schema.clone(),
                ));
                MilvusParts {
                    gateway: gated.clone(),
                    rows: gated,
                    schema: milvus.schema,
                }
            }
            Err(err) => return Err(err),
        };
        pg.outbox.bootstrap().await?;
        if settings.mode == VectorStoreMode::Dual {
            record_mode(settings, Some(pg.mode_state.as_ref())).await;
        }
        let dual = DualGateway::new(
            DualStores {
                pgvector: Instrumented::wrap(pg.gateway),
                pgvector_rows: pg.rows,
                milvus: Instrumented::wrap(milvus.gateway),
                milvus_rows: milvus.rows,
                outbox: pg.outbox,
            },
            DualOptions::from(&settings.dual),
        );
        // Sets the outbox gauge from the table at start-up.
        if let Err(err) = dual.outbox_depth().await {
            tracing::warn!(error = %err, "could not read the outbox depth");
        }
        Ok(Arc::new(dual))
    }
}

/// Logs the mode in use and, when PostgreSQL is used, a transition from the mode recorded
/// last time. A failure to record is logged, not fatal: the stores themselves work.
async fn record_mode(settings: &Settings, state: Option<&dyn ModeState>) {
    let mode = settings.mode;
    tracing::info!(mode = mode.as_str(), settings = %settings, "vector store mode in use");
    let Some(state) = state else { return };
    let key = format!("vector_store_mode:{}", settings.pgvector.table);
    match state.swap(&key, mode).await {
        Ok(Some(previous)) if previous != mode.as_str() => tracing::info!(
            previous = previous.as_str(),
            current = mode.as_str(),
            "vector store mode changed from {previous} to {mode}"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not record the vector store mode"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use vectorgate_domain::{Dimension, Metric, MockVectorStoreGateway};

    use super::*;
    use crate::memory::MemoryStore;
    use crate::outbox::MemoryOutbox;
    use crate::test_support::CapturedLogs;

    #[derive(Default)]
    struct MemoryModeState(Mutex<HashMap<String, String>>);

    #[async_trait]
    impl ModeState for MemoryModeState {
        async fn swap(
            &self,
            key: &str,
            mode: VectorStoreMode,
        ) -> Result<Option<String>, GatewayError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .insert(key.to_string(), mode.as_str().to_string()))
        }
    }

    /// Counts which stores the factory asks for. Its stores are mocks with no
    /// expectations: any call on them (a connection, in real life) panics the test.
    #[derive(Default)]
    struct CountingProvider {
        pgvector_built: AtomicUsize,
        milvus_built: AtomicUsize,
        outbox: Arc<MemoryOutbox>,
        state: Arc<MemoryModeState>,
    }

    fn silent_mock(kind: StoreKind) -> Arc<MockVectorStoreGateway> {
        let mut mock = MockVectorStoreGateway::new();
        mock.expect_store_kind().return_const(kind);
        mock.expect_dimension()
            .return_const(Dimension::new(8).unwrap());
        Arc::new(mock)
    }

    #[async_trait]
    impl StoreProvider for CountingProvider {
        async fn pgvector(&self, _settings: &Settings) -> Result<PgParts, GatewayError> {
            self.pgvector_built.fetch_add(1, Ordering::SeqCst);
            Ok(PgParts {
                gateway: silent_mock(StoreKind::Pgvector),
                rows: Arc::new(MemoryStore::new(
                    StoreKind::Pgvector,
                    Dimension::new(8).unwrap(),
                    Metric::Ip,
                )),
                outbox: self.outbox.clone(),
                mode_state: self.state.clone(),
            })
        }

        async fn milvus(&self, _settings: &Settings) -> Result<MilvusParts, GatewayError> {
            self.milvus_built.fetch_add(1, Ordering::SeqCst);
            Ok(MilvusParts {
                gateway: silent_mock(StoreKind::Milvus),
                rows: Arc::new(MemoryStore::new(
                    StoreKind::Milvus,
                    Dimension::new(8).unwrap(),
                    Metric::Ip,
                )),
                schema: Arc::new(FakeSchema::default()),
            })
        }
    }

    /// A Milvus schema check that fails with `Unavailable` while `store` is down, or
    /// always with `error` when set; counts its calls.
    #[derive(Default)]
    struct FakeSchema {
        store: Option<Arc<MemoryStore>>,
        error: Option<GatewayError>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl SchemaSetup for FakeSchema {
        async fn ensure_schema(&self) -> Result<(), GatewayError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(err) = &self.error {
                return Err(err.clone());
            }
            match &self.store {
                // Any data call fails exactly when the store is down.
                Some(store) => store.check_up(),
                None => Ok(()),
            }
        }
    }

    /// In-memory stores on both sides, so that a dual gateway built by the factory can be
    /// driven end to end.
    struct MemoryProvider {
        pgvector: Arc<MemoryStore>,
        milvus: Arc<MemoryStore>,
        schema: Arc<FakeSchema>,
        outbox: Arc<MemoryOutbox>,
        state: Arc<MemoryModeState>,
    }

    impl MemoryProvider {
        fn new(schema_error: Option<GatewayError>) -> Self {
            let store = |kind| {
                Arc::new(MemoryStore::new(
                    kind,
                    Dimension::new(8).unwrap(),
                    Metric::Ip,
                ))
            };
            let milvus = store(StoreKind::Milvus);
            Self {
                pgvector: store(StoreKind::Pgvector),
                schema: Arc::new(FakeSchema {
                    store: Some(milvus.clone()),
                    error: schema_error,
                    calls: AtomicUsize::new(0),
                }),
                milvus,
                outbox: Arc::default(),
                state: Arc::default(),
            }
        }
    }

    #[async_trait]
    impl StoreProvider for MemoryProvider {
        async fn pgvector(&self, _settings: &Settings) -> Result<PgParts, GatewayError> {
            Ok(PgParts {
                gateway: self.pgvector.clone(),
                rows: self.pgvector.clone(),
                outbox: self.outbox.clone(),
                mode_state: self.state.clone(),
            })
        }

        async fn milvus(&self, _settings: &Settings) -> Result<MilvusParts, GatewayError> {
            Ok(MilvusParts {
                gateway: self.milvus.clone(),
                rows: self.milvus.clone(),
                schema: self.schema.clone(),
            })
        }
    }

    fn records(ids: std::ops::Range<i64>) -> Vec<VectorRecord> {
        ids.map(|id| {
            let mut values = vec![0.0; 8];
            values[(id % 8) as usize] = 1.0;
            VectorRecord::new(
                ChunkId::new(id).unwrap(),
                vectorgate_domain::TenantId::new(1).unwrap(),
                vectorgate_domain::ProjectId::new(1).unwrap(),
                vectorgate_domain::Embedding::new(values).unwrap(),
            )
        })
        .collect()
    }

    fn settings(mode: &str) -> Settings {
        Settings::from_vars([
            ("VECTOR_STORE_MODE".to_string(), mode.to_string()),
            ("EMBEDDING_DIM".to_string(), "8".to_string()),
            (
                "DATABASE_URL".to_string(),
                "postgres://u@127.0.0.1:1/db".to_string(),
            ),
        ])
        .unwrap()
    }

    #[tokio::test]
    async fn each_mode_builds_only_the_stores_it_uses() {
        for (mode, kind, pg, milvus) in [
            ("pgvector", StoreKind::Pgvector, 1, 0),
            ("milvus", StoreKind::Milvus, 0, 1),
            ("dual", StoreKind::Dual, 1, 1),
        ] {
            let provider = CountingProvider::default();
            let gateway = VectorStoreFactory::build_with(&settings(mode), &provider)
                .await
                .unwrap();
            assert_eq!(gateway.store_kind(), kind, "{mode}");
            assert_eq!(
                provider.pgvector_built.load(Ordering::SeqCst),
                pg,
                "{mode}: pgvector"
            );
            assert_eq!(
                provider.milvus_built.load(Ordering::SeqCst),
                milvus,
                "{mode}: milvus"
            );
        }
    }

    #[tokio::test]
    async fn constructing_stores_for_a_mode_opens_nothing_it_does_not_use() {
        // Construction is lazy (the pool needs a runtime but connects on first use); the
        // assertion is about which stores exist at all.
        let stores = Stores::for_mode(&settings("pgvector")).unwrap();
        assert!(stores.pgvector.is_some() && stores.milvus.is_none());
        let milvus_only = Settings::from_vars([
            ("VECTOR_STORE_MODE".to_string(), "milvus".to_string()),
            ("EMBEDDING_DIM".to_string(), "8".to_string()),
        ])
        .unwrap();
        let stores = Stores::for_mode(&milvus_only).unwrap();
        assert!(stores.pgvector.is_none() && stores.milvus.is_some());
        let err = stores.require_pgvector().unwrap_err();
        assert!(
            matches!(err, GatewayError::Configuration { ref variable, .. } if variable == "DATABASE_URL")
        );
    }

    #[tokio::test]
    async fn a_mode_change_is_logged_once_naming_both_modes() {
        let logs = CapturedLogs::default();
        let _guard = logs.install();
        let provider = CountingProvider::default();
        VectorStoreFactory::build_with(&settings("pgvector"), &provider)
            .await
            .unwrap();
        VectorStoreFactory::build_with(&settings("pgvector"), &provider)
            .await
            .unwrap();
        assert!(
            logs.lines_with("changed from").is_empty(),
            "{}",
            logs.text()
        );
        VectorStoreFactory::build_with(&settings("dual"), &provider)
            .await
            .unwrap();
        let changes = logs.lines_with("changed from");
        assert_eq!(changes.len(), 1, "{}", logs.text());
        assert!(changes[0].contains("INFO"), "{}", changes[0]);
        assert!(
            changes[0].contains("from pgvector to dual"),
            "{}",
            changes[0]
        );
        assert_eq!(logs.lines_with("vector store mode in use").len(), 3);
    }

    #[tokio::test]
    async fn dual_mode_starts_while_milvus_is_down_and_ensures_its_schema_on_first_contact() {
        let logs = CapturedLogs::default();
        let _guard = logs.install();
        let provider = MemoryProvider::new(None);
        provider.milvus.set_down(true);
        let dual = VectorStoreFactory::build_dual_with(&settings("dual"), &provider)
            .await
            .expect("dual mode starts while Milvus is down");
        let warnings = logs.lines_with("dual mode starts without Milvus");
        assert_eq!(warnings.len(), 1, "{}", logs.text());
        assert!(warnings[0].contains("WARN"), "{}", warnings[0]);

        // While Milvus stays down, writes succeed for the caller and are kept for sync.
        assert_eq!(dual.upsert_vectors(&records(0..3)).await.unwrap(), 3);
        dual.flush_background().await;
        assert_eq!(provider.pgvector.snapshot().len(), 3);
        assert!(provider.milvus.snapshot().is_empty());
        assert_eq!(provider.outbox.pending().len(), 1);
        assert_eq!(
            provider.schema.calls.load(Ordering::SeqCst),
            2,
            "build, first write"
        );

        // Milvus is back: the next write ensures the schema once, then reaches Milvus.
        provider.milvus.set_down(false);
        dual.upsert_vectors(&records(3..5)).await.unwrap();
        dual.upsert_vectors(&records(5..6)).await.unwrap();
        dual.flush_background().await;
        assert_eq!(provider.schema.calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            provider.milvus.snapshot().len(),
            3,
            "ids 3..6 reached Milvus"
        );
        assert_eq!(logs.lines_with("schema created or verified").len(), 1);

        // sync replays what Milvus missed while it was down.
        provider.outbox.expire_leases();
        let report = dual.sync().await.unwrap();
        assert_eq!(report.upserted, 3, "{report:?}");
        assert_eq!(provider.milvus.snapshot(), provider.pgvector.snapshot());
        assert!(provider.outbox.pending().is_empty());
    }

    #[tokio::test]
    async fn a_milvus_schema_mismatch_fails_the_dual_build() {
        let mismatch = GatewayError::schema_mismatch(
            StoreKind::Milvus,
            "knowledge_chunks",
            "dimension: expected 8, found 16",
        );
        let provider = MemoryProvider::new(Some(mismatch));
        let Err(err) = VectorStoreFactory::build_with(&settings("dual"), &provider).await else {
            panic!("a mismatch will not heal by waiting: the build must fail");
        };
        assert!(
            matches!(err, GatewayError::SchemaMismatch { ref details, .. } if details.contains("expected 8")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn milvus_mode_does_not_start_while_milvus_is_down() {
        let provider = MemoryProvider::new(None);
        provider.milvus.set_down(true);
        let Err(err) = VectorStoreFactory::build_with(&settings("milvus"), &provider).await else {
            panic!("milvus mode needs Milvus at start");
        };
        assert!(err.is_unavailable(), "{err}");
    }

    #[tokio::test]
    async fn dual_mode_bootstraps_the_outbox_and_a_down_outbox_fails_the_build() {
        let provider = CountingProvider::default();
        provider.outbox.set_unavailable(true);
        let Err(err) = VectorStoreFactory::build_with(&settings("dual"), &provider).await else {
            panic!("the build must fail when the outbox table cannot be created");
        };
        assert!(err.is_unavailable(), "{err}");
        // pgvector mode does not need the outbox.
        VectorStoreFactory::build_with(&settings("pgvector"), &provider)
            .await
            .unwrap();
    }
}
