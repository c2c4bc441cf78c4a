//! Typed settings of the gateway, read from the environment (or built in code).
//!
//! One source for the library, the CLI and xtask. Every variable is listed in
//! [`VARIABLES`] (name, default, accepted values); the README's table is generated from the
//! same list. A missing or bad value is a [`GatewayError::Configuration`] naming the
//! variable, the value and what is accepted. Secrets (`DATABASE_URL`'s password,
//! `MILVUS_PASSWORD`, `MILVUS_TOKEN`) are held as [`SecretString`]s and never printed by
//! `Debug` or `Display`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use strum::{Display, EnumString, IntoStaticStr};
use vectorgate_adapter_milvus::{Consistency, MilvusConfig};
use vectorgate_adapter_pgvector::{redact_url, PgIndex, PgVectorConfig};
use vectorgate_domain::{Dimension, GatewayError, Metric};

/// Which store(s) the gateway uses. Parsed case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(Display, EnumString, IntoStaticStr)]
#[strum(
    serialize_all = "lowercase",
    ascii_case_insensitive,
    parse_err_ty = GatewayError,
    parse_err_fn = unknown_mode
)]
pub enum VectorStoreMode {
    /// PostgreSQL + pgvector only (the default; Milvus is never contacted).
    #[default]
    Pgvector,
    /// Milvus only (no PostgreSQL pool is opened).
    Milvus,
    /// pgvector is the source of truth, Milvus is written alongside (see [`crate::dual`]).
    Dual,
}

fn unknown_mode(value: &str) -> GatewayError {
    GatewayError::configuration("VECTOR_STORE_MODE", value, VectorStoreMode::ACCEPTED)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(Display, EnumString, IntoStaticStr)]
#[strum(
    serialize_all = "lowercase",
    ascii_case_insensitive,
    parse_err_ty = GatewayError,
    parse_err_fn = unknown_read_from
)]
pub enum ReadFrom {
    #[default]
    Pgvector,
    Milvus,
}

fn unknown_read_from(value: &str) -> GatewayError {
    GatewayError::configuration("DUAL_READ_FROM", value, ReadFrom::ACCEPTED)
}

impl ReadFrom {
    pub const ACCEPTED: &'static str = "pgvector or milvus";

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// pgvector settings other than the URL, dimension and metric (which are shared).
#[derive(Debug, Clone, PartialEq)]
pub struct PgVectorSettings {
    pub table: String,
    pub index: PgIndex,
    pub ef_search: u32,
    pub ivfflat_probes: u32,
    pub max_scan_tuples: u32,
    /// Scopes of at most this many rows are searched exactly (0: always the index).
    pub exact_search_max_rows: u32,
    /// Upsert statements in flight at once within one call.
    pub upsert_concurrency: usize,
    pub index_build_memory_mb: u32,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for PgVectorSettings {
    fn default() -> Self {
        Self {
            table: "knowledge_chunks".to_string(),
            index: PgIndex::default(),
            ef_search: 100,
            ivfflat_probes: 10,
            max_scan_tuples: 20_000,
            exact_search_max_rows: 10_000,
            upsert_concurrency: 2,
            index_build_memory_mb: 512,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Dual-mode options.
#[derive(Debug, Clone, PartialEq)]
pub struct DualSettings {
    pub read_from: ReadFrom,
    /// Fraction of searches (0..=1) also sent to the other store in the background.
    pub shadow_read_rate: f64,
    /// PostgreSQL table holding the write intents (the outbox).
    pub outbox_table: String,
    /// How long an in-flight write owns its intent before `sync` may replay it. Must exceed
    /// the longest dual write (pool acquire + both stores' call timeouts).
    pub intent_lease: Duration,
    /// Outbox entries `sync` replays per batch.
    pub sync_batch_size: usize,
}

impl Default for DualSettings {
    fn default() -> Self {
        Self {
            read_from: ReadFrom::Pgvector,
            shadow_read_rate: 0.0,
            outbox_table: "vectorgate_outbox".to_string(),
            intent_lease: Duration::from_secs(120),
            sync_batch_size: 500,
        }
    }
}

/// Everything the factory, the CLI and xtask need to build the gateway.
#[derive(Clone)]
pub struct Settings {
    pub mode: VectorStoreMode,
    pub dimension: Dimension,
    /// One metric for both stores, so that dual mode compares like with like.
    pub metric: Metric,
    /// `DATABASE_URL`; required by the pgvector and dual modes.
    pub database_url: Option<SecretString>,
    pub pgvector: PgVectorSettings,
    /// Rows per write request, for both stores.
    pub upsert_batch_size: usize,
    pub milvus: MilvusSettings,
    pub dual: DualSettings,
}

/// Milvus connection and collection settings (dimension and metric are shared).
#[derive(Clone)]
pub struct MilvusSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub token: Option<SecretString>,
    pub database: Option<String>,
    pub collection: String,
    pub index_nlist: Option<u32>,
    pub search_nprobe: Option<u32>,
    pub expected_rows: u64,
    pub consistency: Consistency,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    pub upsert_concurrency: usize,
}

impl Default for MilvusSettings {
    fn default() -> Self {
        Self {
            host: "localhost".to_string(),
            port: 19530,
            username: None,
            password: None,
            token: None,
            database: None,
            collection: "knowledge_chunks".to_string(),
            index_nlist: None,
            search_nprobe: None,
            expected_rows: MilvusConfig::DEFAULT_EXPECTED_ROWS,
            consistency: Consistency::default(),
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            upsert_concurrency: MilvusConfig::DEFAULT_UPSERT_CONCURRENCY,
        }
    }
}

impl fmt::Debug for MilvusSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MilvusSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("index_nlist", &self.index_nlist)
            .field("search_nprobe", &self.search_nprobe)
            .field("expected_rows", &self.expected_rows)
            .field("consistency", &self.consistency)
            .field("connect_timeout", &self.connect_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("upsert_concurrency", &self.upsert_concurrency)
            .finish()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("mode", &self.mode)
            .field("dimension", &self.dimension)
            .field("metric", &self.metric)
            .field(
                "database_url",
                &self
                    .database_url
                    .as_ref()
                    .map(|url| redact_url(url.expose_secret())),
            )
            .field("pgvector", &self.pgvector)
            .field("upsert_batch_size", &self.upsert_batch_size)
            .field("milvus", &self.milvus)
            .field("dual", &self.dual)
            .finish()
    }
}

/// A one-line summary for logs: mode, dimension, metric and the endpoints in use.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mode={} dim={} metric={}",
            self.mode, self.dimension, self.metric
        )?;
        if self.mode.uses_pgvector() {
            let url = self
                .database_url
                .as_ref()
                .map(|u| redact_url(u.expose_secret()))
                .unwrap_or_else(|| "<unset>".to_string());
            write!(f, " pgvector={url} table={}", self.pgvector.table)?;
        }
        if self.mode.uses_milvus() {
            write!(
                f,
                " milvus={}:{} collection={}",
                self.milvus.host, self.milvus.port, self.milvus.collection
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

/// One documented environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub default: &'static str,
    pub accepted: &'static str,
}

const fn var(name: &'static str, default: &'static str, accepted: &'static str) -> Variable {
    Variable {
        name,
        default,
        accepted,
    }
}

/// Every variable the settings read, in the README's order.
pub const VARIABLES: &[Variable] = &[
    var("VECTOR_STORE_MODE", "pgvector", VectorStoreMode::ACCEPTED),
    var("EMBEDDING_DIM", "(required)", "an integer in 1..=16000"),
    var(
        "VECTOR_METRIC",
        "IP",
        "IP, COSINE or L2 (both stores; alias MILVUS_METRIC)",
    ),
    var(
        "DATABASE_URL",
        "(required in pgvector and dual modes)",
        "postgres://user[:password]@host[:port]/db",
    ),
    var(
        "PGVECTOR_TABLE",
        "knowledge_chunks",
        "^[a-z_][a-z0-9_]{0,62}$",
    ),
    var("PGVECTOR_INDEX", "hnsw", "hnsw or ivfflat"),
    var("PGVECTOR_HNSW_M", "16", "an integer in 2..=100"),
    var(
        "PGVECTOR_HNSW_EF_CONSTRUCTION",
        "64",
        "an integer in 4..=1000, >= 2*m",
    ),
    var("PGVECTOR_HNSW_EF_SEARCH", "100", "an integer in 1..=1000"),
    var("PGVECTOR_IVFFLAT_LISTS", "100", "an integer in 1..=32768"),
    var("PGVECTOR_IVFFLAT_PROBES", "10", "an integer >= 1"),
    var("PGVECTOR_MAX_SCAN_TUPLES", "20000", "an integer >= 1"),
    var(
        "PGVECTOR_EXACT_SEARCH_MAX_ROWS",
        "10000",
        "an integer >= 0 (0: always the vector index)",
    ),
    var("PGVECTOR_UPSERT_CONCURRENCY", "2", "an integer in 1..=64"),
    var(
        "PGVECTOR_INDEX_BUILD_MEMORY_MB",
        "512",
        "an integer in 1..=2097151",
    ),
    var("PGVECTOR_MAX_CONNECTIONS", "10", "an integer >= 1"),
    var("PGVECTOR_ACQUIRE_TIMEOUT_MS", "10000", "milliseconds >= 1"),
    var("PGVECTOR_CONNECT_TIMEOUT_MS", "5000", "milliseconds >= 1"),
    var(
        "UPSERT_BATCH_SIZE",
        "1000",
        "an integer >= 1 (rows per write request, both stores)",
    ),
    var("MILVUS_HOST", "localhost", "a host name or IP address"),
    var("MILVUS_PORT", "19530", "a port in 1..=65535"),
    var("MILVUS_USERNAME", "(none)", "a user name"),
    var("MILVUS_PASSWORD", "(none)", "a password (secret)"),
    var("MILVUS_TOKEN", "(none)", "user:password (secret)"),
    var("MILVUS_DATABASE", "(server default)", "a database name"),
    var(
        "MILVUS_COLLECTION",
        "knowledge_chunks",
        "^[A-Za-z_][A-Za-z0-9_]{0,254}$",
    ),
    var(
        "MILVUS_INDEX_NLIST",
        "4*sqrt(MILVUS_EXPECTED_ROWS)",
        "an integer in 1..=65536",
    ),
    var(
        "MILVUS_SEARCH_NPROBE",
        "90% of nlist",
        "an integer in 1..=65536",
    ),
    var("MILVUS_EXPECTED_ROWS", "100000", "an integer >= 1"),
    var("MILVUS_CONSISTENCY", "Session", Consistency::ACCEPTED),
    var("MILVUS_CONNECT_TIMEOUT_MS", "5000", "milliseconds >= 1"),
    var("MILVUS_CALL_TIMEOUT_MS", "30000", "milliseconds >= 1"),
    var("MILVUS_UPSERT_CONCURRENCY", "4", "an integer >= 1"),
    var("DUAL_READ_FROM", "pgvector", ReadFrom::ACCEPTED),
    var("DUAL_SHADOW_READ_RATE", "0", "a number in 0..=1"),
    var(
        "DUAL_OUTBOX_TABLE",
        "vectorgate_outbox",
        "^[a-z_][a-z0-9_]{0,62}$",
    ),
    var("DUAL_INTENT_LEASE_MS", "120000", "milliseconds >= 1000"),
    var(
        "SYNC_BATCH_SIZE",
        "500",
        "an integer >= 1 (outbox entries per batch)",
    ),
];

/// The raw environment, deserialised by `envy` (field name = variable name, lowercase).
/// Every field is a string so that parse errors can name the variable and what it accepts.
#[derive(Debug, Default, Deserialize)]
struct RawEnv {
    vector_store_mode: Option<String>,
    embedding_dim: Option<String>,
    vector_metric: Option<String>,
    milvus_metric: Option<String>,
    database_url: Option<String>,
    pgvector_table: Option<String>,
    pgvector_index: Option<String>,
    pgvector_hnsw_m: Option<String>,
    pgvector_hnsw_ef_construction: Option<String>,
    pgvector_hnsw_ef_search: Option<String>,
    pgvector_ivfflat_lists: Option<String>,
    pgvector_ivfflat_probes: Option<String>,
    pgvector_max_scan_tuples: Option<String>,
    pgvector_exact_search_max_rows: Option<String>,
    pgvector_upsert_concurrency: Option<String>,
    pgvector_index_build_memory_mb: Option<String>,
    pgvector_max_connections: Option<String>,
    pgvector_acquire_timeout_ms: Option<String>,
    pgvector_connect_timeout_ms: Option<String>,
    upsert_batch_size: Option<String>,
    milvus_host: Option<String>,
    milvus_port: Option<String>,
    milvus_username: Option<String>,
    milvus_password: Option<String>,
    milvus_token: Option<String>,
    milvus_database: Option<String>,
    milvus_collection: Option<String>,
    milvus_index_nlist: Option<String>,
    milvus_search_nprobe: Option<String>,
    milvus_expected_rows: Option<String>,
    milvus_consistency: Option<String>,
    milvus_connect_timeout_ms: Option<String>,
    milvus_call_timeout_ms: Option<String>,
    milvus_upsert_concurrency: Option<String>,
    dual_read_from: Option<String>,
    dual_shadow_read_rate: Option<String>,
    dual_outbox_table: Option<String>,
    dual_intent_lease_ms: Option<String>,
    sync_batch_size: Option<String>,
}

/// A value from the environment; empty strings count as unset (a common shell idiom).
fn present(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn parse_num<T>(
    variable: &str,
    value: Option<String>,
    default: T,
    accepted: &str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, GatewayError>
where
    T: FromStr,
{
    match present(value) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<T>() {
            Ok(v) if valid(&v) => Ok(v),
            _ => Err(GatewayError::configuration(variable, raw, accepted)),
        },
    }
}

fn parse_opt_num<T: FromStr>(
    variable: &str,
    value: Option<String>,
    accepted: &str,
    valid: impl Fn(&T) -> bool,
) -> Result<Option<T>, GatewayError> {
    match present(value) {
        None => Ok(None),
        Some(raw) => match raw.trim().parse::<T>() {
            Ok(v) if valid(&v) => Ok(Some(v)),
            _ => Err(GatewayError::configuration(variable, raw, accepted)),
        },
    }
}

fn parse_millis(
    variable: &str,
    value: Option<String>,
    default: Duration,
    min_ms: u64,
) -> Result<Duration, GatewayError> {
    let accepted = format!("milliseconds, an integer >= {min_ms}");
    parse_num(
        variable,
        value,
        default.as_millis() as u64,
        &accepted,
        |v| *v >= min_ms,
    )
    .map(Duration::from_millis)
}

/// `^[a-z_][a-z0-9_]{0,62}$`: the only table names put into SQL.
pub fn validate_table_name(variable: &str, name: &str) -> Result<(), GatewayError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(GatewayError::configuration(
            variable,
            name,
            "a lowercase identifier matching ^[a-z_][a-z0-9_]{0,62}$",
        ))
    }
}

fn validate_collection_name(name: &str) -> Result<(), GatewayError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 255;
    if ok {
        Ok(())
    } else {
        Err(GatewayError::configuration(
            "MILVUS_COLLECTION",
            name,
            "a name matching ^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        ))
    }
}

fn parse_metric(variable: &str, raw: &str) -> Result<Metric, GatewayError> {
    raw.parse::<Metric>()
        .map_err(|_| GatewayError::configuration(variable, raw, Metric::ACCEPTED))
}

impl Settings {
    /// Settings with every default for the given dimension (mode pgvector, no URL yet).
    pub fn builder(dimension: Dimension) -> SettingsBuilder {
        SettingsBuilder {
            settings: Settings {
                mode: VectorStoreMode::default(),
                dimension,
                metric: Metric::default(),
                database_url: None,
                pgvector: PgVectorSettings::default(),
                upsert_batch_size: 1000,
                milvus: MilvusSettings::default(),
                dual: DualSettings::default(),
            },
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, GatewayError> {
        Self::from_vars(std::env::vars())
    }

    /// Parses the given variables (the process environment is not consulted), so that
    /// tests and tools can pass an environment of their own.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, GatewayError> {
        // envy matches lowercase field names; keep only our variables (and only ASCII keys,
        // as the process environment may hold anything).
        let vars: HashMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| {
                let lower = k.to_ascii_lowercase();
                VARIABLES
                    .iter()
                    .any(|v| v.name.eq_ignore_ascii_case(&lower))
                    || lower == "milvus_metric"
            })
            .collect();
        let raw: RawEnv = envy::from_iter(vars).map_err(|err| {
            GatewayError::configuration("environment", err.to_string(), "UTF-8 variables")
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawEnv) -> Result<Self, GatewayError> {
        let mode = match present(raw.vector_store_mode) {
            None => VectorStoreMode::default(),
            Some(v) => v.trim().parse()?,
        };
        let dimension = match present(raw.embedding_dim) {
            None => {
                return Err(GatewayError::configuration(
                    "EMBEDDING_DIM",
                    "",
                    "an integer in 1..=16000 (required: the embedding model's dimension)",
                ))
            }
            Some(raw_dim) => raw_dim
                .trim()
                .parse::<u32>()
                .ok()
                .and_then(|d| Dimension::new(d).ok())
                .ok_or_else(|| {
                    GatewayError::configuration(
                        "EMBEDDING_DIM",
                        raw_dim.clone(),
                        "an integer in 1..=16000",
                    )
                })?,
        };
        let metric = match (present(raw.vector_metric), present(raw.milvus_metric)) {
            (None, None) => Metric::default(),
            (Some(v), None) => parse_metric("VECTOR_METRIC", &v)?,
            (None, Some(m)) => parse_metric("MILVUS_METRIC", &m)?,
            (Some(v), Some(m)) => {
                let vm = parse_metric("VECTOR_METRIC", &v)?;
                let mm = parse_metric("MILVUS_METRIC", &m)?;
                if vm != mm {
                    return Err(GatewayError::configuration(
                        "MILVUS_METRIC",
                        m,
                        format!("the same metric as VECTOR_METRIC ({vm}) or unset: both stores use one metric"),
                    ));
                }
                vm
            }
        };

        let database_url = match present(raw.database_url) {
            Some(url) => {
                let lower = url.trim().to_ascii_lowercase();
                if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
                    return Err(GatewayError::configuration(
                        "DATABASE_URL",
                        redact_url(&url),
                        "a postgres:// or postgresql:// URL",
                    ));
                }
                Some(SecretString::from(url.trim().to_string()))
            }
            None => None,
        };
        if database_url.is_none() && mode.uses_pgvector() {
            return Err(GatewayError::configuration(
                "DATABASE_URL",
                "",
                format!(
                    "a postgres:// URL (required when VECTOR_STORE_MODE={mode}; \
                     only milvus mode runs without PostgreSQL)"
                ),
            ));
        }

        let table = present(raw.pgvector_table).unwrap_or_else(|| "knowledge_chunks".into());
        validate_table_name("PGVECTOR_TABLE", &table)?;
        let index_kind = present(raw.pgvector_index).unwrap_or_else(|| "hnsw".into());
        let index = match index_kind.trim().to_ascii_lowercase().as_str() {
            "hnsw" => {
                let m = parse_num(
                    "PGVECTOR_HNSW_M",
                    raw.pgvector_hnsw_m,
                    16u32,
                    "an integer in 2..=100",
                    |m| (2..=100).contains(m),
                )?;
                let accepted = format!("an integer in 4..=1000 and at least 2*m = {}", 2 * m);
                let ef_construction = parse_num(
                    "PGVECTOR_HNSW_EF_CONSTRUCTION",
                    raw.pgvector_hnsw_ef_construction,
                    64u32.max(2 * m),
                    &accepted,
                    |e| (4..=1000).contains(e) && *e >= 2 * m,
                )?;
                PgIndex::Hnsw { m, ef_construction }
            }
            "ivfflat" => {
                let lists = parse_num(
                    "PGVECTOR_IVFFLAT_LISTS",
                    raw.pgvector_ivfflat_lists,
                    100u32,
                    "an integer in 1..=32768",
                    |l| (1..=32_768).contains(l),
                )?;
                PgIndex::IvfFlat { lists }
            }
            _ => {
                return Err(GatewayError::configuration(
                    "PGVECTOR_INDEX",
                    index_kind,
                    "hnsw or ivfflat",
                ))
            }
        };
        let pg_defaults = PgVectorSettings::default();
        let pgvector = PgVectorSettings {
            table,
            index,
            ef_search: parse_num(
                "PGVECTOR_HNSW_EF_SEARCH",
                raw.pgvector_hnsw_ef_search,
                pg_defaults.ef_search,
                "an integer in 1..=1000",
                |v| (1..=1000).contains(v),
            )?,
            ivfflat_probes: parse_num(
                "PGVECTOR_IVFFLAT_PROBES",
                raw.pgvector_ivfflat_probes,
                pg_defaults.ivfflat_probes,
                "an integer in 1..=32768",
                |v| (1..=32_768).contains(v),
            )?,
            max_scan_tuples: parse_num(
                "PGVECTOR_MAX_SCAN_TUPLES",
                raw.pgvector_max_scan_tuples,
                pg_defaults.max_scan_tuples,
                "an integer in 1..=2147483647",
                |v| (1..=i32::MAX as u32).contains(v),
            )?,
            exact_search_max_rows: parse_num(
                "PGVECTOR_EXACT_SEARCH_MAX_ROWS",
                raw.pgvector_exact_search_max_rows,
                pg_defaults.exact_search_max_rows,
                "an integer >= 0 (0: always the vector index)",
                |_| true,
            )?,
            upsert_concurrency: parse_num(
                "PGVECTOR_UPSERT_CONCURRENCY",
                raw.pgvector_upsert_concurrency,
                pg_defaults.upsert_concurrency,
                "an integer in 1..=64",
                |v| (1..=64).contains(v),
            )?,
            index_build_memory_mb: parse_num(
                "PGVECTOR_INDEX_BUILD_MEMORY_MB",
                raw.pgvector_index_build_memory_mb,
                pg_defaults.index_build_memory_mb,
                "an integer in 1..=2097151 (MiB)",
                |v| (1..=2_097_151).contains(v),
            )?,
            max_connections: parse_num(
                "PGVECTOR_MAX_CONNECTIONS",
                raw.pgvector_max_connections,
                pg_defaults.max_connections,
                "an integer in 1..=10000",
                |v| (1..=10_000).contains(v),
            )?,
            acquire_timeout: parse_millis(
                "PGVECTOR_ACQUIRE_TIMEOUT_MS",
                raw.pgvector_acquire_timeout_ms,
                pg_defaults.acquire_timeout,
                1,
            )?,
            connect_timeout: parse_millis(
                "PGVECTOR_CONNECT_TIMEOUT_MS",
                raw.pgvector_connect_timeout_ms,
                pg_defaults.connect_timeout,
                1,
            )?,
        };
        let upsert_batch_size = parse_num(
            "UPSERT_BATCH_SIZE",
            raw.upsert_batch_size,
            1000usize,
            "an integer in 1..=100000",
            |v| (1..=100_000).contains(v),
        )?;

        let md = MilvusSettings::default();
        let collection = present(raw.milvus_collection).unwrap_or(md.collection);
        validate_collection_name(&collection)?;
        let host = present(raw.milvus_host).unwrap_or(md.host);
        if host.contains(['/', ' ', ':']) && !host.starts_with('[') {
            return Err(GatewayError::configuration(
                "MILVUS_HOST",
                host,
                "a host name or IP address without scheme or port (set MILVUS_PORT)",
            ));
        }
        let token = present(raw.milvus_token);
        if let Some(t) = &token {
            if !t.contains(':') {
                return Err(GatewayError::configuration(
                    "MILVUS_TOKEN",
                    "***",
                    "user:password (the Milvus client sends credentials as a user/password pair)",
                ));
            }
        }
        let milvus = MilvusSettings {
            host: host.trim().to_string(),
            port: parse_num(
                "MILVUS_PORT",
                raw.milvus_port,
                md.port,
                "a port in 1..=65535",
                |p| *p > 0,
            )?,
            username: present(raw.milvus_username),
            password: present(raw.milvus_password).map(SecretString::from),
            token: token.map(SecretString::from),
            database: present(raw.milvus_database),
            collection,
            index_nlist: parse_opt_num(
                "MILVUS_INDEX_NLIST",
                raw.milvus_index_nlist,
                "an integer in 1..=65536",
                |v: &u32| (1..=65_536).contains(v),
            )?,
            search_nprobe: parse_opt_num(
                "MILVUS_SEARCH_NPROBE",
                raw.milvus_search_nprobe,
                "an integer in 1..=65536",
                |v: &u32| (1..=65_536).contains(v),
            )?,
            expected_rows: parse_num(
                "MILVUS_EXPECTED_ROWS",
                raw.milvus_expected_rows,
                md.expected_rows,
                "an integer >= 1",
                |v| *v >= 1,
            )?,
            consistency: match present(raw.milvus_consistency) {
                None => md.consistency,
                Some(v) => v.trim().parse()?,
            },
            connect_timeout: parse_millis(
                "MILVUS_CONNECT_TIMEOUT_MS",
                raw.milvus_connect_timeout_ms,
                md.connect_timeout,
                1,
            )?,
            call_timeout: parse_millis(
                "MILVUS_CALL_TIMEOUT_MS",
                raw.milvus_call_timeout_ms,
                md.call_timeout,
                1,
            )?,
            upsert_concurrency: parse_num(
                "MILVUS_UPSERT_CONCURRENCY",
                raw.milvus_upsert_concurrency,
                md.upsert_concurrency,
                "an integer in 1..=64",
                |v| (1..=64).contains(v),
            )?,
        };
        if let (Some(nlist), Some(nprobe)) = (milvus.index_nlist, milvus.search_nprobe) {
            if nprobe > nlist {
                return Err(GatewayError::configuration(
                    "MILVUS_SEARCH_NPROBE",
                    nprobe.to_string(),
                    format!("an integer in 1..=MILVUS_INDEX_NLIST ({nlist})"),
                ));
            }
        }

        let dd = DualSettings::default();
        let outbox_table = present(raw.dual_outbox_table).unwrap_or(dd.outbox_table);
        validate_table_name("DUAL_OUTBOX_TABLE", &outbox_table)?;
        let dual = DualSettings {
            read_from: match present(raw.dual_read_from) {
                None => dd.read_from,
                Some(v) => v.trim().parse()?,
            },
            shadow_read_rate: parse_num(
                "DUAL_SHADOW_READ_RATE",
                raw.dual_shadow_read_rate,
                0.0f64,
                "a number in 0..=1",
                |r| (0.0..=1.0).contains(r),
            )?,
            outbox_table,
            intent_lease: parse_millis(
                "DUAL_INTENT_LEASE_MS",
                raw.dual_intent_lease_ms,
                dd.intent_lease,
                1000,
            )?,
            sync_batch_size: parse_num(
                "SYNC_BATCH_SIZE",
                raw.sync_batch_size,
                dd.sync_batch_size,
                "an integer in 1..=100000",
                |v| (1..=100_000).contains(v),
            )?,
        };

        Ok(Settings {
            mode,
            dimension,
            metric,
            database_url,
            pgvector,
            upsert_batch_size,
            milvus,
            dual,
        })
    }

    /// The pgvector adapter's configuration. Fails when `DATABASE_URL` is not set.
    pub fn pgvector_config(&self) -> Result<PgVectorConfig, GatewayError> {
        let url = self
            .database_url
            .as_ref()
            .ok_or_else(|| GatewayError::configuration("DATABASE_URL", "", "a postgres:// URL"))?;
        let mut config = PgVectorConfig::new(url.expose_secret().to_string(), self.dimension);
        let pg = &self.pgvector;
        config.table = pg.table.clone();
        config.metric = self.metric;
        config.index = pg.index;
        config.ef_search = pg.ef_search;
        config.ivfflat_probes = pg.ivfflat_probes;
        config.max_scan_tuples = pg.max_scan_tuples;
        config.exact_search_max_rows = pg.exact_search_max_rows;
        config.upsert_concurrency = pg.upsert_concurrency;
        config.index_build_memory_mb = pg.index_build_memory_mb;
        config.batch_size = self.upsert_batch_size;
        config.max_connections = pg.max_connections;
        config.acquire_timeout = pg.acquire_timeout;
        config.connect_timeout = pg.connect_timeout;
        Ok(config)
    }

    /// The Milvus adapter's configuration.
    pub fn milvus_config(&self) -> MilvusConfig {
        let m = &self.milvus;
        let mut config = MilvusConfig::new(m.host.clone(), m.port, self.dimension);
        config.username = m.username.clone();
        config.password = m.password.clone();
        config.token = m.token.clone();
        config.database = m.database.clone();
        config.collection = m.collection.clone();
        config.metric = self.metric;
        config.index_nlist = m.index_nlist;
        config.search_nprobe = m.search_nprobe;
        config.expected_rows = m.expected_rows;
        config.consistency = m.consistency;
        config.connect_timeout = m.connect_timeout;
        config.call_timeout = m.call_timeout;
        config.batch_size = self.upsert_batch_size;
        config.upsert_concurrency = m.upsert_concurrency;
        config
    }
}

/// Builds [`Settings`] in code, for services that do not configure through the
/// environment. Starts from the same defaults as [`Settings::from_vars`].
#[derive(Debug, Clone)]
pub struct SettingsBuilder {
    settings: Settings,
}

impl SettingsBuilder {
    pub fn mode(mut self, mode: VectorStoreMode) -> Self {
        self.settings.mode = mode;
        self
    }

    pub fn metric(mut self, metric: Metric) -> Self {
        self.settings.metric = metric;
        self
    }

    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.settings.database_url = Some(SecretString::from(url.into()));
        self
    }

    pub fn pgvector_table(mut self, table: impl Into<String>) -> Self {
        self.settings.pgvector.table = table.into();
        self
    }

    pub fn pgvector_index(mut self, index: PgIndex) -> Self {
        self.settings.pgvector.index = index;
        self
    }

    pub fn pgvector_ef_search(mut self, ef_search: u32) -> Self {
        self.settings.pgvector.ef_search = ef_search;
        self
    }

    pub fn pgvector_max_connections(mut self, max: u32) -> Self {
        self.settings.pgvector.max_connections = max;
        self
    }

    pub fn milvus_endpoint(mut self, host: impl Into<String>, port: u16) -> Self {
        self.settings.milvus.host = host.into();
        self.settings.milvus.port = port;
        self
    }

    pub fn milvus_collection(mut self, collection: impl Into<String>) -> Self {
        self.settings.milvus.collection = collection.into();
        self
    }

    pub fn milvus_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.settings.milvus.username = Some(username.into());
        self.settings.milvus.password = Some(SecretString::from(password.into()));
        self
    }

    pub fn milvus_index(mut self, nlist: Option<u32>, nprobe: Option<u32>) -> Self {
        self.settings.milvus.index_nlist = nlist;
        self.settings.milvus.search_nprobe = nprobe;
        self
    }

    pub fn milvus_consistency(mut self, consistency: Consistency) -> Self {
        self.settings.milvus.consistency = consistency;
        self
    }

    pub fn milvus_call_timeout(mut self, timeout: Duration) -> Self {
        self.settings.milvus.call_timeout = timeout;
        self
    }

    pub fn milvus_connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.milvus.connect_timeout = timeout;
        self
    }

    pub fn upsert_batch_size(mut self, rows: usize) -> Self {
        self.settings.upsert_batch_size = rows;
        self
    }

    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.settings.dual.read_from = read_from;
        self
    }

    pub fn shadow_read_rate(mut self, rate: f64) -> Self {
        self.settings.dual.shadow_read_rate = rate;
        self
    }

    pub fn outbox_table(mut self, table: impl Into<String>) -> Self {
        self.settings.dual.outbox_table = table.into();
        self
    }

    pub fn intent_lease(mut self, lease: Duration) -> Self {
        self.settings.dual.intent_lease = lease;
        self
    }

    /// Checks what the environment parser checks (names, ranges, required URL).
    pub fn build(self) -> Result<Settings, GatewayError> {
        let s = self.settings;
        validate_table_name("PGVECTOR_TABLE", &s.pgvector.table)?;
        validate_table_name("DUAL_OUTBOX_TABLE", &s.dual.outbox_table)?;
        validate_collection_name(&s.milvus.collection)?;
        if s.mode.uses_pgvector() && s.database_url.is_none() {
            return Err(GatewayError::configuration(
                "DATABASE_URL",
                "",
                format!(
                    "a postgres:// URL (required when VECTOR_STORE_MODE={})",
                    s.mode
                ),
            ));
        }
        if !(0.0..=1.0).contains(&s.dual.shadow_read_rate) {
            return Err(GatewayError::configuration(
                "DUAL_SHADOW_READ_RATE",
                s.dual.shadow_read_rate.to_string(),
                "a number in 0..=1",
            ));
        }
        if s.upsert_batch_size == 0 {
            return Err(GatewayError::configuration(
                "UPSERT_BATCH_SIZE",
                "0",
                "an integer >= 1",
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const URL: &str = "postgres://app:s3cr3t-pw@db.internal:5432/vectors";

    #[test]
    fn defaults_match_the_adapters_own() {
        let s = Settings::from_vars(env(&[("EMBEDDING_DIM", "8"), ("DATABASE_URL", URL)])).unwrap();
        let ours = s.pgvector_config().unwrap();
        let theirs = PgVectorConfig::new(URL, Dimension::new(8).unwrap());
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
        let ours = s.milvus_config();
        let mut theirs = MilvusConfig::new("localhost", 19530, Dimension::new(8).unwrap());
        theirs.batch_size = 1000;
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
    }

    #[test]
    fn defaults_follow_the_seed() {
        let s =
            Settings::from_vars(env(&[("EMBEDDING_DIM", "768"), ("DATABASE_URL", URL)])).unwrap();
        assert_eq!(s.mode, VectorStoreMode::Pgvector);
        assert_eq!(s.dimension.get(), 768);
        assert_eq!(s.metric, Metric::Ip);
        assert_eq!(s.pgvector.table, "knowledge_chunks");
        assert_eq!(s.milvus.host, "localhost");
        assert_eq!(s.milvus.port, 19530);
        assert_eq!(s.milvus.collection, "knowledge_chunks");
        assert_eq!(s.dual.read_from, ReadFrom::Pgvector);
        assert_eq!(s.dual.shadow_read_rate, 0.0);
        assert_eq!(s.upsert_batch_size, 1000);
    }

    #[test]
    fn good_environments_parse() {
        type Check = Box<dyn Fn(&Settings)>;
        let cases: Vec<(Vec<(&str, &str)>, Check)> = vec![
            (
                vec![("VECTOR_STORE_MODE", "milvus"), ("EMBEDDING_DIM", "8")],
                Box::new(|s| {
                    assert_eq!(s.mode, VectorStoreMode::Milvus);
                    assert!(s.database_url.is_none(), "milvus mode needs no PostgreSQL");
                }),
            ),
            (
                vec![
                    ("VECTOR_STORE_MODE", " Dual "),
                    ("EMBEDDING_DIM", "1536"),
                    ("DATABASE_URL", URL),
                    ("MILVUS_HOST", "milvus.internal"),
                    ("MILVUS_PORT", "29530"),
                    ("MILVUS_METRIC", "cosine"),
                    ("MILVUS_INDEX_NLIST", "256"),
                    ("MILVUS_SEARCH_NPROBE", "256"),
                    ("MILVUS_CONSISTENCY", "Strong"),
                    ("DUAL_READ_FROM", "milvus"),
                    ("DUAL_SHADOW_READ_RATE", "0.25"),
                    ("PGVECTOR_INDEX", "ivfflat"),
                    ("PGVECTOR_IVFFLAT_LISTS", "50"),
                    ("PGVECTOR_ACQUIRE_TIMEOUT_MS", "2500"),
                    ("MILVUS_CALL_TIMEOUT_MS", "1500"),
                    ("UPSERT_BATCH_SIZE", "250"),
                ],
                Box::new(|s| {
                    assert_eq!(s.mode, VectorStoreMode::Dual);
                    assert_eq!(s.metric, Metric::Cosine);
                    assert_eq!(s.milvus.port, 29530);
                    assert_eq!(s.milvus.index_nlist, Some(256));
                    assert_eq!(s.milvus.consistency, Consistency::Strong);
                    assert_eq!(s.dual.read_from, ReadFrom::Milvus);
                    assert_eq!(s.dual.shadow_read_rate, 0.25);
                    assert_eq!(s.pgvector.index, PgIndex::IvfFlat { lists: 50 });
                    assert_eq!(s.pgvector.acquire_timeout, Duration::from_millis(2500));
                    let pg = s.pgvector_config().unwrap();
                    assert_eq!(pg.metric, Metric::Cosine);
                    assert_eq!(pg.batch_size, 250);
                    let milvus = s.milvus_config();
                    assert_eq!(milvus.metric, Metric::Cosine);
                    assert_eq!(milvus.call_timeout, Duration::from_millis(1500));
                    assert_eq!(milvus.effective_nprobe(), 256);
                }),
            ),
            (
                vec![
                    ("EMBEDDING_DIM", "4"),
                    ("DATABASE_URL", URL),
                    ("VECTOR_METRIC", "L2"),
                    ("MILVUS_METRIC", "l2"),
                    ("MILVUS_PASSWORD", ""),
                    ("PGVECTOR_HNSW_M", "8"),
                    ("PGVECTOR_HNSW_EF_CONSTRUCTION", "16"),
                    ("UNRELATED_VARIABLE", "ignored"),
                ],
                Box::new(|s| {
                    assert_eq!(s.metric, Metric::L2);
                    assert!(s.milvus.password.is_none(), "empty counts as unset");
                    assert_eq!(
                        s.pgvector.index,
                        PgIndex::Hnsw {
                            m: 8,
                            ef_construction: 16
                        }
                    );
                }),
            ),
        ];
        for (vars, check) in cases {
            let settings = Settings::from_vars(env(&vars))
                .unwrap_or_else(|e| panic!("{vars:?} should parse: {e}"));
            check(&settings);
        }
    }

    #[test]
    fn bad_environments_name_the_variable_the_value_and_what_is_accepted() {
        let base = [("EMBEDDING_DIM", "8"), ("DATABASE_URL", URL)];
        // (overrides, variable named, value named, text the accepted values contain)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("VECTOR_STORE_MODE", "both")],
                "VECTOR_STORE_MODE",
                "both",
                "pgvector, milvus or dual",
            ),
            (&[("EMBEDDING_DIM", "0")], "EMBEDDING_DIM", "0", "1..=16000"),
            (
                &[("EMBEDDING_DIM", "abc")],
                "EMBEDDING_DIM",
                "abc",
                "integer",
            ),
            (
                &[("EMBEDDING_DIM", "16001")],
                "EMBEDDING_DIM",
                "16001",
                "1..=16000",
            ),
            (
                &[("VECTOR_METRIC", "dot")],
                "VECTOR_METRIC",
                "dot",
                "IP, COSINE or L2",
            ),
            (
                &[("VECTOR_METRIC", "IP"), ("MILVUS_METRIC", "L2")],
                "MILVUS_METRIC",
                "L2",
                "same metric",
            ),
            (
                &[("DATABASE_URL", "mysql://h/db")],
                "DATABASE_URL",
                "mysql://h/db",
                "postgres://",
            ),
            (
                &[("PGVECTOR_TABLE", "chunks; drop table x")],
                "PGVECTOR_TABLE",
                "chunks; drop table x",
                "^[a-z_]",
            ),
            (
                &[("PGVECTOR_INDEX", "flat")],
                "PGVECTOR_INDEX",
                "flat",
                "hnsw or ivfflat",
            ),
            (
                &[("PGVECTOR_HNSW_M", "1")],
                "PGVECTOR_HNSW_M",
                "1",
                "2..=100",
            ),
            (
                &[("PGVECTOR_HNSW_EF_CONSTRUCTION", "10")],
                "PGVECTOR_HNSW_EF_CONSTRUCTION",
                "10",
                "2*m",
            ),
            (
                &[("PGVECTOR_HNSW_EF_SEARCH", "5000")],
                "PGVECTOR_HNSW_EF_SEARCH",
                "5000",
                "1..=1000",
            ),
            (
                &[
                    ("PGVECTOR_INDEX", "ivfflat"),
                    ("PGVECTOR_IVFFLAT_LISTS", "-3"),
                ],
                "PGVECTOR_IVFFLAT_LISTS",
                "-3",
                "1..=32768",
            ),
            (
                &[("PGVECTOR_MAX_CONNECTIONS", "0")],
                "PGVECTOR_MAX_CONNECTIONS",
                "0",
                "1..=10000",
            ),
            (
                &[("PGVECTOR_ACQUIRE_TIMEOUT_MS", "1s")],
                "PGVECTOR_ACQUIRE_TIMEOUT_MS",
                "1s",
                "milliseconds",
            ),
            (
                &[("UPSERT_BATCH_SIZE", "0")],
                "UPSERT_BATCH_SIZE",
                "0",
                "1..=100000",
            ),
            (
                &[("MILVUS_PORT", "70000")],
                "MILVUS_PORT",
                "70000",
                "1..=65535",
            ),
            (&[("MILVUS_PORT", "0")], "MILVUS_PORT", "0", "1..=65535"),
            (
                &[("MILVUS_HOST", "http://milvus:19530")],
                "MILVUS_HOST",
                "http://milvus:19530",
                "without scheme",
            ),
            (
                &[("MILVUS_COLLECTION", "my-chunks")],
                "MILVUS_COLLECTION",
                "my-chunks",
                "A-Za-z",
            ),
            (
                &[("MILVUS_INDEX_NLIST", "0")],
                "MILVUS_INDEX_NLIST",
                "0",
                "1..=65536",
            ),
            (
                &[
                    ("MILVUS_INDEX_NLIST", "64"),
                    ("MILVUS_SEARCH_NPROBE", "128"),
                ],
                "MILVUS_SEARCH_NPROBE",
                "128",
                "MILVUS_INDEX_NLIST (64)",
            ),
            (
                &[("MILVUS_CONSISTENCY", "linearizable")],
                "MILVUS_CONSISTENCY",
                "linearizable",
                "Strong, Session",
            ),
            (
                &[("MILVUS_CALL_TIMEOUT_MS", "0")],
                "MILVUS_CALL_TIMEOUT_MS",
                "0",
                ">= 1",
            ),
            (
                &[("DUAL_READ_FROM", "both")],
                "DUAL_READ_FROM",
                "both",
                "pgvector or milvus",
            ),
            (
                &[("DUAL_SHADOW_READ_RATE", "1.5")],
                "DUAL_SHADOW_READ_RATE",
                "1.5",
                "0..=1",
            ),
            (
                &[("DUAL_SHADOW_READ_RATE", "NaN")],
                "DUAL_SHADOW_READ_RATE",
                "NaN",
                "0..=1",
            ),
            (
                &[("DUAL_OUTBOX_TABLE", "Outbox")],
                "DUAL_OUTBOX_TABLE",
                "Outbox",
                "^[a-z_]",
            ),
            (
                &[("DUAL_INTENT_LEASE_MS", "10")],
                "DUAL_INTENT_LEASE_MS",
                "10",
                ">= 1000",
            ),
        ];
        for (overrides, variable, value, accepted) in cases {
            let mut vars: HashMap<&str, &str> = base.iter().copied().collect();
            vars.extend(overrides.iter().copied());
            let vars: Vec<(String, String)> = vars
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let err = Settings::from_vars(vars).expect_err(&format!("{overrides:?} must fail"));
            match &err {
                GatewayError::Configuration {
                    variable: v,
                    value: got,
                    accepted: acc,
                } => {
                    assert_eq!(v, variable, "{overrides:?}: {err}");
                    assert_eq!(got, value, "{overrides:?}: {err}");
                    assert!(
                        acc.contains(accepted),
                        "{overrides:?}: accepted {acc:?} lacks {accepted:?}"
                    );
                }
                other => panic!("{overrides:?}: expected a configuration error, got {other}"),
            }
        }
    }

    #[test]
    fn required_variables_are_named_when_missing() {
        let err = Settings::from_vars(env(&[("DATABASE_URL", URL)])).unwrap_err();
        assert!(
            matches!(&err, GatewayError::Configuration { variable, .. } if variable == "EMBEDDING_DIM"),
            "{err}"
        );
        for mode in ["pgvector", "dual"] {
            let err =
                Settings::from_vars(env(&[("EMBEDDING_DIM", "8"), ("VECTOR_STORE_MODE", mode)]))
                    .unwrap_err();
            match &err {
                GatewayError::Configuration {
                    variable, accepted, ..
                } => {
                    assert_eq!(variable, "DATABASE_URL");
                    assert!(accepted.contains(mode), "{accepted}");
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_display_or_errors() {
        let s = Settings::from_vars(env(&[
            ("VECTOR_STORE_MODE", "dual"),
            ("EMBEDDING_DIM", "8"),
            (
                "DATABASE_URL",
                "postgres://app:s3cr3t-pw@db:5432/v?password=s3cr3t-pw",
            ),
            ("MILVUS_USERNAME", "root"),
            ("MILVUS_PASSWORD", "milvus-s3cr3t"),
            ("MILVUS_TOKEN", "root:token-s3cr3t"),
        ]))
        .unwrap();
        let printed = [
            format!("{s:?}"),
            format!("{s:#?}"),
            s.to_string(),
            format!("{:?}", s.milvus_config()),
            format!("{:?}", s.pgvector_config().unwrap()),
        ];
        for text in &printed {
            for secret in ["s3cr3t-pw", "milvus-s3cr3t", "token-s3cr3t"] {
                assert!(!text.contains(secret), "{secret} leaked in {text}");
            }
        }
        assert!(
            printed[0].contains("postgres://app:***@db:5432/v"),
            "{}",
            printed[0]
        );
        assert!(printed[2].contains("mode=dual"), "{}", printed[2]);
        // A bad URL's error names the variable without its password.
        let err = Settings::from_vars(env(&[
            ("EMBEDDING_DIM", "8"),
            ("DATABASE_URL", "mysql://app:s3cr3t-pw@db/x"),
        ]))
        .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t-pw"), "{err}");
        let err = Settings::from_vars(env(&[
            ("EMBEDDING_DIM", "8"),
            ("VECTOR_STORE_MODE", "milvus"),
            ("MILVUS_TOKEN", "just-a-s3cr3t"),
        ]))
        .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn the_builder_checks_what_the_environment_parser_checks() {
        let dim = Dimension::new(8).unwrap();
        let s = Settings::builder(dim)
            .mode(VectorStoreMode::Dual)
            .database_url(URL)
            .milvus_endpoint("127.0.0.1", 29530)
            .milvus_collection("chunks_test")
            .read_from(ReadFrom::Milvus)
            .shadow_read_rate(0.1)
            .build()
            .unwrap();
        assert_eq!(s.milvus_config().endpoint(), "127.0.0.1:29530");
        assert_eq!(s.dual.read_from, ReadFrom::Milvus);
        let err = Settings::builder(dim)
            .mode(VectorStoreMode::Pgvector)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, GatewayError::Configuration { ref variable, .. } if variable == "DATABASE_URL")
        );
        let err = Settings::builder(dim)
            .mode(VectorStoreMode::Milvus)
            .pgvector_table("Bad Name")
            .build()
            .unwrap_err();
        assert!(
            matches!(err, GatewayError::Configuration { ref variable, .. } if variable == "PGVECTOR_TABLE")
        );
    }

    #[test]
    fn every_variable_read_is_documented() {
        // The RawEnv fields and VARIABLES must list the same names (plus the alias).
        let documented: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
        let mut vars: Vec<(String, String)> = documented
            .iter()
            .map(|n| (n.to_string(), String::new()))
            .collect();
        vars.push(("EMBEDDING_DIM".into(), "8".into()));
        vars.push(("VECTOR_STORE_MODE".into(), "milvus".into()));
        assert!(Settings::from_vars(vars).is_ok());
        let mut seen = std::collections::HashSet::new();
        for name in &documented {
            assert!(seen.insert(*name), "{name} listed twice");
        }
    }
}
