//! The concrete stores, for the CLI's operator commands (backfill, reconcile, health,
//! collection) that need more than the port.

use vectorgate_adapter_milvus::MilvusStore;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_domain::GatewayError;

use crate::settings::Settings;

/// The stores of a configuration. Construction does no I/O.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    pub pgvector: Option<PgVectorStore>,
    pub milvus: Option<MilvusStore>,
}

impl Stores {
    /// The stores the mode uses (pgvector mode: no Milvus client; milvus mode: no pool).
    pub fn for_mode(settings: &Settings) -> Result<Self, GatewayError> {
        let mode = settings.mode();
        Ok(Self {
            pgvector: mode
                .uses_pgvector()
                .then(|| Self::pgvector_store(settings))
                .transpose()?,
            milvus: mode
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
        PgVectorStore::new(settings.pgvector().clone())
    }

    pub fn milvus_store(settings: &Settings) -> Result<MilvusStore, GatewayError> {
        MilvusStore::new(Self::milvus_config(settings))
    }

    /// Outside milvus mode, Milvus holds a copy of pgvector, which decides which tenant owns
    /// a chunk; the copy must follow every move pgvector accepted.
    fn milvus_config(settings: &Settings) -> vectorgate_adapter_milvus::MilvusConfig {
        let mut config = settings.milvus().clone();
        if settings.mode() != crate::settings::VectorStoreMode::Milvus {
            config.allow_tenant_move = true;
        }
        config
    }

    /// The Milvus store reading at Strong consistency: comparisons that run right after
    /// writes of any process (the relay's reconcile, `vectorgate reconcile`) must see them.
    pub fn milvus_replica(settings: &Settings) -> Result<MilvusStore, GatewayError> {
        let mut config = Self::milvus_config(settings);
        config.consistency = vectorgate_adapter_milvus::Consistency::Strong;
        MilvusStore::new(config)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[tokio::test]
    async fn constructing_stores_for_a_mode_opens_nothing_it_does_not_use() {
        // Construction is lazy (the pool needs a runtime but connects on first use); the
        // assertion is about which stores exist at all.
        let stores = Stores::for_mode(&settings(&[
            ("EMBEDDING_DIM", "8"),
            ("DATABASE_URL", "postgres://u@127.0.0.1:1/db"),
        ]))
        .unwrap();
        assert!(stores.pgvector.is_some() && stores.milvus.is_none());
        let stores = Stores::for_mode(&settings(&[
            ("VECTOR_STORE_MODE", "milvus"),
            ("EMBEDDING_DIM", "8"),
        ]))
        .unwrap();
        assert!(stores.pgvector.is_none() && stores.milvus.is_some());
        let err = stores.require_pgvector().unwrap_err();
        assert!(
            matches!(err, GatewayError::Configuration { ref variable, .. } if variable == "DATABASE_URL")
        );
    }

    /// Issue 12, interleaving 4: comparisons read Milvus at Strong consistency, whatever
    /// the configured level (a fresh process's Session reads are eventual).
    #[tokio::test]
    async fn the_replica_reads_strong_whatever_the_configured_consistency() {
        let s = settings(&[
            ("VECTOR_STORE_MODE", "milvus"),
            ("EMBEDDING_DIM", "8"),
            ("MILVUS_CONSISTENCY", "Eventually"),
        ]);
        assert_eq!(
            Stores::milvus_replica(&s).unwrap().config().consistency,
            vectorgate_adapter_milvus::Consistency::Strong
        );
        assert_eq!(
            Stores::milvus_store(&s).unwrap().config().consistency,
            vectorgate_adapter_milvus::Consistency::Eventually
        );
    }

    /// Outside milvus mode Milvus copies pgvector, so it must accept every move pgvector
    /// accepted; only a Milvus-only gateway checks tenants itself.
    #[tokio::test]
    async fn only_milvus_mode_checks_tenants_in_milvus() {
        let milvus_mode = settings(&[("VECTOR_STORE_MODE", "milvus"), ("EMBEDDING_DIM", "8")]);
        assert!(
            !Stores::milvus_store(&milvus_mode)
                .unwrap()
                .config()
                .allow_tenant_move
        );
        let dual = settings(&[
            ("VECTOR_STORE_MODE", "dual"),
            ("EMBEDDING_DIM", "8"),
            ("DATABASE_URL", "postgres://u@127.0.0.1:1/db"),
        ]);
        assert!(
            Stores::milvus_store(&dual)
                .unwrap()
                .config()
                .allow_tenant_move
        );
        assert!(
            Stores::milvus_replica(&dual)
                .unwrap()
                .config()
                .allow_tenant_move
        );
    }
}
