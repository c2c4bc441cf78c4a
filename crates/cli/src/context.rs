//! Settings (environment + flag overrides) and the stores built from them.

use std::sync::Arc;

use anyhow::Context as _;
use vectorgate_adapter_milvus::{Consistency, MilvusStore};
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
        self.settings.mode
    }

    /// The gateway of the configured mode, exactly as a service would build it.
    pub async fn gateway(&self) -> anyhow::Result<Arc<dyn VectorStoreGateway>> {
        Ok(vectorgate_composition::VectorStoreFactory::build(&self.settings).await?)
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
        let mut config = self.settings.milvus_config();
        config.consistency = Consistency::Strong;
        Ok(MilvusStore::new(config)?)
    }

    /// `host:port/collection`, how the target of a backfill is named.
    pub fn milvus_target(&self) -> String {
        let config = self.settings.milvus_config();
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

/// `host:port` of a PostgreSQL URL (without user or password), for messages.
pub fn pg_endpoint(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.contains(':') || host.is_empty() {
        host.to_string()
    } else {
        format!("{host}:5432")
    }
}

pub fn describe_filter(filter: ScanFilter) -> String {
    match (filter.tenant_id, filter.project_id) {
        (None, _) => "all tenants".to_string(),
        (Some(t), None) => format!("tenant {t}"),
        (Some(t), Some(p)) => format!("tenant {t} project {p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_endpoint_hides_credentials() {
        assert_eq!(
            pg_endpoint("postgres://u:secret@db.example:5433/x?sslmode=require"),
            "db.example:5433"
        );
        assert_eq!(pg_endpoint("postgres://db/x"), "db:5432");
    }
}
