//! Every environment variable the gateway reads, declared once: name, what it accepts, its
//! default and the field it sets. Reading, validation messages, `Debug`, the builder and the
//! README's settings table (`cargo xtask docs`) all come from these declarations.

use std::time::Duration;

use std::path::{Path, PathBuf};

use vectorgate_adapter_milvus::MilvusConfig;
use vectorgate_adapter_pgvector::{
    limits, validate_identifier, DatabaseUrl, IndexKind, IndexPrecision, IDENTIFIER_ACCEPTED,
};
use vectorgate_domain::{Dimension, Metric};

use super::kind::Kind;
pub use super::milvus_vars::*;
use super::var::{DefaultDoc, Var, Variable};
use super::{ReadFrom, VectorStoreMode};

fn identifier(name: &str) -> bool {
    validate_identifier("", name).is_ok()
}

pub(super) fn any_text(_: &str) -> bool {
    true
}

pub(super) fn host_name(host: &str) -> bool {
    !host.is_empty() && (!host.contains(['/', ' ', ':']) || host.starts_with('['))
}

pub(super) fn collection_name(name: &str) -> bool {
    vectorgate_adapter_milvus::validate_collection_name(name).is_ok()
}

pub(super) fn milvus_token(token: &str) -> bool {
    vectorgate_adapter_milvus::check_token(token).is_ok()
}

pub(super) fn file_path(path: &str) -> bool {
    !path.is_empty()
}

pub(super) fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_deref().map(Path::display).map(|p| p.to_string())
}

const fn range_u32(range: std::ops::RangeInclusive<u32>) -> Kind {
    Kind::int(*range.start() as u64, *range.end() as u64)
}

const fn range_usize(range: std::ops::RangeInclusive<usize>) -> Kind {
    Kind::int(*range.start() as u64, *range.end() as u64)
}

pub(super) const MILLIS: Kind = Kind::Millis { min: 1 };

pub static VECTOR_STORE_MODE: Var<VectorStoreMode> = Var::new(
    "VECTOR_STORE_MODE",
    Kind::Choice {
        accepted: VectorStoreMode::ACCEPTED,
    },
    "which stores are read and written",
    |s| Some(s.mode),
    |s, v| s.mode = v,
);

pub static EMBEDDING_DIM: Var<Dimension> = Var::new(
    "EMBEDDING_DIM",
    Kind::int(1, Dimension::MAX as u64),
    "dimension of every embedding; both schemas must match it",
    |s| Some(s.pgvector.dimension),
    |s, v| {
        s.pgvector.dimension = v;
        s.milvus.dimension = v;
    },
)
.default_doc(DefaultDoc::Required("the embedding model's dimension"));

pub static VECTOR_METRIC: Var<Metric> = Var::new(
    "VECTOR_METRIC",
    Kind::Choice {
        accepted: Metric::ACCEPTED,
    },
    "similarity metric of both stores",
    |s| Some(s.pgvector.metric),
    |s, v| {
        s.pgvector.metric = v;
        s.milvus.metric = v;
    },
)
.alias("MILVUS_METRIC");

pub static DATABASE_URL: Var<DatabaseUrl> = Var::new(
    "DATABASE_URL",
    Kind::Parsed {
        accepted: "postgres://user[:password]@host[:port]/db (special characters in the password percent-encoded)",
    },
    "PostgreSQL connection",
    |s| s.pgvector.database_url.clone(),
    |s, v| s.pgvector.database_url = Some(v),
)
.secret()
.default_doc(DefaultDoc::Text("(required in pgvector and dual modes)"));

pub static PGVECTOR_TABLE: Var<String> = Var::new(
    "PGVECTOR_TABLE",
    Kind::Text {
        accepted: IDENTIFIER_ACCEPTED,
        check: identifier,
    },
    "table holding the embeddings",
    |s| Some(s.pgvector.table.clone()),
    |s, v| s.pgvector.table = v,
);

pub static PGVECTOR_INDEX: Var<IndexKind> = Var::new(
    "PGVECTOR_INDEX",
    Kind::Choice {
        accepted: "hnsw or ivfflat",
    },
    "vector index type",
    |s| Some(s.pgvector.index),
    |s, v| s.pgvector.index = v,
);

pub static PGVECTOR_INDEX_PRECISION: Var<IndexPrecision> = Var::new(
    "PGVECTOR_INDEX_PRECISION",
    Kind::Choice {
        accepted: "auto, single or half",
    },
    "precision of the vector index (the column keeps full precision): auto is single up to \
     2,000 dimensions and half (halfvec, up to 4,000) above, pgvector's index limits",
    |s| Some(s.pgvector.index_precision),
    |s, v| s.pgvector.index_precision = v,
);

pub static PGVECTOR_PARTITIONS: Var<u32> = Var::new(
    "PGVECTOR_PARTITIONS",
    range_u32(limits::TENANT_PARTITIONS),
    "hash partitions by tenant of a new table, each with its own indexes, so a search \
     walks only its tenant's partition (0: one table); when set, an existing table with \
     another layout is refused",
    |s| s.pgvector.tenant_partitions,
    |s, v| s.pgvector.tenant_partitions = Some(v),
)
.default_doc(DefaultDoc::Text(
    "16 for a new table; an existing one keeps its layout",
));

pub static ALLOW_TENANT_MOVE: Var<bool> = Var::new(
    "ALLOW_TENANT_MOVE",
    Kind::Choice {
        accepted: "on or off",
    },
    "whether an upsert may move an existing chunk to another tenant (off: refused with a \
     tenant conflict, nothing written; in milvus mode a best-effort check, as Milvus has no \
     transactions)",
    |s| Some(s.pgvector.allow_tenant_move),
    |s, v| {
        s.pgvector.allow_tenant_move = v;
        s.milvus.allow_tenant_move = v;
    },
);

pub static PGVECTOR_HNSW_M: Var<u32> = Var::new(
    "PGVECTOR_HNSW_M",
    range_u32(limits::HNSW_M),
    "HNSW graph degree",
    |s| Some(s.pgvector.hnsw_m),
    |s, v| s.pgvector.hnsw_m = v,
);

pub static PGVECTOR_HNSW_EF_CONSTRUCTION: Var<u32> = Var::new(
    "PGVECTOR_HNSW_EF_CONSTRUCTION",
    range_u32(limits::HNSW_EF_CONSTRUCTION),
    "HNSW build candidate list",
    |s| s.pgvector.hnsw_ef_construction,
    |s, v| s.pgvector.hnsw_ef_construction = Some(v),
)
.note("and >= 2*PGVECTOR_HNSW_M")
.default_doc(DefaultDoc::Text("max(64, 2*PGVECTOR_HNSW_M)"));

pub static PGVECTOR_HNSW_EF_SEARCH: Var<u32> = Var::new(
    "PGVECTOR_HNSW_EF_SEARCH",
    range_u32(limits::EF_SEARCH),
    "HNSW search candidate list (never below k)",
    |s| Some(s.pgvector.ef_search),
    |s, v| s.pgvector.ef_search = v,
);

pub static PGVECTOR_IVFFLAT_LISTS: Var<u32> = Var::new(
    "PGVECTOR_IVFFLAT_LISTS",
    range_u32(limits::IVFFLAT_LISTS),
    "IVFFlat lists",
    |s| Some(s.pgvector.ivfflat_lists),
    |s, v| s.pgvector.ivfflat_lists = v,
);

pub static PGVECTOR_IVFFLAT_PROBES: Var<u32> = Var::new(
    "PGVECTOR_IVFFLAT_PROBES",
    range_u32(limits::IVFFLAT_PROBES),
    "IVFFlat lists probed per search",
    |s| Some(s.pgvector.ivfflat_probes),
    |s, v| s.pgvector.ivfflat_probes = v,
);

pub static PGVECTOR_MAX_SCAN_TUPLES: Var<u32> = Var::new(
    "PGVECTOR_MAX_SCAN_TUPLES",
    range_u32(limits::MAX_SCAN_TUPLES),
    "bound of pgvector 0.8 iterative index scans",
    |s| Some(s.pgvector.max_scan_tuples),
    |s, v| s.pgvector.max_scan_tuples = v,
);

pub static PGVECTOR_EXACT_SEARCH_MAX_ROWS: Var<u32> = Var::new(
    "PGVECTOR_EXACT_SEARCH_MAX_ROWS",
    range_u32(limits::EXACT_SEARCH_MAX_ROWS),
    "scopes up to this many rows are searched exactly (0: always the vector index)",
    |s| Some(s.pgvector.exact_search_max_rows),
    |s, v| s.pgvector.exact_search_max_rows = v,
);

pub static PGVECTOR_UPSERT_CONCURRENCY: Var<usize> = Var::new(
    "PGVECTOR_UPSERT_CONCURRENCY",
    range_usize(limits::UPSERT_CONCURRENCY),
    "upsert batches of one call in flight",
    |s| Some(s.pgvector.upsert_concurrency),
    |s, v| s.pgvector.upsert_concurrency = v,
)
.note("and <= PGVECTOR_MAX_CONNECTIONS");

pub static PGVECTOR_INDEX_BUILD_MEMORY_MB: Var<u32> = Var::new(
    "PGVECTOR_INDEX_BUILD_MEMORY_MB",
    range_u32(limits::INDEX_BUILD_MEMORY_MB),
    "the most maintenance_work_mem (MiB) a bulk load's index build may take; it asks for what the table's HNSW graph needs (rows x (vector + links)), within this cap",
    |s| Some(s.pgvector.index_build_memory_mb),
    |s, v| s.pgvector.index_build_memory_mb = v,
);

pub static PGVECTOR_MAX_CONNECTIONS: Var<u32> = Var::new(
    "PGVECTOR_MAX_CONNECTIONS",
    range_u32(limits::MAX_CONNECTIONS),
    "pool size",
    |s| Some(s.pgvector.max_connections),
    |s, v| s.pgvector.max_connections = v,
);

pub static PGVECTOR_ACQUIRE_TIMEOUT_MS: Var<Duration> = Var::new(
    "PGVECTOR_ACQUIRE_TIMEOUT_MS",
    MILLIS,
    "wait for a pooled connection",
    |s| Some(s.pgvector.acquire_timeout),
    |s, v| s.pgvector.acquire_timeout = v,
);

pub static PGVECTOR_CONNECT_TIMEOUT_MS: Var<Duration> = Var::new(
    "PGVECTOR_CONNECT_TIMEOUT_MS",
    MILLIS,
    "TCP/TLS connect timeout",
    |s| Some(s.pgvector.connect_timeout),
    |s, v| s.pgvector.connect_timeout = v,
);

pub static PGVECTOR_STATEMENT_TIMEOUT_MS: Var<Duration> = Var::new(
    "PGVECTOR_STATEMENT_TIMEOUT_MS",
    MILLIS,
    "statement_timeout of every statement (a lock wait, a runaway query); keep it well under DUAL_INTENT_LEASE_MS",
    |s| Some(s.pgvector.statement_timeout),
    |s, v| s.pgvector.statement_timeout = v,
)
.note("and <= 2147483647");

pub static PGVECTOR_INDEX_BUILD_TIMEOUT_MS: Var<Duration> = Var::new(
    "PGVECTOR_INDEX_BUILD_TIMEOUT_MS",
    MILLIS,
    "statement_timeout of bulk loads (COPY) and index builds (bootstrap, import)",
    |s| Some(s.pgvector.index_build_timeout),
    |s, v| s.pgvector.index_build_timeout = v,
)
.note("and <= 2147483647");

pub static UPSERT_BATCH_SIZE: Var<usize> = Var::new(
    "UPSERT_BATCH_SIZE",
    range_usize(limits::BATCH_SIZE),
    "rows per write request (both stores)",
    |s| Some(s.pgvector.batch_size),
    |s, v| {
        s.pgvector.batch_size = v;
        s.milvus.batch_size = v;
    },
);

pub static DUAL_READ_FROM: Var<ReadFrom> = Var::new(
    "DUAL_READ_FROM",
    Kind::Choice {
        accepted: ReadFrom::ACCEPTED,
    },
    "store that answers searches in dual mode",
    |s| Some(s.dual.read_from),
    |s, v| s.dual.read_from = v,
);

pub static DUAL_SHADOW_READ_RATE: Var<f64> = Var::new(
    "DUAL_SHADOW_READ_RATE",
    Kind::Number { min: 0.0, max: 1.0 },
    "fraction of searches also sent to the other store (overlap recorded)",
    |s| Some(s.dual.shadow_read_rate),
    |s, v| s.dual.shadow_read_rate = v,
);

pub static DUAL_OUTBOX_TABLE: Var<String> = Var::new(
    "DUAL_OUTBOX_TABLE",
    Kind::Text {
        accepted: IDENTIFIER_ACCEPTED,
        check: identifier,
    },
    "PostgreSQL table of pending Milvus writes",
    |s| Some(s.dual.outbox_table.clone()),
    |s, v| s.dual.outbox_table = v,
);

pub static DUAL_INTENT_LEASE_MS: Var<Duration> = Var::new(
    "DUAL_INTENT_LEASE_MS",
    Kind::Millis { min: 1000 },
    "how long a write in flight holds its ids before the relay may take them over (above the longest write)",
    |s| Some(s.dual.intent_lease),
    |s, v| s.dual.intent_lease = v,
);

pub static DUAL_RELAY: Var<bool> = Var::new(
    "DUAL_RELAY",
    Kind::Choice { accepted: "on or off" },
    "whether a dual-mode gateway replays the outbox in the background (off: run `vectorgate relay`)",
    |s| Some(s.dual.relay),
    |s, v| s.dual.relay = v,
);

pub static DUAL_RELAY_INTERVAL_MS: Var<Duration> = Var::new(
    "DUAL_RELAY_INTERVAL_MS",
    Kind::Millis { min: 10 },
    "how often the relay looks for work unwoken; how soon a standby process takes over",
    |s| Some(s.dual.relay_interval),
    |s, v| s.dual.relay_interval = v,
);

pub static SYNC_BATCH_SIZE: Var<usize> = Var::new(
    "SYNC_BATCH_SIZE",
    Kind::int(1, 100_000),
    "outbox entries per relay pass (the relay, sync, backfill)",
    |s| Some(s.dual.relay_batch_size),
    |s, v| s.dual.relay_batch_size = v,
);

pub static DUAL_MAX_LAG_MS: Var<Duration> = Var::new(
    "DUAL_MAX_LAG_MS",
    MILLIS,
    "outbox lag above which `vectorgate health` exits 1",
    |s| Some(s.dual.max_lag),
    |s, v| s.dual.max_lag = v,
);

pub static DUAL_RECONCILE_INTERVAL_MS: Var<Duration> = Var::new(
    "DUAL_RECONCILE_INTERVAL_MS",
    Kind::Millis { min: 0 },
    "how often the relay compares a window of both stores (0: never)",
    |s| Some(s.dual.reconcile_interval),
    |s, v| s.dual.reconcile_interval = v,
);

pub static DUAL_RECONCILE_ROWS: Var<usize> = Var::new(
    "DUAL_RECONCILE_ROWS",
    Kind::int(1, 100_000),
    "rows per compared window",
    |s| Some(s.dual.reconcile_rows),
    |s, v| s.dual.reconcile_rows = v,
);

/// Every variable, in the README's order.
pub static VARIABLES: &[&dyn Variable] = &[
    &VECTOR_STORE_MODE,
    &EMBEDDING_DIM,
    &VECTOR_METRIC,
    &ALLOW_TENANT_MOVE,
    &DATABASE_URL,
    &PGVECTOR_TABLE,
    &PGVECTOR_INDEX,
    &PGVECTOR_INDEX_PRECISION,
    &PGVECTOR_PARTITIONS,
    &PGVECTOR_HNSW_M,
    &PGVECTOR_HNSW_EF_CONSTRUCTION,
    &PGVECTOR_HNSW_EF_SEARCH,
    &PGVECTOR_IVFFLAT_LISTS,
    &PGVECTOR_IVFFLAT_PROBES,
    &PGVECTOR_MAX_SCAN_TUPLES,
    &PGVECTOR_EXACT_SEARCH_MAX_ROWS,
    &PGVECTOR_UPSERT_CONCURRENCY,
    &PGVECTOR_INDEX_BUILD_MEMORY_MB,
    &PGVECTOR_MAX_CONNECTIONS,
    &PGVECTOR_ACQUIRE_TIMEOUT_MS,
    &PGVECTOR_CONNECT_TIMEOUT_MS,
    &PGVECTOR_STATEMENT_TIMEOUT_MS,
    &PGVECTOR_INDEX_BUILD_TIMEOUT_MS,
    &UPSERT_BATCH_SIZE,
    &MILVUS_URI,
    &MILVUS_HOST,
    &MILVUS_PORT,
    &MILVUS_TLS_CA_FILE,
    &MILVUS_TLS_SERVER_NAME,
    &MILVUS_TLS_CLIENT_CERT_FILE,
    &MILVUS_TLS_CLIENT_KEY_FILE,
    &MILVUS_USERNAME,
    &MILVUS_PASSWORD,
    &MILVUS_TOKEN,
    &MILVUS_DATABASE,
    &MILVUS_COLLECTION,
    &MILVUS_INDEX_NLIST,
    &MILVUS_SEARCH_NPROBE,
    &MILVUS_EXPECTED_ROWS,
    &MILVUS_CONSISTENCY,
    &MILVUS_CONNECT_TIMEOUT_MS,
    &MILVUS_CALL_TIMEOUT_MS,
    &MILVUS_UPSERT_CONCURRENCY,
    &MILVUS_PARTITION_KEY,
    &MILVUS_NUM_PARTITIONS,
    &DUAL_READ_FROM,
    &DUAL_SHADOW_READ_RATE,
    &DUAL_OUTBOX_TABLE,
    &DUAL_INTENT_LEASE_MS,
    &DUAL_RELAY,
    &DUAL_RELAY_INTERVAL_MS,
    &SYNC_BATCH_SIZE,
    &DUAL_MAX_LAG_MS,
    &DUAL_RECONCILE_INTERVAL_MS,
    &DUAL_RECONCILE_ROWS,
];

/// The defaults the adapters themselves hold (the one home of every default).
pub(super) fn adapter_defaults(
    dimension: Dimension,
) -> (vectorgate_adapter_pgvector::PgVectorConfig, MilvusConfig) {
    let mut milvus = MilvusConfig::new("localhost", 19530, dimension);
    milvus.batch_size = vectorgate_adapter_pgvector::PgVectorConfig::new(dimension).batch_size;
    (
        vectorgate_adapter_pgvector::PgVectorConfig::new(dimension),
        milvus,
    )
}
