//! Settings of the pgvector store: one struct, its defaults and the ranges it accepts.
//!
//! The defaults live in [`PgVectorConfig::new`] and the accepted ranges in [`limits`];
//! the composition crate's settings table reads both, so neither is written twice.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use strum::{Display, EnumString, IntoStaticStr, VariantNames};
use vectorgate_domain::{Dimension, GatewayError, Metric};

use crate::url::DatabaseUrl;

/// The ranges the store accepts, each pgvector's or PostgreSQL's own limit; checking them
/// at start-up turns a late SQL error into a configuration error.
pub mod limits {
    use super::RangeInclusive;

    pub const HNSW_M: RangeInclusive<u32> = 2..=100;
    pub const HNSW_EF_CONSTRUCTION: RangeInclusive<u32> = 4..=1000;
    pub const EF_SEARCH: RangeInclusive<u32> = 1..=1000;
    pub const IVFFLAT_LISTS: RangeInclusive<u32> = 1..=32_768;
    pub const IVFFLAT_PROBES: RangeInclusive<u32> = 1..=32_768;
    pub const MAX_SCAN_TUPLES: RangeInclusive<u32> = 1..=i32::MAX as u32;
    pub const EXACT_SEARCH_MAX_ROWS: RangeInclusive<u32> = 0..=i32::MAX as u32;
    pub const UPSERT_CONCURRENCY: RangeInclusive<usize> = 1..=64;
    /// Hash partitions by tenant of a new table (0: one table); each has its own indexes,
    /// all created in one transaction, whose locks PostgreSQL's lock table must hold.
    pub const TENANT_PARTITIONS: RangeInclusive<u32> = 0..=256;
    /// MiB; PostgreSQL's largest `maintenance_work_mem`.
    pub const INDEX_BUILD_MEMORY_MB: RangeInclusive<u32> = 1..=2_097_151;
    pub const MAX_CONNECTIONS: RangeInclusive<u32> = 1..=10_000;
    /// Rows per write statement (and per Milvus request: the setting is shared).
    pub const BATCH_SIZE: RangeInclusive<usize> = 1..=100_000;
    /// pgvector indexes `vector` columns of at most 2,000 dimensions...
    pub const SINGLE_PRECISION_INDEX_DIMENSIONS: u32 = 2_000;
    /// ...and `halfvec` expressions of at most 4,000.
    pub const HALF_PRECISION_INDEX_DIMENSIONS: u32 = 4_000;
    /// Milliseconds; PostgreSQL's `statement_timeout` is an `int` of milliseconds, and 0
    /// (no deadline) is not offered.
    pub const STATEMENT_TIMEOUT_MS: RangeInclusive<u64> = 1..=i32::MAX as u64;
}

/// The approximate-nearest-neighbour index type on the `embedding` column.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Display,
    EnumString,
    IntoStaticStr,
    VariantNames,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum IndexKind {
    /// HNSW: better recall/speed trade-off, slower to build; pgvector's recommendation.
    #[default]
    Hnsw,
    /// IVFFlat: fast to build; `lists` should follow the table's size (rows/1000 up to 1M rows).
    Ivfflat,
}

/// The precision the vector index stores; the column always keeps full precision.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Display,
    EnumString,
    IntoStaticStr,
    VariantNames,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum IndexPrecision {
    /// Single up to 2,000 dimensions, half above (pgvector's index limits).
    #[default]
    Auto,
    /// `vector`: at most 2,000 dimensions.
    Single,
    /// `halfvec` (16-bit floats): at most 4,000 dimensions; half the index size, and the
    /// scores are still computed from the full-precision column.
    Half,
}

impl IndexKind {
    /// pgvector's access method name.
    pub fn access_method(self) -> &'static str {
        self.into()
    }
}

/// Settings of the pgvector store.
#[derive(Clone)]
pub struct PgVectorConfig {
    /// Required to build a store; never printed with its password.
    pub database_url: Option<DatabaseUrl>,
    /// Table holding the embeddings; a lowercase identifier (see [`validate_identifier`]).
    pub table: String,
    pub dimension: Dimension,
    pub metric: Metric,
    pub index: IndexKind,
    pub index_precision: IndexPrecision,
    /// Whether an upsert may move an existing chunk to another tenant; when false such an
    /// upsert is refused with [`GatewayError::TenantConflict`] and writes nothing.
    pub allow_tenant_move: bool,
    /// Hash partitions by tenant for a new table, 0 for one table. `None` (the setting
    /// unset): a new table gets [`DEFAULT_TENANT_PARTITIONS`](crate::DEFAULT_TENANT_PARTITIONS)
    /// and an existing one is served with whatever layout it has; `Some`: an existing table
    /// with another layout is refused.
    pub tenant_partitions: Option<u32>,
    /// HNSW graph degree.
    pub hnsw_m: u32,
    /// HNSW build candidate list; `None` means `max(64, 2 * hnsw_m)`.
    pub hnsw_ef_construction: Option<u32>,
    /// IVFFlat lists.
    pub ivfflat_lists: u32,
    /// `hnsw.ef_search` per query (raised to `k` when `k` is larger).
    pub ef_search: u32,
    /// `ivfflat.probes` per query (IVFFlat only).
    pub ivfflat_probes: u32,
    /// `hnsw.max_scan_tuples`: how far an iterative scan may go to find `k` rows that pass a
    /// tenant/project filter before it stops.
    pub max_scan_tuples: u32,
    /// Scopes (tenant, or tenant + projects) holding at most this many rows are searched
    /// exactly: the scope's rows are read through the (tenant_id, project_id) index and
    /// sorted by distance, so recall is 1 and k rows come back whenever k exist. Larger
    /// scopes use the vector index. 0 always uses the vector index. Costs one bounded
    /// count per search (it stops at this many + 1 index entries).
    pub exact_search_max_rows: u32,
    /// Rows per upsert statement (one round trip and one transaction each).
    pub batch_size: usize,
    /// Batches of one upsert call sent at the same time, each on its own connection (at
    /// most `max_connections`). With an HNSW index, inserting is CPU-bound index
    /// maintenance in the server, which parallel batches spread over its cores.
    pub upsert_concurrency: usize,
    pub max_connections: u32,
    /// How long a call waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// How long a call waits for a new connection when the pool has none open (sqlx opens
    /// connections inside `acquire`, so this caps the acquire of an empty pool; a server
    /// that is down is reported after this long, not after `acquire_timeout`).
    pub connect_timeout: Duration,
    /// The most `maintenance_work_mem` (MiB) an index build in `bulk_load` may take; the
    /// build asks for what its table needs within this cap ([`Self::index_build_memory_mb_for`]).
    /// An HNSW graph that does not fit is built far more slowly, and without parallel workers.
    pub index_build_memory_mb: u32,
    /// PostgreSQL's `statement_timeout` for every statement the store runs (set when each
    /// connection starts): a lock wait or a runaway statement ends as `Timeout`.
    pub statement_timeout: Duration,
    /// The larger deadline of bulk loads (COPY) and index builds (bootstrap), set with
    /// `SET LOCAL` inside their transaction.
    pub index_build_timeout: Duration,
}

/// The vector index as the SQL needs it: its type and `WITH (...)` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgIndex {
    Hnsw { m: u32, ef_construction: u32 },
    IvfFlat { lists: u32 },
}

impl PgIndex {
    pub fn access_method(&self) -> &'static str {
        match self {
            PgIndex::Hnsw { .. } => IndexKind::Hnsw.access_method(),
            PgIndex::IvfFlat { .. } => IndexKind::Ivfflat.access_method(),
        }
    }

    /// The `WITH (...)` storage parameters of `CREATE INDEX`. Built from integers only.
    pub(crate) fn with_clause(&self) -> String {
        match self {
            PgIndex::Hnsw { m, ef_construction } => {
                format!("m = {m}, ef_construction = {ef_construction}")
            }
            PgIndex::IvfFlat { lists } => format!("lists = {lists}"),
        }
    }
}

impl PgVectorConfig {
    /// The defaults: table `knowledge_chunks`, metric IP, HNSW m=16 ef_construction=64,
    /// ef_search 200, exact search for scopes of at most 10,000 rows, batches of 1000
    /// rows, 10 connections, no URL yet. Scopes up to 10,000 rows are exact (recall 1)
    /// whatever the data; on clustered data at 240,000 rows, ef_search 200 kept recall@10
    /// near 0.97 for scopes of 20,000 and 60,000 rows where 100 gave 0.93-0.96, at the
    /// same speed (docs/pgvector-search.md).
    pub fn new(dimension: Dimension) -> Self {
        Self {
            database_url: None,
            table: "knowledge_chunks".to_string(),
            dimension,
            metric: Metric::default(),
            index: IndexKind::default(),
            index_precision: IndexPrecision::default(),
            allow_tenant_move: false,
            tenant_partitions: None,
            hnsw_m: 16,
            hnsw_ef_construction: None,
            ivfflat_lists: 100,
            ef_search: 200,
            ivfflat_probes: 10,
            max_scan_tuples: 20_000,
            exact_search_max_rows: 10_000,
            batch_size: 1000,
            upsert_concurrency: 2,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            index_build_memory_mb: 2048,
            statement_timeout: Duration::from_secs(30),
            index_build_timeout: Duration::from_secs(3600),
        }
    }

    /// [`Self::new`] connected to `url` (parsed and checked here).
    pub fn for_url(url: &str, dimension: Dimension) -> Result<Self, GatewayError> {
        let mut config = Self::new(dimension);
        config.database_url = Some(DatabaseUrl::parse(url)?);
        Ok(config)
    }

    /// The HNSW build candidate list in effect.
    pub fn effective_ef_construction(&self) -> u32 {
        self.hnsw_ef_construction
            .unwrap_or_else(|| 64u32.max(2 * self.hnsw_m))
    }

    /// Whether the vector index is built on `embedding::halfvec(D)` rather than the column.
    pub fn half_precision_index(&self) -> bool {
        match self.index_precision {
            IndexPrecision::Auto => {
                self.dimension.get() > limits::SINGLE_PRECISION_INDEX_DIMENSIONS
            }
            IndexPrecision::Single => false,
            IndexPrecision::Half => true,
        }
    }

    /// `maintenance_work_mem` (MiB) for building the vector index over `rows` rows: the
    /// HNSW graph (each element's vector at the index's precision plus about 2m neighbour
    /// links of 8 bytes and 100 bytes of bookkeeping), with a quarter more as headroom, at
    /// least 64 MiB and at most the configured cap. IVFFlat needs little (its k-means runs
    /// on a sample), so it gets the floor.
    pub fn index_build_memory_mb_for(&self, rows: u64) -> u32 {
        const FLOOR_MB: u64 = 64;
        let needed = match self.vector_index() {
            PgIndex::Hnsw { m, .. } => {
                let vector = u64::from(self.dimension.get())
                    * if self.half_precision_index() { 2 } else { 4 };
                let per_row = vector + 2 * u64::from(m) * 8 + 100;
                (rows * per_row * 5 / 4).div_ceil(1 << 20) + FLOOR_MB
            }
            PgIndex::IvfFlat { .. } => FLOOR_MB,
        };
        needed.min(u64::from(self.index_build_memory_mb)) as u32
    }

    /// The configured vector index with its parameters.
    pub fn vector_index(&self) -> PgIndex {
        match self.index {
            IndexKind::Hnsw => PgIndex::Hnsw {
                m: self.hnsw_m,
                ef_construction: self.effective_ef_construction(),
            },
            IndexKind::Ivfflat => PgIndex::IvfFlat {
                lists: self.ivfflat_lists,
            },
        }
    }

    /// Checks every value against [`limits`] and the rules that tie values together;
    /// errors name the environment variable that sets the value.
    pub fn validate(&self) -> Result<(), GatewayError> {
        validate_identifier("PGVECTOR_TABLE", &self.table)?;
        self.validate_dimension()?;
        if let Some(partitions) = self.tenant_partitions {
            within("PGVECTOR_PARTITIONS", partitions, limits::TENANT_PARTITIONS)?;
        }
        within("PGVECTOR_HNSW_M", self.hnsw_m, limits::HNSW_M)?;
        let ef_construction = self.effective_ef_construction();
        if !limits::HNSW_EF_CONSTRUCTION.contains(&ef_construction)
            || ef_construction < 2 * self.hnsw_m
        {
            return Err(GatewayError::configuration(
                "PGVECTOR_HNSW_EF_CONSTRUCTION",
                ef_construction.to_string(),
                format!(
                    "an integer in {} and at least 2*m = {}",
                    range_text(&limits::HNSW_EF_CONSTRUCTION),
                    2 * self.hnsw_m
                ),
            ));
        }
        within(
            "PGVECTOR_IVFFLAT_LISTS",
            self.ivfflat_lists,
            limits::IVFFLAT_LISTS,
        )?;
        within("PGVECTOR_HNSW_EF_SEARCH", self.ef_search, limits::EF_SEARCH)?;
        within(
            "PGVECTOR_IVFFLAT_PROBES",
            self.ivfflat_probes,
            limits::IVFFLAT_PROBES,
        )?;
        within(
            "PGVECTOR_MAX_SCAN_TUPLES",
            self.max_scan_tuples,
            limits::MAX_SCAN_TUPLES,
        )?;
        within("UPSERT_BATCH_SIZE", self.batch_size, limits::BATCH_SIZE)?;
        within(
            "PGVECTOR_MAX_CONNECTIONS",
            self.max_connections,
            limits::MAX_CONNECTIONS,
        )?;
        within(
            "PGVECTOR_INDEX_BUILD_MEMORY_MB",
            self.index_build_memory_mb,
            limits::INDEX_BUILD_MEMORY_MB,
        )?;
        within_millis("PGVECTOR_STATEMENT_TIMEOUT_MS", self.statement_timeout)?;
        within_millis("PGVECTOR_INDEX_BUILD_TIMEOUT_MS", self.index_build_timeout)?;
        let concurrency = limits::UPSERT_CONCURRENCY;
        if !concurrency.contains(&self.upsert_concurrency)
            || self.upsert_concurrency > self.max_connections as usize
        {
            return Err(GatewayError::configuration(
                "PGVECTOR_UPSERT_CONCURRENCY",
                self.upsert_concurrency.to_string(),
                format!(
                    "an integer in {} and at most PGVECTOR_MAX_CONNECTIONS ({})",
                    range_text(&concurrency),
                    self.max_connections
                ),
            ));
        }
        Ok(())
    }
}

impl PgVectorConfig {
    /// The dimension against pgvector's index limits, before anything connects.
    fn validate_dimension(&self) -> Result<(), GatewayError> {
        let dim = self.dimension.get();
        let single = limits::SINGLE_PRECISION_INDEX_DIMENSIONS;
        let half = limits::HALF_PRECISION_INDEX_DIMENSIONS;
        if dim > half {
            return Err(GatewayError::configuration(
                "EMBEDDING_DIM",
                dim.to_string(),
                format!(
                    "at most {half} with pgvector: its HNSW and IVFFlat indexes take up to \
                     {single} dimensions in single precision and {half} in half precision \
                     (use Milvus alone, or reduce the embedding's dimension)"
                ),
            ));
        }
        if dim > single && self.index_precision == IndexPrecision::Single {
            return Err(GatewayError::configuration(
                "PGVECTOR_INDEX_PRECISION",
                "single",
                format!(
                    "auto or half for EMBEDDING_DIM {dim}: pgvector indexes at most {single} \
                     dimensions in single precision"
                ),
            ));
        }
        Ok(())
    }
}

/// `1..=64`, as the settings and their errors write a range.
pub fn range_text<T: fmt::Display>(range: &RangeInclusive<T>) -> String {
    format!("{}..={}", range.start(), range.end())
}

fn within<T: PartialOrd + fmt::Display>(
    variable: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), GatewayError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(GatewayError::configuration(
            variable,
            value.to_string(),
            format!("an integer in {}", range_text(&range)),
        ))
    }
}

fn within_millis(variable: &str, value: Duration) -> Result<(), GatewayError> {
    let range = limits::STATEMENT_TIMEOUT_MS;
    let millis = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
    if range.contains(&millis) {
        Ok(())
    } else {
        Err(GatewayError::configuration(
            variable,
            millis.to_string(),
            format!("milliseconds, an integer in {}", range_text(&range)),
        ))
    }
}

impl fmt::Debug for PgVectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgVectorConfig")
            .field("database_url", &self.database_url)
            .field("table", &self.table)
            .field("dimension", &self.dimension)
            .field("metric", &self.metric)
            .field("index", &self.vector_index())
            .field("half_precision_index", &self.half_precision_index())
            .field("allow_tenant_move", &self.allow_tenant_move)
            .field("tenant_partitions", &self.tenant_partitions)
            .field("ef_search", &self.ef_search)
            .field("ivfflat_probes", &self.ivfflat_probes)
            .field("max_scan_tuples", &self.max_scan_tuples)
            .field("exact_search_max_rows", &self.exact_search_max_rows)
            .field("batch_size", &self.batch_size)
            .field("upsert_concurrency", &self.upsert_concurrency)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("index_build_memory_mb", &self.index_build_memory_mb)
            .field("statement_timeout", &self.statement_timeout)
            .field("index_build_timeout", &self.index_build_timeout)
            .finish()
    }
}

/// What a table name must look like to be put into SQL (identifiers cannot be bound).
pub const IDENTIFIER_ACCEPTED: &str = "a lowercase identifier matching ^[a-z_][a-z0-9_]{0,62}$";

/// Checks a table name before it is put into SQL; the error names `variable`.
pub fn validate_identifier(variable: &str, name: &str) -> Result<(), GatewayError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(GatewayError::configuration(
            variable,
            name,
            IDENTIFIER_ACCEPTED,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dim() -> Dimension {
        Dimension::new(8).unwrap()
    }

    #[test]
    fn identifiers_are_checked() {
        for ok in ["knowledge_chunks", "_t", "t1", &"a".repeat(63)] {
            assert!(validate_identifier("PGVECTOR_TABLE", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1t",
            "Knowledge",
            "t-1",
            "t; drop table x",
            "t\"",
            &"a".repeat(64),
        ] {
            let err = validate_identifier("PGVECTOR_TABLE", bad).unwrap_err();
            assert!(
                matches!(err, GatewayError::Configuration { ref value, .. } if value == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn out_of_range_settings_are_configuration_errors() {
        let config = PgVectorConfig::new(dim());
        assert!(config.validate().is_ok());
        let mut bad = config.clone();
        bad.ef_search = 0;
        assert!(matches!(
            bad.validate(),
            Err(GatewayError::Configuration { ref variable, .. }) if variable == "PGVECTOR_HNSW_EF_SEARCH"
        ));
        let mut bad = config.clone();
        bad.hnsw_ef_construction = Some(8);
        assert!(matches!(
            bad.validate(),
            Err(GatewayError::Configuration { ref variable, .. }) if variable == "PGVECTOR_HNSW_EF_CONSTRUCTION"
        ));
        let mut bad = config;
        bad.upsert_concurrency = 11;
        assert!(matches!(
            bad.validate(),
            Err(GatewayError::Configuration { ref variable, ref accepted, .. })
                if variable == "PGVECTOR_UPSERT_CONCURRENCY" && accepted.contains("PGVECTOR_MAX_CONNECTIONS (10)")
        ));
    }

    #[test]
    fn index_builds_ask_for_the_memory_their_graph_needs_within_the_cap() {
        let mut config = PgVectorConfig::new(Dimension::new(768).unwrap());
        // 240,000 x 768 single precision: about 1 GB of graph.
        let mb = config.index_build_memory_mb_for(240_000);
        assert!((900..=1100).contains(&mb), "{mb}");
        assert_eq!(config.index_build_memory_mb_for(0), 64);
        config.index_build_memory_mb = 256;
        assert_eq!(config.index_build_memory_mb_for(240_000), 256);
        config.index = IndexKind::Ivfflat;
        assert_eq!(config.index_build_memory_mb_for(240_000), 64);
    }

    #[test]
    fn dimensions_follow_pgvector_index_limits() {
        let config = |dim: u32, precision| {
            let mut c = PgVectorConfig::new(Dimension::new(dim).unwrap());
            c.index_precision = precision;
            c
        };
        assert!(!config(2000, IndexPrecision::Auto).half_precision_index());
        assert!(config(2001, IndexPrecision::Auto).half_precision_index());
        assert!(config(768, IndexPrecision::Half).half_precision_index());
        assert!(config(3072, IndexPrecision::Auto).validate().is_ok());
        assert!(config(4000, IndexPrecision::Half).validate().is_ok());
        let err = config(4001, IndexPrecision::Auto).validate().unwrap_err();
        assert!(
            matches!(err, GatewayError::Configuration { ref variable, ref accepted, .. }
                if variable == "EMBEDDING_DIM" && accepted.contains("at most 4000")),
            "{err}"
        );
        let err = config(3072, IndexPrecision::Single).validate().unwrap_err();
        assert!(
            matches!(err, GatewayError::Configuration { ref variable, .. }
                if variable == "PGVECTOR_INDEX_PRECISION"),
            "{err}"
        );
    }

    #[test]
    fn ef_construction_follows_m_unless_set() {
        let mut config = PgVectorConfig::new(dim());
        assert_eq!(config.effective_ef_construction(), 64);
        config.hnsw_m = 40;
        assert_eq!(config.effective_ef_construction(), 80);
        config.hnsw_ef_construction = Some(200);
        assert_eq!(
            config.vector_index(),
            PgIndex::Hnsw {
                m: 40,
                ef_construction: 200
            }
        );
        config.index = IndexKind::Ivfflat;
        assert_eq!(config.vector_index(), PgIndex::IvfFlat { lists: 100 });
    }
}
