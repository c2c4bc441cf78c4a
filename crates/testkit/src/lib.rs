//! Shared support for integration tests, benchmarks and the demo. Not used by the library
//! crates themselves (dev-dependency only).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

mod own_milvus;
mod own_postgres;
mod pki;
mod ports;

pub use own_milvus::OwnMilvus;
pub use own_postgres::OwnPostgres;
pub use pki::TestPki;
pub use xtask::milvus::{ServerSettings, ServerTls};
pub use xtask::process::machine_busy;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vectorgate_domain::{
    ChunkId, Embedding, Metric, ProjectId, SearchHit, SearchScope, TenantId, VectorRecord,
};

/// Workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testkit lives at crates/testkit")
        .to_path_buf()
}

/// Settings of the local services: the process environment first, then the file named by
/// `VECTORGATE_SERVICES_ENV`, then `target/services.env` written by `cargo xtask services up`.
#[derive(Debug, Clone)]
pub struct ServicesEnv {
    values: HashMap<String, String>,
}

impl ServicesEnv {
    pub fn load() -> Self {
        let file = std::env::var("VECTORGATE_SERVICES_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join("target/services.env"));
        let mut values = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&file) {
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once('=') {
                    values.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        for key in [
            "DATABASE_URL",
            "MILVUS_HOST",
            "MILVUS_PORT",
            "RUN_MILVUS_TESTS",
        ] {
            if let Ok(v) = std::env::var(key) {
                values.insert(key.to_string(), v);
            }
        }
        Self { values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The PostgreSQL URL. Panics with instructions when it is missing: a test whose server
    /// is missing fails, it never passes silently.
    pub fn database_url(&self) -> String {
        self.get("DATABASE_URL")
            .unwrap_or_else(|| {
                panic!(
                    "DATABASE_URL is not set and target/services.env has none: \
                     start the services with `cargo xtask services up` or run `cargo xtask test`"
                )
            })
            .to_string()
    }

    pub fn milvus_host(&self) -> String {
        self.get("MILVUS_HOST").unwrap_or("127.0.0.1").to_string()
    }

    pub fn milvus_port(&self) -> u16 {
        self.get("MILVUS_PORT")
            .map(|p| p.parse().expect("MILVUS_PORT must be a port number"))
            .unwrap_or(19530)
    }
}

/// Whether the guarded Milvus suite should run. Prints the reason when it should not, so
/// the skip is visible in the test output.
pub fn milvus_tests_enabled(test: &str) -> bool {
    let on = std::env::var("RUN_MILVUS_TESTS").is_ok_and(|v| v == "1");
    if !on {
        eprintln!(
            "SKIPPED {test}: set RUN_MILVUS_TESTS=1 (cargo xtask test-milvus does) to run the \
             Milvus integration suite against a real server"
        );
    }
    on
}

/// A name unique to this process and call: tests running in parallel against one server
/// each get their own table/collection. Lowercase ASCII, digits and `_` only.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{}", std::process::id(), nanos % 100_000)
}

pub fn tenant(id: i64) -> TenantId {
    TenantId::new(id).unwrap()
}

pub fn project(id: i64) -> ProjectId {
    ProjectId::new(id).unwrap()
}

pub fn chunk(id: i64) -> ChunkId {
    ChunkId::new(id).unwrap()
}

/// A deterministic random unit vector.
pub fn unit_vector(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
    normalised((0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
}

/// `v` scaled to unit length.
fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Shape of a generated data set.
#[derive(Debug, Clone, Copy)]
pub struct DataShape {
    pub rows: usize,
    pub dim: usize,
    pub tenants: i64,
    pub projects_per_tenant: i64,
    pub seed: u64,
}

impl Default for DataShape {
    fn default() -> Self {
        Self {
            rows: 20_000,
            dim: 768,
            tenants: 4,
            projects_per_tenant: 3,
            seed: 42,
        }
    }
}

/// Deterministic records: chunk ids `first_id..first_id+rows`, tenants `1..=tenants`,
/// projects `1..=projects_per_tenant`, assigned round-robin, unit-normalised vectors.
pub fn generate_records(shape: DataShape, first_id: i64) -> Vec<VectorRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(shape.seed);
    let groups = shape.tenants * shape.projects_per_tenant;
    (0..shape.rows)
        .map(|i| {
            let g = i as i64 % groups;
            VectorRecord::new(
                chunk(first_id + i as i64),
                tenant(1 + g / shape.projects_per_tenant),
                project(1 + g % shape.projects_per_tenant),
                Embedding::new(unit_vector(&mut rng, shape.dim)).unwrap(),
            )
        })
        .collect()
}

/// How generated vectors spread over the sphere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Uniform: no structure for any ANN index to use, the worst case.
    Uniform,
    /// Gaussian clusters around [`CLUSTER_CENTRES`] random centres, as real embeddings
    /// cluster; queries are taken near stored points.
    Clustered,
}

/// Centres of [`DataKind::Clustered`] data.
pub const CLUSTER_CENTRES: usize = 400;
/// Spread of a clustered point around its centre, and of a query around the stored
/// point it was taken near (the norm of the added noise, before normalising).
const CLUSTER_SPREAD: f32 = 0.5;
const QUERY_SPREAD: f32 = 0.2;

/// A standard normal sample (Box-Muller), so that the noise has no preferred direction.
fn gaussian(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.gen_range(f32::MIN_POSITIVE..1.0);
    let u2: f32 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// `around` plus Gaussian noise of about norm `spread`, normalised.
fn near(rng: &mut impl Rng, around: &[f32], spread: f32) -> Vec<f32> {
    let sigma = spread / (around.len() as f32).sqrt();
    normalised(around.iter().map(|x| x + sigma * gaussian(rng)).collect())
}

/// [`generate_records`] for either kind of data (the same ids, tenants and projects).
pub fn generate_records_of(kind: DataKind, shape: DataShape, first_id: i64) -> Vec<VectorRecord> {
    let mut records = generate_records(shape, first_id);
    if kind == DataKind::Clustered {
        let mut rng = ChaCha8Rng::seed_from_u64(shape.seed ^ 0xc105_7e45);
        let centres: Vec<Vec<f32>> = (0..CLUSTER_CENTRES)
            .map(|_| unit_vector(&mut rng, shape.dim))
            .collect();
        for r in &mut records {
            let centre = &centres[rng.gen_range(0..CLUSTER_CENTRES)];
            r.embedding = Embedding::new(near(&mut rng, centre, CLUSTER_SPREAD)).unwrap();
        }
    }
    records
}

/// [`generate_queries`] for either kind of data: clustered queries are taken near
/// stored points of `records`, as a retrieval service's queries resemble its documents.
pub fn generate_queries_of(
    kind: DataKind,
    records: &[VectorRecord],
    count: usize,
    dim: usize,
    seed: u64,
) -> Vec<Embedding> {
    match kind {
        DataKind::Uniform => generate_queries(count, dim, seed),
        DataKind::Clustered => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e_a2c4);
            (0..count)
                .map(|_| {
                    let stored = &records[rng.gen_range(0..records.len())];
                    Embedding::new(near(&mut rng, stored.embedding.as_slice(), QUERY_SPREAD))
                        .unwrap()
                })
                .collect()
        }
    }
}

/// Deterministic query vectors (a different stream from the records).
pub fn generate_queries(count: usize, dim: usize, seed: u64) -> Vec<Embedding> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0f9e_71ab);
    (0..count)
        .map(|_| Embedding::new(unit_vector(&mut rng, dim)).unwrap())
        .collect()
}

/// Exact filtered top-k by brute force, in the port's score convention, best first
/// (ties broken by chunk id so that the order is deterministic).
pub fn exact_top_k(
    records: &[VectorRecord],
    scope: &SearchScope,
    query: &[f32],
    k: usize,
    metric: Metric,
) -> Vec<SearchHit> {
    let mut hits: Vec<SearchHit> = records
        .iter()
        .filter(|r| scope.contains(r.tenant_id, r.project_id))
        .map(|r| SearchHit {
            chunk_id: r.chunk_id,
            project_id: r.project_id,
            score: metric.score(query, r.embedding.as_slice()),
        })
        .collect();
    SearchHit::rank(&mut hits);
    hits.truncate(k);
    hits
}

/// Fraction of `exact`'s ids found in `found` (recall@k): the domain's rule.
pub fn recall(found: &[SearchHit], exact: &[SearchHit]) -> f64 {
    SearchHit::recall(found, exact)
}

#[cfg(test)]
mod data_tests {
    use super::*;

    /// The mean score of each query's best match: clustered queries have close neighbours,
    /// uniform ones do not (which is what makes uniform data the worst case for an index).
    fn mean_best_score(kind: DataKind) -> f32 {
        let shape = DataShape {
            rows: 2_000,
            dim: 64,
            tenants: 1,
            projects_per_tenant: 1,
            seed: 7,
        };
        let records = generate_records_of(kind, shape, 1);
        let queries = generate_queries_of(kind, &records, 50, shape.dim, 7);
        let scope = SearchScope::tenant(tenant(1));
        let best: f32 = queries
            .iter()
            .map(|q| exact_top_k(&records, &scope, q.as_slice(), 1, Metric::Cosine)[0].score)
            .sum();
        best / queries.len() as f32
    }

    #[test]
    fn clustered_queries_have_close_neighbours_and_uniform_ones_do_not() {
        let clustered = mean_best_score(DataKind::Clustered);
        let uniform = mean_best_score(DataKind::Uniform);
        assert!(clustered > 0.9, "clustered best match {clustered}");
        assert!(uniform < 0.6, "uniform best match {uniform}");
        // Same ids, tenants and projects either way: only the vectors differ.
        let shape = DataShape::default();
        let (a, b) = (
            generate_records_of(DataKind::Uniform, DataShape { rows: 50, ..shape }, 1),
            generate_records_of(DataKind::Clustered, DataShape { rows: 50, ..shape }, 1),
        );
        assert!(a.iter().zip(&b).all(|(x, y)| x.chunk_id == y.chunk_id
            && x.tenant_id == y.tenant_id
            && x.project_id == y.project_id
            && x.embedding != y.embedding));
    }
}
