//! Settings of the Milvus adapter and the derivation of its index/search defaults.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use strum::{Display, EnumString, IntoStaticStr};
use vectorgate_domain::{Dimension, GatewayError, Metric};

use crate::address::{MilvusTls, MilvusUri};

/// Default collection name (the pgvector table's default, so both stores hold one name).
pub const DEFAULT_COLLECTION: &str = "knowledge_chunks";

/// Milvus's largest accepted `nlist` for IVF indexes.
pub const MAX_NLIST: u32 = 65_536;

/// Consistency level of reads (search, query, count).
///
/// - `Strong`: waits until every write acknowledged anywhere before the read is visible
///   (slowest; the server waits for its time tick, up to ~200 ms on a quiet server).
/// - `Session` (default): this client sees its own acknowledged writes. The client
///   remembers the timestamp of its newest write reply per collection and sends it as the
///   read's `guarantee_timestamp` (the client's `SessionFence`), so the server waits only
///   for that write, not for everyone's. Writes made by other processes may be missed for a
///   moment.
/// - `Bounded`: may miss writes of the last few seconds (Milvus's own default).
/// - `Eventually`: reads whatever is there now (fastest).
///
/// Parsed case-insensitively (`eventual` is accepted for `Eventually`); an unknown name is a
/// configuration error about `MILVUS_CONSISTENCY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Display, EnumString, IntoStaticStr)]
#[strum(
    ascii_case_insensitive,
    parse_err_ty = GatewayError,
    parse_err_fn = unknown_consistency
)]
pub enum Consistency {
    Strong,
    #[default]
    Session,
    Bounded,
    #[strum(to_string = "Eventually", serialize = "eventual")]
    Eventually,
}

fn unknown_consistency(value: &str) -> GatewayError {
    GatewayError::configuration("MILVUS_CONSISTENCY", value, Consistency::ACCEPTED)
}

impl Consistency {
    pub const ACCEPTED: &'static str = "Strong, Session, Bounded or Eventually";

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How a new collection spreads its rows over partitions (`MILVUS_PARTITION_KEY`).
///
/// Parsed case-insensitively; an unknown name is a configuration error about
/// `MILVUS_PARTITION_KEY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Display, EnumString, IntoStaticStr)]
#[strum(
    serialize_all = "lowercase",
    ascii_case_insensitive,
    parse_err_ty = GatewayError,
    parse_err_fn = unknown_partition_key
)]
pub enum PartitionKey {
    /// `tenant_id` is Milvus's partition key: rows are hashed by tenant into
    /// `num_partitions` partitions, and a search (always filtered by tenant) reads only the
    /// partition holding its tenant. Refused on Milvus before 2.4, whose upsert puts such
    /// rows in the wrong partition ([`crate::CollectionLayout::server_problem`]).
    Tenant,
    /// No partition key: every search reads every segment of the collection. What a new
    /// collection gets, unset, on Milvus before 2.4, which cannot keep keyed rows.
    None,
}

fn unknown_partition_key(value: &str) -> GatewayError {
    GatewayError::configuration("MILVUS_PARTITION_KEY", value, PartitionKey::ACCEPTED)
}

impl PartitionKey {
    pub const ACCEPTED: &'static str = "tenant or none";

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Partitions of a partition-key collection when `MILVUS_NUM_PARTITIONS` is unset.
pub const DEFAULT_NUM_PARTITIONS: u32 = 64;
/// Milvus's own cap on partitions per collection (`rootCoord.maxPartitionNum`).
pub const MAX_NUM_PARTITIONS: u32 = 4096;

/// Connection, collection and index settings of [`crate::MilvusStore`].
///
/// `Debug` never prints the password or token (they are [`SecretString`]s).
#[derive(Debug, Clone)]
pub struct MilvusConfig {
    pub host: String,
    pub port: u16,
    /// Whether the connection is TLS (an `https://` `MILVUS_URI`).
    pub use_tls: bool,
    /// CA, server name and client identity of a TLS connection.
    pub tls: MilvusTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The token sent as the credential: an API key, or `user:password`.
    pub token: Option<SecretString>,
    pub database: Option<String>,
    pub collection: String,
    pub dimension: Dimension,
    pub metric: Metric,
    /// IVF_FLAT `nlist` (number of clusters). `None` derives it from `expected_rows`,
    /// see [`MilvusConfig::effective_nlist`].
    pub index_nlist: Option<u32>,
    /// Clusters visited per search. `None` derives it from the nlist, see
    /// [`MilvusConfig::effective_nprobe`]. `Some(nlist)` makes IVF_FLAT search exact.
    pub search_nprobe: Option<u32>,
    /// Expected number of rows, used only to derive `nlist`.
    pub expected_rows: u64,
    pub consistency: Consistency,
    /// Bound on establishing the gRPC connection.
    pub connect_timeout: Duration,
    /// Deadline of every single gRPC call.
    pub call_timeout: Duration,
    /// Most rows per upsert request (also bounded by the 64 MB request limit).
    pub batch_size: usize,
    /// Upsert requests in flight at once within one `upsert_vectors` call. Milvus acks a
    /// request only after it is written to its log; overlapping requests hide that latency.
    pub upsert_concurrency: usize,
    /// When false, an upsert first reads the stored tenant of its ids (at `consistency`)
    /// and refuses to move a chunk to another tenant. Best effort: Milvus has no
    /// transactions, so a move racing that read is not caught.
    pub allow_tenant_move: bool,
    /// Partition key of a collection this adapter creates. `None` (unset): a new collection
    /// is keyed by tenant where the server keeps keyed rows (Milvus 2.4 and later) and has
    /// no key before ([`crate::CollectionLayout::for_new_collection`]), and an existing one
    /// is accepted whatever its layout. Given explicitly, an existing collection with
    /// another layout is refused.
    pub partition_key: Option<PartitionKey>,
    /// Partitions of a new partition-key collection; checked against an existing one only
    /// when `partition_key` is given.
    pub num_partitions: u32,
}

impl MilvusConfig {
    pub const DEFAULT_EXPECTED_ROWS: u64 = 100_000;
    pub const DEFAULT_BATCH_SIZE: usize = 1000;
    pub const DEFAULT_UPSERT_CONCURRENCY: usize = 4;

    pub fn new(host: impl Into<String>, port: u16, dimension: Dimension) -> Self {
        Self {
            host: host.into(),
            port,
            use_tls: false,
            tls: MilvusTls::default(),
            username: None,
            password: None,
            token: None,
            database: None,
            collection: DEFAULT_COLLECTION.to_string(),
            dimension,
            metric: Metric::default(),
            index_nlist: None,
            search_nprobe: None,
            expected_rows: Self::DEFAULT_EXPECTED_ROWS,
            consistency: Consistency::default(),
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            batch_size: Self::DEFAULT_BATCH_SIZE,
            upsert_concurrency: Self::DEFAULT_UPSERT_CONCURRENCY,
            allow_tenant_move: false,
            partition_key: None,
            num_partitions: DEFAULT_NUM_PARTITIONS,
        }
    }

    /// The server's URI (`http://host:port` or `https://host:port`), as named in
    /// connection errors.
    pub fn endpoint(&self) -> String {
        self.uri().to_string()
    }

    pub fn uri(&self) -> MilvusUri {
        MilvusUri {
            tls: self.use_tls,
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// Points the configuration at `uri` (scheme, host and port).
    pub fn set_uri(&mut self, uri: MilvusUri) {
        self.use_tls = uri.tls;
        self.host = uri.host;
        self.port = uri.port;
    }

    /// Checks what can be checked without connecting: the TLS files (readable PEM, client
    /// certificate and key together, none without TLS) and the token. Errors name the
    /// variable to change.
    pub fn validate_connection(&self) -> Result<(), GatewayError> {
        self.tls.load(self.use_tls)?;
        if let Some(token) = &self.token {
            check_token(token.expose_secret())?;
        }
        Ok(())
    }

    /// The IVF_FLAT `nlist`: the configured one, else `4 * sqrt(expected_rows)` (Milvus's
    /// sizing advice), clamped to `16..=65536`.
    ///
    /// Trade-off: more lists make each list shorter (a search that probes a fixed number of
    /// lists reads fewer vectors: faster) but scatter a query's true neighbours over more
    /// lists (lower recall at the same nprobe); fewer lists the reverse. Index build time
    /// grows with nlist (k-means).
    pub fn effective_nlist(&self) -> u32 {
        if let Some(nlist) = self.index_nlist {
            return nlist.clamp(1, MAX_NLIST);
        }
        let derived = (4.0 * (self.expected_rows as f64).sqrt()).round() as u64;
        derived.clamp(16, MAX_NLIST as u64) as u32
    }

    /// The `nprobe` sent with every search: the configured one (capped at nlist), else
    /// derived from nlist and the expected rows (`derive_nprobe`).
    pub fn effective_nprobe(&self) -> u32 {
        let nlist = self.effective_nlist();
        match self.search_nprobe {
            Some(nprobe) => nprobe.clamp(1, nlist),
            None => derive_nprobe(nlist, self.expected_rows),
        }
    }

    /// Settings for an exact IVF_FLAT search (every list probed), e.g. for parity tests.
    pub fn exact_search(mut self) -> Self {
        self.search_nprobe = Some(self.effective_nlist());
        self
    }

    /// Rows per upsert request: at most `batch_size`, and few enough that a request stays
    /// under half of Milvus's 64 MB gRPC request limit (`MAX_REQUEST_BYTES`, 32 MB).
    pub fn rows_per_request(&self) -> usize {
        let by_bytes = MAX_REQUEST_BYTES / bytes_per_row(self.dimension);
        self.batch_size.clamp(1, by_bytes.max(1))
    }
}

/// A token is sent as gRPC metadata: a line break or other control character would be
/// refused by the transport (or cut the header), so it is refused here, without echoing it.
pub fn check_token(token: &str) -> Result<(), GatewayError> {
    if token.is_empty() || token.chars().any(|c| c.is_control()) {
        return Err(GatewayError::configuration(
            "MILVUS_TOKEN",
            "***",
            "one line without control characters (a line break inside the token?)",
        ));
    }
    Ok(())
}

/// Budget of one write request. Milvus refuses requests over 64 MB (`proxy.grpc.
/// serverMaxRecvSize`); half of that leaves room for protobuf framing and keeps one request
/// from monopolising the proxy.
pub const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// Budget of one reply carrying vectors: tonic's default decoding limit is 4 MB and
/// milvus-sdk-rust does not raise it, so query replies must stay below that.
pub const MAX_REPLY_BYTES: usize = 3 * 1024 * 1024;

/// Bytes one row takes on the wire: the vector plus three int64 columns.
pub fn bytes_per_row(dimension: Dimension) -> usize {
    dimension.as_usize() * 4 + 24
}

/// Vectors a default search compares, whatever the collection's size: nprobe is derived so
/// that `nprobe x rows per list` stays near this (`docs/milvus-search.md` has the figures).
pub const SEARCH_SCAN_BUDGET: u64 = 16_384;
/// Fewest lists a default search probes.
pub const MIN_DEFAULT_NPROBE: u32 = 16;

/// nprobe derived from nlist and the expected rows: enough lists to compare about
/// [`SEARCH_SCAN_BUDGET`] vectors (every list of a small collection, so it is searched
/// exactly), at least [`MIN_DEFAULT_NPROBE`], at most nlist. The cost of a search then stays
/// flat as the collection grows. Recall stays high on clustered data (real embeddings);
/// uniform random vectors, which no index can organise, get much less.
pub fn derive_nprobe(nlist: u32, expected_rows: u64) -> u32 {
    let rows_per_list = (expected_rows / u64::from(nlist.max(1))).max(1);
    let lists = SEARCH_SCAN_BUDGET.div_ceil(rows_per_list);
    lists
        .max(u64::from(MIN_DEFAULT_NPROBE))
        .min(u64::from(nlist.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config() -> MilvusConfig {
        MilvusConfig::new("h", 19530, Dimension::new(768).unwrap())
    }

    #[test]
    fn consistency_parses_case_insensitively_and_round_trips() {
        for level in [
            Consistency::Strong,
            Consistency::Session,
            Consistency::Bounded,
            Consistency::Eventually,
        ] {
            assert_eq!(level.to_string().parse::<Consistency>().unwrap(), level);
            assert_eq!(
                level
                    .to_string()
                    .to_uppercase()
                    .parse::<Consistency>()
                    .unwrap(),
                level
            );
        }
        assert_eq!(Consistency::default(), Consistency::Session);
        let err = "sometimes".parse::<Consistency>().unwrap_err();
        assert!(err
            .to_string()
            .contains("Strong, Session, Bounded or Eventually"));
    }

    #[test]
    fn nlist_follows_the_expected_size_and_nprobe_a_flat_scan_budget() {
        let mut c = config();
        c.expected_rows = 20_000;
        assert_eq!(c.effective_nlist(), 566);
        assert_eq!(
            c.effective_nprobe(),
            469,
            "16,384 of 20,000 vectors compared"
        );
        c.expected_rows = 240_000;
        assert_eq!(c.effective_nlist(), 1_960);
        assert_eq!(
            c.effective_nprobe(),
            135,
            "16,384 of 240,000 vectors compared"
        );
        c.expected_rows = 10_000;
        assert_eq!(
            c.effective_nprobe(),
            c.effective_nlist(),
            "small: searched exactly"
        );
        c.expected_rows = 10_000_000;
        assert_eq!(c.effective_nprobe(), 21, "the work stays flat as rows grow");
        assert_eq!(derive_nprobe(1, 10), 1, "never more than nlist");
        assert_eq!(derive_nprobe(65_536, 1 << 40), 16, "never fewer than 16");
        c.expected_rows = 10;
        assert_eq!(
            c.effective_nlist(),
            16,
            "small collections still get 16 lists"
        );
        c.expected_rows = u64::MAX;
        assert_eq!(c.effective_nlist(), MAX_NLIST);
        c.index_nlist = Some(1024);
        c.search_nprobe = Some(5000);
        assert_eq!(c.effective_nprobe(), 1024, "nprobe is capped at nlist");
        let exact = c.exact_search();
        assert_eq!(exact.effective_nprobe(), exact.effective_nlist());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let mut c = config();
        c.username = Some("root".into());
        c.password = Some(SecretString::from("hunter2-password".to_string()));
        c.token = Some(SecretString::from("root:token-secret".to_string()));
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2-password") && !text.contains("token-secret"));
        assert!(text.contains("root"));
        assert_eq!(c.endpoint(), "http://h:19530");
    }

    #[test]
    fn tokens_with_a_line_break_are_refused_without_being_echoed() {
        let mut c = config();
        c.token = Some(SecretString::from("root:pass\nword".to_string()));
        let err = c.validate_connection().unwrap_err().to_string();
        assert!(
            err.contains("MILVUS_TOKEN") && !err.contains("pass"),
            "{err}"
        );
        c.token = Some(SecretString::from("root:password".to_string()));
        c.validate_connection().unwrap();
    }

    #[test]
    fn the_uri_names_scheme_host_and_port() {
        let mut c = config();
        c.set_uri(MilvusUri::parse("https://milvus.internal:443").unwrap());
        assert!(c.use_tls);
        assert_eq!(c.endpoint(), "https://milvus.internal:443");
        assert_eq!((c.host.as_str(), c.port), ("milvus.internal", 443));
    }

    #[test]
    fn requests_stay_under_the_request_size_budget() {
        let mut config = MilvusConfig::new("milvus.test", 19530, Dimension::new(4).unwrap());
        assert_eq!(config.rows_per_request(), 1000);
        config.dimension = Dimension::new(16_000).unwrap();
        let rows = config.rows_per_request();
        assert!(rows < 1000);
        assert!(rows * bytes_per_row(config.dimension) <= MAX_REQUEST_BYTES);
        assert!((rows + 1) * bytes_per_row(config.dimension) > MAX_REQUEST_BYTES);
    }
}
