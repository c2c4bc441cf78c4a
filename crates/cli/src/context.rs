//! Settings (environment + flag overrides) and the stores built from them.

use std::sync::Arc;

use anyhow::Context as _;
use vectorgate_adapter_milvus::MilvusStore;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_composition::{Settings, Stores, VectorStoreMode};
use vectorgate_domain::{ProjectId, ScanFilter, TenantId, VectorStoreGateway};

use crate::args::{GlobalOpts, ScopeArgs};

#[derive(Debug)]
pub struct Ctx {
    pub settings: Settings,
    pub print_metrics: bool,
}

impl Ctx {
    /// Reads the process environment, then applies the flags (which win).
    pub fn load(global: &GlobalOpts) -> anyhow::Result<Self> {
        if global
            .database_url
            .as_deref()
            .is_some_and(vectorgate_adapter_pgvector::url_has_password)
        {
            eprintln!(
                "warning: --database-url holds a password, which other users of this machine \
                 can read in the process list; set DATABASE_URL or DATABASE_URL_FILE instead"
            );
        }
        let mut vars: Vec<(String, String)> = std::env::vars().collect();
        vars.extend(
            global
                .overrides()
                .into_iter()
                .map(|(var, value)| (var.to_string(), value)),
        );
        let settings = Settings::from_vars(vars)?;
        Ok(Self {
            settings,
            print_metrics: global.metrics,
        })
    }

    pub fn mode(&self) -> VectorStoreMode {
        self.settings.mode()
    }

    /// The gateway of the configured mode, as a service would build it but without a
    /// background relay: a one-shot command leaves what Milvus missed to the relay of a
    /// service or of `vectorgate relay`.
    pub async fn gateway(&self) -> anyhow::Result<Arc<dyn VectorStoreGateway>> {
        Ok(
            vectorgate_composition::VectorStoreFactory::build(&self.settings.with_relay(false))
                .await?,
        )
    }

    /// The pgvector store, whatever the mode (operator tools read it directly).
    pub fn pgvector(&self) -> anyhow::Result<PgVectorStore> {
        Ok(Stores::pgvector_store(&self.settings)?)
    }

    /// The Milvus store, whatever the mode.
    pub fn milvus(&self) -> anyhow::Result<MilvusStore> {
        Ok(Stores::milvus_store(&self.settings)?)
    }

    /// The Milvus store reading at `Strong` consistency: checks that run right after
    /// another process wrote (reconcile after backfill) must see those writes.
    pub fn milvus_strong(&self) -> anyhow::Result<MilvusStore> {
        Ok(Stores::milvus_replica(&self.settings)?)
    }

    /// The dual gateway without a background relay: commands that replay do it in the
    /// foreground, through the same relay code.
    pub async fn dual(
        &self,
    ) -> anyhow::Result<std::sync::Arc<vectorgate_composition::DualGateway>> {
        Ok(
            vectorgate_composition::VectorStoreFactory::build_dual(
                &self.settings.with_relay(false),
            )
            .await?,
        )
    }

    /// `host:port` of PostgreSQL (never credentials), for messages.
    pub fn pg_endpoint(&self) -> String {
        self.settings.database_url().map_or_else(
            || "(DATABASE_URL unset)".to_string(),
            |u| u.endpoint().to_string(),
        )
    }

    /// `host:port/collection`, how the target of a backfill is named.
    pub fn milvus_target(&self) -> String {
        let config = self.settings.milvus();
        format!("{}/{}", config.endpoint(), config.collection)
    }
}

impl ScopeArgs {
    pub fn filter(&self) -> anyhow::Result<ScanFilter> {
        let tenant = self
            .tenant
            .map(TenantId::new)
            .transpose()
            .context("--tenant")?;
        let project = self
            .project
            .map(ProjectId::new)
            .transpose()
            .context("--project")?;
        Ok(ScanFilter::new(tenant, project)?)
    }
}

pub fn describe_filter(filter: ScanFilter) -> String {
    match (filter.tenant_id, filter.project_id) {
        (None, _) => "all tenants".to_string(),
        (Some(t), None) => format!("tenant {t}"),
        (Some(t), Some(p)) => format!("tenant {t} project {p}"),
    }
}
