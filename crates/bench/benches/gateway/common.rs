//! Pieces every store's benchmark shares: arguments, the data set with its exact answers,
//! search measurement through the port, percentiles, the results file and the table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::{json, Map, Value};
use vectorgate_domain::{
    Embedding, Metric, SearchHit, SearchRequest, SearchScope, TopK, VectorRecord,
    VectorStoreGateway,
};
use vectorgate_testkit::{
    exact_top_k, generate_queries_of, generate_records_of, machine_busy, project, tenant, DataKind,
    DataShape,
};

/// `cargo bench -p vectorgate-bench --bench gateway -- --store pgvector [...]`
#[derive(Debug, Clone, Parser)]
#[command(about = "Benchmarks a vector store through the gateway port")]
pub struct Args {
    /// Which store to measure, or all of them in turn.
    #[arg(long, value_enum)]
    pub store: Store,
    #[arg(long, default_value_t = 20_000)]
    pub rows: usize,
    #[arg(long, default_value_t = 768)]
    pub dim: usize,
    #[arg(long, default_value_t = 4)]
    pub tenants: i64,
    /// Projects per tenant.
    #[arg(long, default_value_t = 3)]
    pub projects: i64,
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    #[arg(long, default_value_t = 10)]
    pub k: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How the searched vectors spread: clustered like real embeddings (queries near stored
    /// points), or uniform, the worst case for any vector index.
    #[arg(long, value_enum, default_value_t = Data::Clustered)]
    pub data: Data,
    /// Search-time effort override (pgvector: hnsw.ef_search); the store's default otherwise.
    #[arg(long)]
    pub ef_search: Option<u32>,
    /// pgvector: the HNSW build candidate list (the store's default otherwise).
    #[arg(long)]
    pub ef_construction: Option<u32>,
    /// pgvector: scopes of at most this many rows are searched exactly (store default
    /// otherwise; 0 = always through the vector index).
    #[arg(long)]
    pub exact_search_max_rows: Option<u32>,
    /// pgvector: hash partitions by tenant of the benchmark's tables (0: one table; the
    /// store's default otherwise).
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Extra search measurements through the vector index alone (no exact path) at these
    /// ef_search values (comma-separated), one client, per scope kind, under "ef_sweep".
    #[arg(long, value_delimiter = ',')]
    pub ef_sweep: Vec<u32>,
    /// Measure searches only: pgvector fills its table by bulk load; Milvus inserts with the
    /// SDK and runs the --scale measurement at --rows.
    #[arg(long)]
    pub search_only: bool,
    /// Measure search at each of these sizes (comma-separated) and each of --kinds, instead of
    /// the usual run: Milvus with the default and the former nprobe ("milvus_scale"),
    /// pgvector with its defaults by scope kind, index build timed ("pgvector_scale").
    #[arg(long, value_delimiter = ',')]
    pub scale: Vec<usize>,
    /// With --scale: the data kinds measured at each size, clustered first.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Data::Clustered, Data::Uniform])]
    pub kinds: Vec<Data>,
    /// Milvus with --scale or --search-only: the collection layouts measured in turn.
    /// `default`: what the adapter creates on this server; `none`: no partition key;
    /// `tenant`: tenant_id as partition key, loaded by insert (Milvus 2.3 routes inserts by
    /// the key and misroutes upserts), to see what the key does for search on any server.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Layout::Default])]
    pub layouts: Vec<Layout>,
    /// With --scale: also search at these nprobe values (1 client), under "nprobe_sweep".
    #[arg(long, value_delimiter = ',')]
    pub nprobe_sweep: Vec<u32>,
    /// dual: rows of each backlog the relay replays after a Milvus outage (and that the
    /// Milvus gateway alone upserts, for comparison).
    #[arg(long, default_value_t = 50_000)]
    pub catch_up_rows: usize,
    /// Where the results object is merged.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Passed by `cargo bench` to every harness=false target; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// A value's name on the command line (clap's), which the results file uses as its key.
fn cli_name(value: &impl ValueEnum) -> String {
    value
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_string()
}

/// `--store`: parsed by clap, so a name the harness does not know is refused with the
/// accepted values before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Store {
    Pgvector,
    Milvus,
    Dual,
    All,
}

impl Store {
    /// The stores `--store all` measures, in this order.
    pub const EACH: [Store; 3] = [Store::Pgvector, Store::Milvus, Store::Dual];

    /// The name on the command line, also the store's key in the results file.
    pub fn name(self) -> String {
        cli_name(&self)
    }
}

/// `--layouts`: a Milvus collection's partition layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    Default,
    None,
    Tenant,
}

impl Layout {
    /// The name on the command line, also its key in the results file.
    pub fn name(self) -> String {
        cli_name(&self)
    }
}

/// `--data`: the search data set's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Data {
    Clustered,
    Uniform,
}

impl Data {
    /// The name on the command line, also its key in the results file.
    pub fn name(self) -> String {
        cli_name(&self)
    }

    pub fn kind(self) -> DataKind {
        match self {
            Data::Clustered => DataKind::Clustered,
            Data::Uniform => DataKind::Uniform,
        }
    }
}

impl Args {
    pub fn shape(&self) -> DataShape {
        DataShape {
            rows: self.rows,
            dim: self.dim,
            tenants: self.tenants,
            projects_per_tenant: self.projects,
            seed: self.seed,
        }
    }

    pub fn results_path(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            vectorgate_testkit::workspace_root().join("target/bench/results.json")
        })
    }

    /// The data set's shape, for the `"params"` object (stores add their own settings).
    pub fn params(&self, metric: Metric) -> Map<String, Value> {
        let mut params = Map::new();
        params.insert("rows".into(), json!(self.rows));
        params.insert("dim".into(), json!(self.dim));
        params.insert("tenants".into(), json!(self.tenants));
        params.insert("projects".into(), json!(self.projects));
        params.insert("queries".into(), json!(self.queries));
        params.insert("k".into(), json!(self.k));
        params.insert("seed".into(), json!(self.seed));
        params.insert("data".into(), json!(self.data.name()));
        params.insert("metric".into(), json!(metric.as_str()));
        params
    }
}

/// Runs `measure` at each size and for each of `--kinds`; returns the
/// `[{"rows", "data": {kind: value}}]` list and every figure, in order.
pub async fn each_size_and_kind<F, Fut>(
    args: &Args,
    sizes: &[usize],
    measure: F,
) -> anyhow::Result<(Vec<Value>, Vec<Figure>)>
where
    F: Fn(Args) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Value, Vec<Figure>)>>,
{
    let mut values = Vec::new();
    let mut figures = Vec::new();
    for &rows in sizes {
        let mut kinds = Map::new();
        for &data in &args.kinds {
            let sized = Args {
                rows,
                data,
                ..args.clone()
            };
            let (value, size_figures) = measure(sized).await?;
            figures.extend(size_figures);
            kinds.insert(data.name(), value);
        }
        values.push(json!({ "rows": rows, "data": kinds }));
    }
    Ok((values, figures))
}

/// One benchmark query and its exact answer.
#[derive(Debug, Clone)]
pub struct BenchQuery {
    pub request: SearchRequest,
    pub exact: Vec<SearchHit>,
}

/// The deterministic records and queries of a run.
#[derive(Debug)]
pub struct Dataset {
    pub records: Vec<VectorRecord>,
    pub queries: Vec<BenchQuery>,
    pub metric: Metric,
}

impl Dataset {
    /// Records of the `--data` kind from testkit; queries spread over the tenants, every
    /// other one restricted to a single project and the rest covering the whole tenant,
    /// each with its exact filtered top-k.
    pub fn generate(args: &Args, metric: Metric) -> anyhow::Result<Self> {
        let kind = args.data.kind();
        let records = generate_records_of(kind, args.shape(), 1);
        let k = TopK::new(args.k)?;
        let queries = generate_queries_of(kind, &records, args.queries, args.dim, args.seed)
            .into_iter()
            .enumerate()
            .map(|(i, embedding)| {
                let tenant_id = tenant(1 + i as i64 % args.tenants);
                let scope = if i % 2 == 0 {
                    let p = 1 + (i as i64 / 2) % args.projects;
                    SearchScope::projects(tenant_id, [project(p)])?
                } else {
                    SearchScope::tenant(tenant_id)
                };
                let exact = exact_top_k(
                    &records,
                    &scope,
                    embedding.as_slice(),
                    k.get() as usize,
                    metric,
                );
                Ok(BenchQuery {
                    request: SearchRequest::new(scope, embedding, k),
                    exact,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            records,
            queries,
            metric,
        })
    }

    /// A query embedding for warm-ups.
    pub fn any_embedding(&self) -> Embedding {
        self.queries[0].request.embedding.clone()
    }

    /// Twenty untimed searches, so that caches and connections are warm before timing.
    pub async fn warm_up(&self, gateway: &dyn VectorStoreGateway, k: u32) -> anyhow::Result<()> {
        let request = SearchRequest::new(
            SearchScope::tenant(tenant(1)),
            self.any_embedding(),
            TopK::new(k)?,
        );
        for _ in 0..20 {
            gateway.search(&request).await?;
        }
        Ok(())
    }
}

/// Search throughput, latency and recall of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct SearchFigures {
    pub qps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub recall: f64,
    pub searches: usize,
}

/// Runs every query once per client through the port, `clients` tasks at a time (each
/// client starts at another offset so that they do not move in lockstep). Recall is the
/// mean recall@k against the exact answers over all searches.
pub async fn measure_search(
    gateway: Arc<dyn VectorStoreGateway>,
    queries: Arc<Vec<BenchQuery>>,
    clients: usize,
) -> anyhow::Result<SearchFigures> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let gateway = gateway.clone();
            let queries = queries.clone();
            tokio::spawn(async move {
                let n = queries.len();
                let mut latencies = Vec::with_capacity(n);
                let mut recall_sum = 0.0;
                for i in 0..n {
                    let q = &queries[(i + client * n / clients.max(1)) % n];
                    let t = Instant::now();
                    let hits = gateway.search(&q.request).await?;
                    latencies.push(t.elapsed());
                    recall_sum += vectorgate_testkit::recall(&hits, &q.exact);
                }
                anyhow::Ok((latencies, recall_sum))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut recall_sum = 0.0;
    for task in tasks {
        let (l, r) = task.await??;
        latencies.extend(l);
        recall_sum += r;
    }
    let elapsed = started.elapsed();
    let searches = latencies.len();
    Ok(SearchFigures {
        qps: searches as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&mut latencies, 50.0),
        p99_ms: percentile_ms(&mut latencies, 99.0),
        recall: recall_sum / searches.max(1) as f64,
        searches,
    })
}

/// The machine counts as quiet below this share of its CPUs busy.
pub const QUIET: f64 = 0.15;
/// The longest wait for quiet; a machine busy with other work is reported, not waited out.
const QUIET_WAIT: Duration = Duration::from_secs(30);

/// Waits `at_least`, then until the machine is quiet (sampled over 500 ms) or
/// [`QUIET_WAIT`] has passed: a write leaves Milvus busy for a while after it returns
/// (persisting, sealing, releasing a dropped collection), and whatever runs next would pay
/// for it. Returns the share of the CPUs busy in the last sample.
pub async fn settle(at_least: Duration) -> f64 {
    settle_within(at_least, QUIET_WAIT).await
}

/// [`settle`], waiting at most `longest` for quiet.
pub async fn settle_within(at_least: Duration, longest: Duration) -> f64 {
    tokio::time::sleep(at_least).await;
    let started = Instant::now();
    loop {
        let busy = tokio::task::spawn_blocking(|| machine_busy(Duration::from_millis(500)))
            .await
            .ok()
            .flatten()
            .unwrap_or(0.0);
        if busy < QUIET || started.elapsed() >= longest {
            return busy;
        }
    }
}

/// The `p`th percentile (nearest rank) in milliseconds; 0 for no samples.
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    let index = rank.clamp(1, samples.len()) - 1;
    samples[index].as_secs_f64() * 1000.0
}

/// The middle of `samples` (the mean of the two middle ones when their number is even).
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// `x` to one decimal, for the results file.
pub fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `x` to three decimals, for the results file.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn rows_per_s(rows: usize, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Reads the results object, replaces only `store`'s entry, writes it back.
pub fn merge_results(path: &Path, store: &str, value: Value) -> anyhow::Result<()> {
    let mut root = match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            _ => anyhow::bail!(
                "{} exists but is not a JSON object; move it away to start afresh",
                path.display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    root.insert(store.to_string(), value);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&Value::Object(root))?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// One line of the printed table.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub value: String,
    /// The target, when the figure has one.
    pub target: Option<String>,
    pub met: Option<bool>,
}

impl Figure {
    pub fn info(name: &str, value: String) -> Self {
        Self {
            name: name.into(),
            value,
            target: None,
            met: None,
        }
    }

    pub fn target(name: &str, value: String, target: String, met: bool) -> Self {
        Self {
            name: name.into(),
            value,
            target: Some(target),
            met: Some(met),
        }
    }
}

/// Prints a markdown table of the figures and their targets.
pub fn print_table(title: &str, figures: &[Figure]) {
    println!("\n### {title}\n");
    println!("| figure | value | target | status |");
    println!("|---|---:|---|---|");
    for f in figures {
        let status = match f.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        println!(
            "| {} | {} | {} | {} |",
            f.name,
            f.value,
            f.target.as_deref().unwrap_or(""),
            status
        );
    }
    println!();
}

/// A pool of the benchmark's own, for what it measures or cleans up outside the gateway
/// (ANALYZE, round trips, DROP TABLE).
pub async fn bench_pool() -> anyhow::Result<sqlx::PgPool> {
    Ok(sqlx::PgPool::connect(&vectorgate_testkit::ServicesEnv::load().database_url()).await?)
}

/// Drops the benchmark's tables; a failure is a warning (the figures are what matter).
pub async fn drop_tables(tables: &[&str]) {
    let pool = match bench_pool().await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("warning: could not connect to drop the bench tables: {e}");
            return;
        }
    };
    for table in tables {
        if let Err(e) = sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {table}, {table}_chunk_ids"))
            .execute(&pool)
            .await
        {
            eprintln!("warning: could not drop {table}: {e}");
        }
    }
    pool.close().await;
}
