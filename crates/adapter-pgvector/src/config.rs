use std::fmt;
use std::time::Duration;

use vectorgate_domain::{Dimension, GatewayError, Metric};

/// The approximate-nearest-neighbour index on the `embedding` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgIndex {
    /// HNSW: better recall/speed trade-off, slower to build; pgvector's recommendation.
    Hnsw { m: u32, ef_construction: u32 },
    /// IVFFlat: fast to build; `lists` should follow the table's size (rows/1000 up to 1M rows).
    IvfFlat { lists: u32 },
}

impl Default for PgIndex {
    fn default() -> Self {
        PgIndex::Hnsw {
            m: 16,
            ef_construction: 64,
        }
    }
}

impl PgIndex {
    /// pgvector's access method name (`hnsw` or `ivfflat`).
    pub fn access_method(&self) -> &'static str {
        match self {
            PgIndex::Hnsw { .. } => "hnsw",
            PgIndex::IvfFlat { .. } => "ivfflat",
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

    fn validate(&self) -> Result<(), GatewayError> {
        // Ranges are pgvector's own limits; checking them here turns a late SQL error into
        // a configuration error at start-up.
        match *self {
            PgIndex::Hnsw { m, ef_construction } => {
                if !(2..=100).contains(&m) {
                    return Err(GatewayError::configuration(
                        "PGVECTOR_HNSW_M",
                        m.to_string(),
                        "an integer in 2..=100",
                    ));
                }
                if !(4..=1000).contains(&ef_construction) || ef_construction < 2 * m {
                    return Err(GatewayError::configuration(
                        "PGVECTOR_HNSW_EF_CONSTRUCTION",
                        ef_construction.to_string(),
                        format!("an integer in 4..=1000 and at least 2*m = {}", 2 * m),
                    ));
                }
            }
            PgIndex::IvfFlat { lists } => {
                if !(1..=32_768).contains(&lists) {
                    return Err(GatewayError::configuration(
                        "PGVECTOR_IVFFLAT_LISTS",
                        lists.to_string(),
                        "an integer in 1..=32768",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// pgvector operator and operator class for a metric.
pub(crate) fn operator(metric: Metric) -> &'static str {
    match metric {
        // Negative inner product: smaller is more similar, so ORDER BY ascending works.
        Metric::Ip => "<#>",
        Metric::Cosine => "<=>",
        Metric::L2 => "<->",
    }
}

pub(crate) fn opclass(metric: Metric) -> &'static str {
    match metric {
        Metric::Ip => "vector_ip_ops",
        Metric::Cosine => "vector_cosine_ops",
        Metric::L2 => "vector_l2_ops",
    }
}

pub(crate) fn metric_of_opclass(opclass: &str) -> Option<Metric> {
    match opclass {
        "vector_ip_ops" => Some(Metric::Ip),
        "vector_cosine_ops" => Some(Metric::Cosine),
        "vector_l2_ops" => Some(Metric::L2),
        _ => None,
    }
}

/// Converts pgvector's distance for `metric` into the port's score (higher is more similar).
pub(crate) fn distance_to_score(metric: Metric, distance: f64) -> f32 {
    match metric {
        Metric::Ip => (-distance) as f32,
        Metric::Cosine => (1.0 - distance) as f32,
        Metric::L2 => (-distance) as f32,
    }
}

/// Settings of the pgvector store.
#[derive(Clone)]
pub struct PgVectorConfig {
    /// `postgres://user[:password]@host:port/db`. Never printed with its password.
    pub database_url: String,
    /// Table holding the embeddings; must match `^[a-z_][a-z0-9_]{0,62}$`.
    pub table: String,
    pub dimension: Dimension,
    pub metric: Metric,
    pub index: PgIndex,
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
    /// `maintenance_work_mem` (MiB) for building the vector index in `bulk_load`. An HNSW
    /// graph that does not fit is built far more slowly.
    pub index_build_memory_mb: u32,
}

impl PgVectorConfig {
    /// Defaults: table `knowledge_chunks`, metric IP, HNSW m=16 ef_construction=64,
    /// ef_search 100, exact search for scopes of at most 10,000 rows, batches of 1000
    /// rows, 10 connections. With these, recall@10 is 1.0 on the benchmark's data set
    /// (scopes of 1,667 and 5,000 rows of random 768-d vectors, on which HNSW alone at
    /// ef_search 100 reaches only about 0.3: see "ef_sweep" in target/bench/results.json).
    pub fn new(database_url: impl Into<String>, dimension: Dimension) -> Self {
        Self {
            database_url: database_url.into(),
            table: "knowledge_chunks".to_string(),
            dimension,
            metric: Metric::default(),
            index: PgIndex::default(),
            ef_search: 100,
            ivfflat_probes: 10,
            max_scan_tuples: 20_000,
            exact_search_max_rows: 10_000,
            batch_size: 1000,
            upsert_concurrency: 2,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            index_build_memory_mb: 512,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), GatewayError> {
        validate_identifier(&self.table)?;
        self.index.validate()?;
        if !(1..=1000).contains(&self.ef_search) {
            return Err(GatewayError::configuration(
                "PGVECTOR_EF_SEARCH",
                self.ef_search.to_string(),
                "an integer in 1..=1000 (pgvector's range)",
            ));
        }
        if self.ivfflat_probes == 0 {
            return Err(GatewayError::configuration(
                "PGVECTOR_IVFFLAT_PROBES",
                "0",
                "an integer >= 1",
            ));
        }
        if self.max_scan_tuples == 0 || self.max_scan_tuples > i32::MAX as u32 {
            return Err(GatewayError::configuration(
                "PGVECTOR_MAX_SCAN_TUPLES",
                self.max_scan_tuples.to_string(),
                "an integer in 1..=2147483647",
            ));
        }
        if self.batch_size == 0 {
            return Err(GatewayError::configuration(
                "PGVECTOR_BATCH_SIZE",
                "0",
                "an integer >= 1",
            ));
        }
        if self.upsert_concurrency == 0 || self.upsert_concurrency > self.max_connections as usize {
            return Err(GatewayError::configuration(
                "PGVECTOR_UPSERT_CONCURRENCY",
                self.upsert_concurrency.to_string(),
                format!(
                    "an integer in 1..=max_connections ({})",
                    self.max_connections
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(GatewayError::configuration(
                "PGVECTOR_MAX_CONNECTIONS",
                "0",
                "an integer >= 1",
            ));
        }
        if !(1..=2_097_151).contains(&self.index_build_memory_mb) {
            return Err(GatewayError::configuration(
                "PGVECTOR_INDEX_BUILD_MEMORY_MB",
                self.index_build_memory_mb.to_string(),
                "an integer in 1..=2097151 (MiB)",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for PgVectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgVectorConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("table", &self.table)
            .field("dimension", &self.dimension)
            .field("metric", &self.metric)
            .field("index", &self.index)
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
            .finish()
    }
}

/// Checks a table name before it is put into SQL (identifiers cannot be bound).
pub fn validate_identifier(name: &str) -> Result<(), GatewayError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(GatewayError::configuration(
            "PGVECTOR_TABLE",
            name,
            "a lowercase identifier matching ^[a-z_][a-z0-9_]{0,62}$",
        ))
    }
}

/// The URL with its password (in the user-info part or a `password=` query parameter)
/// replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo_end = rest_start + at;
            if let Some(colon) = out[rest_start..userinfo_end].find(':') {
                out.replace_range(rest_start + colon + 1..userinfo_end, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_password() {
        let config = PgVectorConfig::new(
            "postgres://app:s3cr3t@db.example:5433/vectors?sslmode=require&password=s3cr3t",
            Dimension::new(8).unwrap(),
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("postgres://app:***@db.example:5433/vectors"));
        assert!(printed.contains("sslmode=require&password=***"));
    }

    #[test]
    fn redact_leaves_urls_without_password_alone() {
        let url = "postgres://postgres@127.0.0.1:55432/vectorgate";
        assert_eq!(redact_url(url), url);
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db",
            "the last @ of the authority ends the user info"
        );
    }

    #[test]
    fn identifiers_are_checked() {
        for ok in ["knowledge_chunks", "_t", "t1", &"a".repeat(63)] {
            assert!(validate_identifier(ok).is_ok(), "{ok}");
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
            let err = validate_identifier(bad).unwrap_err();
            assert!(
                matches!(err, GatewayError::Configuration { ref value, .. } if value == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn scores_follow_the_port_convention() {
        assert_eq!(distance_to_score(Metric::Ip, -0.75), 0.75);
        assert_eq!(distance_to_score(Metric::Cosine, 0.25), 0.75);
        assert_eq!(distance_to_score(Metric::L2, 1.5), -1.5);
        for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
            assert_eq!(metric_of_opclass(opclass(metric)), Some(metric));
        }
    }

    #[test]
    fn out_of_range_settings_are_configuration_errors() {
        let dim = Dimension::new(8).unwrap();
        let mut config = PgVectorConfig::new("postgres://h/db", dim);
        assert!(config.validate().is_ok());
        config.ef_search = 0;
        assert!(matches!(
            config.validate(),
            Err(GatewayError::Configuration { .. })
        ));
        let mut config = PgVectorConfig::new("postgres://h/db", dim);
        config.index = PgIndex::Hnsw {
            m: 16,
            ef_construction: 8,
        };
        assert!(matches!(
            config.validate(),
            Err(GatewayError::Configuration { ref variable, .. }) if variable == "PGVECTOR_HNSW_EF_CONSTRUCTION"
        ));
    }
}
