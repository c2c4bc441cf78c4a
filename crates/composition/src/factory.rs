//! Builds the gateway for the configured mode.
//!
//! `pgvector` touches nothing of Milvus (no client is even constructed); `milvus` never
//! opens a PostgreSQL pool; `dual` wires both behind [`DualGateway`]. Every store is wrapped
//! in [`Instrumented`]. The mode in use is logged, and when it differs from the one this
//! database saw last, one info line names both.
//!
//! Construction goes through [`StoreProvider`] so that tests can count which stores a mode
//! builds; [`AdapterProvider`] is the real one.

use std::sync::Arc;

use async_trait::async_trait;
use vectorgate_domain::outbox::Outbox;
use vectorgate_domain::{GatewayError, VectorStoreGateway};

use crate::dual::{DualGateway, DualStores};
use crate::mode::{record_mode, StateTable};
use crate::observability::Instrumented;
use crate::rows::{Replica, Source};
use crate::schema_gate::{SchemaOnFirstUse, SchemaSetup};
use crate::settings::{Settings, VectorStoreMode};
use crate::stores::Stores;

/// The pgvector side as the factory needs it.
#[derive(Clone)]
pub(crate) struct PgParts {
    pub(crate) gateway: Arc<dyn VectorStoreGateway>,
    pub(crate) source: Arc<dyn Source>,
    /// Not bootstrapped; the factory bootstraps it in dual mode only.
    pub(crate) outbox: Arc<dyn Outbox>,
    pub(crate) state: Arc<dyn StateTable>,
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
pub(crate) struct MilvusParts {
    pub(crate) gateway: Arc<dyn VectorStoreGateway>,
    /// Reads at Strong consistency (the relay's comparisons must see every write).
    pub(crate) replica: Arc<dyn Replica>,
    pub(crate) schema: Arc<dyn SchemaSetup>,
}

impl std::fmt::Debug for MilvusParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilvusParts").finish_non_exhaustive()
    }
}

/// Constructs each store (pgvector: and bootstraps its table). The factory calls only the
/// methods of the stores the mode uses.
#[async_trait]
pub(crate) trait StoreProvider: Send + Sync {
    async fn pgvector(&self, settings: &Settings) -> Result<PgParts, GatewayError>;
    async fn milvus(&self, settings: &Settings) -> Result<MilvusParts, GatewayError>;
}

/// The real provider: the pgvector and Milvus adapters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AdapterProvider;

#[async_trait]
impl StoreProvider for AdapterProvider {
    async fn pgvector(&self, settings: &Settings) -> Result<PgParts, GatewayError> {
        let store = Stores::pgvector_store(settings)?;
        store.bootstrap().await?;
        Ok(PgParts {
            outbox: Arc::new(store.outbox(&settings.dual().outbox_table)?),
            state: Arc::new(store.clone()),
            source: Arc::new(store.clone()),
            gateway: Arc::new(store),
        })
    }

    async fn milvus(&self, settings: &Settings) -> Result<MilvusParts, GatewayError> {
        let store = Stores::milvus_store(settings)?;
        Ok(MilvusParts {
            replica: Arc::new(Stores::milvus_replica(settings)?),
            schema: Arc::new(store.clone()),
            gateway: Arc::new(store),
        })
    }
}

/// Builds the gateway for the configured mode.
#[derive(Debug, Clone, Copy)]
pub struct VectorStoreFactory;

impl VectorStoreFactory {
    /// The gateway for the configured mode, schemas bootstrapped, instrumented.
    pub async fn build(settings: &Settings) -> Result<Arc<dyn VectorStoreGateway>, GatewayError> {
        Self::build_with(settings, &AdapterProvider).await
    }

    /// The dual gateway itself (for the operator tools and tests), whatever
    /// `settings.mode` says; its relay runs when the settings say so (`DUAL_RELAY`).
    pub async fn build_dual(settings: &Settings) -> Result<Arc<DualGateway>, GatewayError> {
        Self::build_dual_with(settings, &AdapterProvider).await
    }

    /// As [`Self::build`], with the stores made by `provider`.
    pub(crate) async fn build_with(
        settings: &Settings,
        provider: &dyn StoreProvider,
    ) -> Result<Arc<dyn VectorStoreGateway>, GatewayError> {
        let gateway: Arc<dyn VectorStoreGateway> = match settings.mode() {
            VectorStoreMode::Pgvector => {
                let pg = provider.pgvector(settings).await?;
                record_mode(settings, Some(pg.state.as_ref())).await;
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
    pub(crate) async fn build_dual_with(
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
                     is reached, then its collection is created or verified on first use and \
                     the relay replays what it missed"
                );
                let gated = Arc::new(SchemaOnFirstUse::new(
                    milvus.gateway,
                    milvus.replica,
                    milvus.schema.clone(),
                ));
                MilvusParts {
                    gateway: gated.clone(),
                    replica: gated,
                    schema: milvus.schema,
                }
            }
            Err(err) => return Err(err),
        };
        pg.outbox.bootstrap().await?;
        if settings.mode() == VectorStoreMode::Dual {
            record_mode(settings, Some(pg.state.as_ref())).await;
        }
        let dual = DualGateway::new(
            DualStores {
                pgvector: Instrumented::wrap(pg.gateway),
                milvus: Instrumented::wrap(milvus.gateway),
                source: pg.source,
                replica: milvus.replica,
                outbox: pg.outbox,
                state: pg.state,
            },
            settings.dual().clone(),
        );
        // Sets the outbox gauges from the table at start-up.
        if let Err(err) = dual.outbox_stats().await {
            tracing::warn!(error = %err, "could not read the outbox stats");
        }
        Ok(Arc::new(dual))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use vectorgate_domain::{Dimension, Metric, MockVectorStoreGateway};

    use super::*;
    use crate::test_support::CapturedLogs;
    use crate::testing::{MemoryOutbox, MemoryState, MemoryStore};
    use vectorgate_domain::{ChunkId, StoreKind, VectorRecord};

    /// Counts which stores the factory asks for. Its stores are mocks with no
    /// expectations: any call on them (a connection, in real life) panics the test.
    #[derive(Default)]
    struct CountingProvider {
        pgvector_built: AtomicUsize,
        milvus_built: AtomicUsize,
        outbox: Arc<MemoryOutbox>,
        state: Arc<MemoryState>,
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
                source: Arc::new(MemoryStore::new(
                    StoreKind::Pgvector,
                    Dimension::new(8).unwrap(),
                    Metric::Ip,
                )),
                outbox: self.outbox.clone(),
                state: self.state.clone(),
            })
        }

        async fn milvus(&self, _settings: &Settings) -> Result<MilvusParts, GatewayError> {
            self.milvus_built.fetch_add(1, Ordering::SeqCst);
            Ok(MilvusParts {
                gateway: silent_mock(StoreKind::Milvus),
                replica: Arc::new(MemoryStore::new(
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
        state: Arc<MemoryState>,
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
            let pgvector = store(StoreKind::Pgvector);
            Self {
                outbox: Arc::new(MemoryOutbox::beside(pgvector.clone())),
                pgvector,
                schema: Arc::new(FakeSchema {
                    store: Some(milvus.clone()),
                    error: schema_error,
                    calls: AtomicUsize::new(0),
                }),
                milvus,
                state: Arc::default(),
            }
        }
    }

    #[async_trait]
    impl StoreProvider for MemoryProvider {
        async fn pgvector(&self, _settings: &Settings) -> Result<PgParts, GatewayError> {
            Ok(PgParts {
                gateway: self.pgvector.clone(),
                source: self.pgvector.clone(),
                outbox: self.outbox.clone(),
                state: self.state.clone(),
            })
        }

        async fn milvus(&self, _settings: &Settings) -> Result<MilvusParts, GatewayError> {
            Ok(MilvusParts {
                gateway: self.milvus.clone(),
                replica: self.milvus.clone(),
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
            // The tests replay with sync(); no relay in the background.
            ("DUAL_RELAY".to_string(), "off".to_string()),
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
        assert_eq!(
            provider.outbox.pending().len(),
            3,
            "every id written while down"
        );
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
