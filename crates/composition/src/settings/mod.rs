//! Typed settings of the gateway, read from the environment (or built in code).
//!
//! One source for the library, the CLI and xtask: [`table`] declares every variable once
//! (name, what it accepts, its default, the field it sets, whether it is secret). The
//! defaults are the adapters' own ([`PgVectorConfig::new`], [`MilvusConfig::new`]) and
//! the settings hold those adapter configurations directly. A missing or bad value is a
//! [`GatewayError::Configuration`] naming the variable, the value and what is accepted.
//! Secrets never appear in `Debug`, `Display` or errors.

mod builder;
mod docs;
mod kind;
mod milvus_vars;
mod table;
mod var;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr};
use vectorgate_adapter_milvus::MilvusConfig;
use vectorgate_adapter_pgvector::{validate_identifier, DatabaseUrl, PgVectorConfig};
use vectorgate_domain::{Dimension, GatewayError, Metric};

pub use builder::SettingsBuilder;
pub use docs::markdown_table;
pub use var::{Var, Variable};

/// The variables, one `static` each, for [`Settings::builder`] and tools; [`vars::VARIABLES`]
/// lists them all in the README's order.
pub mod vars {
    pub use super::table::{
        ALLOW_TENANT_MOVE, DATABASE_URL, DUAL_INTENT_LEASE_MS, DUAL_MAX_LAG_MS, DUAL_OUTBOX_TABLE,
        DUAL_READ_FROM, DUAL_RECONCILE_INTERVAL_MS, DUAL_RECONCILE_ROWS, DUAL_RELAY,
        DUAL_RELAY_INTERVAL_MS, DUAL_SHADOW_READ_RATE, EMBEDDING_DIM, MILVUS_CALL_TIMEOUT_MS,
        MILVUS_COLLECTION, MILVUS_CONNECT_TIMEOUT_MS, MILVUS_CONSISTENCY, MILVUS_DATABASE,
        MILVUS_EXPECTED_ROWS, MILVUS_HOST, MILVUS_INDEX_NLIST, MILVUS_PASSWORD, MILVUS_PORT,
        MILVUS_SEARCH_NPROBE, MILVUS_TLS_CA_FILE, MILVUS_TLS_CLIENT_CERT_FILE,
        MILVUS_TLS_CLIENT_KEY_FILE, MILVUS_TLS_SERVER_NAME, MILVUS_TOKEN,
        MILVUS_UPSERT_CONCURRENCY, MILVUS_URI, MILVUS_USERNAME, PGVECTOR_ACQUIRE_TIMEOUT_MS,
        PGVECTOR_CONNECT_TIMEOUT_MS, PGVECTOR_EXACT_SEARCH_MAX_ROWS, PGVECTOR_HNSW_EF_CONSTRUCTION,
        PGVECTOR_HNSW_EF_SEARCH, PGVECTOR_HNSW_M, PGVECTOR_INDEX, PGVECTOR_INDEX_BUILD_MEMORY_MB,
        PGVECTOR_INDEX_BUILD_TIMEOUT_MS, PGVECTOR_INDEX_PRECISION, PGVECTOR_IVFFLAT_LISTS,
        PGVECTOR_IVFFLAT_PROBES, PGVECTOR_MAX_CONNECTIONS, PGVECTOR_MAX_SCAN_TUPLES,
        PGVECTOR_PARTITIONS, PGVECTOR_STATEMENT_TIMEOUT_MS, PGVECTOR_TABLE,
        PGVECTOR_UPSERT_CONCURRENCY, SYNC_BATCH_SIZE, UPSERT_BATCH_SIZE, VARIABLES, VECTOR_METRIC,
        VECTOR_STORE_MODE,
    };
}

use table::VARIABLES;

/// Which store(s) the gateway uses. Parsed case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(Display, EnumString, IntoStaticStr)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum VectorStoreMode {
    /// PostgreSQL + pgvector only (the default; Milvus is never contacted).
    #[default]
    Pgvector,
    /// Milvus only (no PostgreSQL pool is opened).
    Milvus,
    /// pgvector is the source of truth, Milvus is written alongside.
    Dual,
}

impl VectorStoreMode {
    pub const ACCEPTED: &'static str = "pgvector, milvus or dual";

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn uses_pgvector(self) -> bool {
        matches!(self, VectorStoreMode::Pgvector | VectorStoreMode::Dual)
    }

    pub fn uses_milvus(self) -> bool {
        matches!(self, VectorStoreMode::Milvus | VectorStoreMode::Dual)
    }
}

/// Which store answers searches in dual mode. Parsed case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(Display, EnumString, IntoStaticStr)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum ReadFrom {
    #[default]
    Pgvector,
    Milvus,
}

impl ReadFrom {
    pub const ACCEPTED: &'static str = "pgvector or milvus";

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Dual-mode options.
#[derive(Debug, Clone, PartialEq)]
pub struct DualSettings {
    pub read_from: ReadFrom,
    /// Fraction of searches (0..=1) also sent to the other store in the background.
    pub shadow_read_rate: f64,
    /// PostgreSQL table holding the ids Milvus may lack (the outbox).
    pub outbox_table: String,
    /// How long a write in flight holds its ids before the relay may take them over. Must
    /// exceed the longest dual write (pool acquire + both stores' call timeouts).
    pub intent_lease: Duration,
    /// Whether the gateway runs the relay in the background (off: `vectorgate relay` or
    /// `vectorgate sync` replays).
    pub relay: bool,
    /// How often the relay looks for work without being woken, and how soon a standby
    /// process takes over from a leader that died.
    pub relay_interval: Duration,
    /// Outbox entries replayed per relay pass.
    pub relay_batch_size: usize,
    /// Lag above which `vectorgate health` reports dual mode unhealthy.
    pub max_lag: Duration,
    /// How often the relay compares a window of both stores (zero: never).
    pub reconcile_interval: Duration,
    /// Rows per compared window.
    pub reconcile_rows: usize,
}

impl Default for DualSettings {
    fn default() -> Self {
        Self {
            read_from: ReadFrom::Pgvector,
            shadow_read_rate: 0.0,
            outbox_table: "vectorgate_outbox".to_string(),
            intent_lease: Duration::from_secs(120),
            relay: true,
            relay_interval: Duration::from_secs(1),
            relay_batch_size: 2000,
            max_lag: Duration::from_secs(60),
            reconcile_interval: Duration::from_secs(30),
            reconcile_rows: 5000,
        }
    }
}

/// Everything the factory, the CLI and xtask need to build the gateway: the mode, each
/// adapter's own configuration and the dual-mode options.
#[derive(Clone)]
pub struct Settings {
    pub(crate) mode: VectorStoreMode,
    pub(crate) pgvector: PgVectorConfig,
    pub(crate) milvus: MilvusConfig,
    pub(crate) dual: DualSettings,
}

impl Settings {
    /// Every default, for a placeholder dimension (the adapters' own defaults).
    pub(crate) fn defaults() -> Self {
        let (pgvector, milvus) = table::adapter_defaults(Dimension::new(1).expect("1 is valid"));
        Self {
            mode: VectorStoreMode::default(),
            pgvector,
            milvus,
            dual: DualSettings::default(),
        }
    }

    /// Settings in code: variables set one by one, checked together by `build()` exactly
    /// as the environment is.
    pub fn builder() -> SettingsBuilder {
        SettingsBuilder::default()
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, GatewayError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Parses the given variables (the process environment is not consulted), so that
    /// tests and tools can pass an environment of their own. Later pairs win.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, GatewayError> {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
        Self::from_lookup(&|name| vars.get(name).cloned())
    }

    pub(crate) fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, GatewayError> {
        let mut settings = Self::defaults();
        for variable in VARIABLES {
            variable.read(&mut settings, env)?;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// The rules that tie variables together; each error names the variable to change.
    fn validate(&self) -> Result<(), GatewayError> {
        if self.mode.uses_pgvector() && self.pgvector.database_url.is_none() {
            return Err(GatewayError::configuration(
                "DATABASE_URL",
                "",
                format!(
                    "a postgres:// URL (required when VECTOR_STORE_MODE={}; only milvus mode \
                     runs without PostgreSQL)",
                    self.mode
                ),
            ));
        }
        // pgvector's limits (its 4,000-dimension index bound among them) apply only where
        // pgvector is used; a Milvus-only deployment may store larger embeddings.
        if self.mode.uses_pgvector() {
            self.pgvector.validate()?;
        }
        validate_identifier("DUAL_OUTBOX_TABLE", &self.dual.outbox_table)?;
        // A dual write holds its ids for the lease; a statement allowed to outlive it would
        // let the relay replay rows the write has not committed yet.
        let statement_timeout = self.pgvector.statement_timeout;
        if self.mode == VectorStoreMode::Dual && statement_timeout >= self.dual.intent_lease {
            return Err(GatewayError::configuration(
                "PGVECTOR_STATEMENT_TIMEOUT_MS",
                statement_timeout.as_millis().to_string(),
                format!(
                    "milliseconds below DUAL_INTENT_LEASE_MS ({}) in dual mode",
                    self.dual.intent_lease.as_millis()
                ),
            ));
        }
        let milvus = &self.milvus;
        if self.mode.uses_milvus() {
            // The TLS files and the token, before any connection is attempted.
            milvus.validate_connection()?;
        }
        if let (Some(nlist), Some(nprobe)) = (milvus.index_nlist, milvus.search_nprobe) {
            if nprobe > nlist {
                return Err(GatewayError::configuration(
                    "MILVUS_SEARCH_NPROBE",
                    nprobe.to_string(),
                    format!("an integer in 1..=MILVUS_INDEX_NLIST ({nlist})"),
                ));
            }
        }
        Ok(())
    }

    pub fn mode(&self) -> VectorStoreMode {
        self.mode
    }

    pub fn dimension(&self) -> Dimension {
        self.pgvector.dimension
    }

    pub fn metric(&self) -> Metric {
        self.pgvector.metric
    }

    pub fn database_url(&self) -> Option<&DatabaseUrl> {
        self.pgvector.database_url.as_ref()
    }

    /// The pgvector adapter's configuration.
    pub fn pgvector(&self) -> &PgVectorConfig {
        &self.pgvector
    }

    /// The Milvus adapter's configuration.
    pub fn milvus(&self) -> &MilvusConfig {
        &self.milvus
    }

    pub fn dual(&self) -> &DualSettings {
        &self.dual
    }

    /// These settings with the dual-mode background relay switched on or off (operator
    /// tools that replay in the foreground build their gateway without it).
    pub fn with_relay(&self, on: bool) -> Settings {
        let mut settings = self.clone();
        settings.dual.relay = on;
        settings
    }
}

/// Every variable with its value, secrets as `***`.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for variable in VARIABLES {
            map.entry(
                &variable.name(),
                &variable.current(self).unwrap_or_else(|| "(unset)".into()),
            );
        }
        map.finish()
    }
}

/// A one-line summary for logs: mode, dimension, metric and the endpoints in use.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mode={} dim={} metric={}",
            self.mode,
            self.dimension(),
            self.metric()
        )?;
        if self.mode.uses_pgvector() {
            match &self.pgvector.database_url {
                Some(url) => write!(f, " pgvector={url}")?,
                None => write!(f, " pgvector=<unset>")?,
            }
            write!(f, " table={}", self.pgvector.table)?;
        }
        if self.mode.uses_milvus() {
            write!(
                f,
                " milvus={} collection={}",
                self.milvus.endpoint(),
                self.milvus.collection
            )?;
        }
        if self.mode == VectorStoreMode::Dual {
            write!(
                f,
                " read_from={} shadow_read_rate={}",
                self.dual.read_from, self.dual.shadow_read_rate
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod milvus_tests;
#[cfg(test)]
mod secrets_tests;
#[cfg(test)]
mod tests;
