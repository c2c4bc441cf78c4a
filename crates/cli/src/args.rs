//! Command-line syntax (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "vectorgate",
    version,
    about = "Operate the vector-store gateway: health, backfill, reconcile, sync, search, import",
    long_about = "Operate the vector-store gateway: health, backfill, reconcile, sync, search, \
                  import.\n\nSettings come from the environment (VECTOR_STORE_MODE, EMBEDDING_DIM, \
                  DATABASE_URL, MILVUS_HOST, MILVUS_PORT, ...), the same variables the library \
                  reads; the global flags below override them.",
    after_help = "Exit status: 0 done and fine; 1 the check found a problem (a store unhealthy, \
                  drift remains, sync left entries pending); 2 the command could not run (bad \
                  setting, unreachable store, invalid input), with one `error: <cause>` line \
                  on stderr."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that override the environment variable named in their help.
#[derive(Args, Default, Clone)]
pub struct GlobalOpts {
    /// Store mode: pgvector, milvus or dual [overrides VECTOR_STORE_MODE]
    #[arg(long, global = true, value_name = "MODE")]
    pub mode: Option<String>,
    /// Embedding dimension [overrides EMBEDDING_DIM]
    #[arg(long, global = true, value_name = "N")]
    pub dim: Option<String>,
    /// PostgreSQL URL [overrides DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Milvus server, http://host:port or https://host:port [overrides MILVUS_URI]
    #[arg(long, global = true, value_name = "URI")]
    pub milvus_uri: Option<String>,
    /// Milvus host [overrides MILVUS_HOST]
    #[arg(long, global = true, value_name = "HOST")]
    pub milvus_host: Option<String>,
    /// Milvus port [overrides MILVUS_PORT]
    #[arg(long, global = true, value_name = "PORT")]
    pub milvus_port: Option<String>,
    /// Print the operation counters in Prometheus text format at the end
    #[arg(long, global = true)]
    pub metrics: bool,
}

/// Written by hand: `--database-url` may hold a password, shown only redacted.
impl std::fmt::Debug for GlobalOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self
            .database_url
            .as_deref()
            .map(vectorgate_adapter_pgvector::redact_url);
        f.debug_struct("GlobalOpts")
            .field("mode", &self.mode)
            .field("dim", &self.dim)
            .field("database_url", &url)
            .field("milvus_host", &self.milvus_host)
            .field("milvus_port", &self.milvus_port)
            .field("metrics", &self.metrics)
            .finish()
    }
}

impl GlobalOpts {
    /// The (variable, value) pairs the flags set; they win over the environment.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        [
            ("VECTOR_STORE_MODE", &self.mode),
            ("EMBEDDING_DIM", &self.dim),
            ("DATABASE_URL", &self.database_url),
            ("MILVUS_URI", &self.milvus_uri),
            ("MILVUS_HOST", &self.milvus_host),
            ("MILVUS_PORT", &self.milvus_port),
        ]
        .into_iter()
        .filter_map(|(var, value)| value.clone().map(|v| (var, v)))
        .collect()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to the stores, print versions and table/collection status; non-zero exit
    /// when a needed store is unreachable or its schema does not match
    Health(HealthArgs),
    /// Copy pgvector's rows into Milvus (idempotent, resumable) before enabling dual mode
    Backfill(BackfillArgs),
    /// Compare pgvector and Milvus per tenant/project; --repair makes Milvus equal to pgvector
    Reconcile(ReconcileArgs),
    /// Replay the dual-mode outbox now: re-send to Milvus what failed to reach it (waits for
    /// a service's relay when one leads)
    Sync(SyncArgs),
    /// Run the dual-mode relay as a long-lived worker until SIGTERM or Ctrl-C
    Relay,
    /// k-nearest-neighbour search within a tenant (and projects) through the configured mode
    Search(SearchArgs),
    /// Measure search recall@k on stored vectors: sampled rows as queries, each searched
    /// within its tenant as configured and exactly; exits 1 below --min-recall
    Recall(RecallArgs),
    /// Show how pgvector searches a scope: exactly or through the vector index, why, and
    /// PostgreSQL's plan for it
    Plan(PlanArgs),
    /// Load records from a JSON-lines file through the gateway of the configured mode
    Import(ImportArgs),
    /// Drop or recreate the Milvus collection (the rollback for a corrupt schema)
    Collection(CollectionArgs),
    /// Create what the configured mode needs (pgvector table and indexes, the dual-mode
    /// outbox, the Milvus collection) or verify what exists; services do the same at start
    Init,
    /// Print every setting with its value (secrets as ***), or with --markdown the table of
    /// every variable, its default and what it accepts
    Settings(SettingsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreChoice {
    Pgvector,
    Milvus,
    All,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Which store to check; default: the stores the mode uses
    #[arg(long, value_enum)]
    pub store: Option<StoreChoice>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ScopeArgs {
    /// Only this tenant
    #[arg(long, value_name = "ID")]
    pub tenant: Option<i64>,
    /// Only this project (needs --tenant)
    #[arg(long, value_name = "ID", requires = "tenant")]
    pub project: Option<i64>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Rows per batch (one pgvector page, one Milvus upsert, one checkpoint)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Continue from the last committed checkpoint of this filter instead of starting over
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Make Milvus equal to pgvector: upsert missing/differing rows, delete Milvus-only ids
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Largest accepted absolute difference of any vector component
    #[arg(long, default_value_t = 1e-5)]
    pub tolerance: f32,
    /// Rows per pgvector page (each page costs two Strong-consistency reads in Milvus, which
    /// wait for Milvus's time tick: bigger pages are faster)
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("query").required(true).args(["vector_file", "like"])))]
pub struct SearchArgs {
    /// Tenant to search in
    #[arg(long, value_name = "ID")]
    pub tenant: i64,
    /// Restrict to these projects (repeatable); default: every project of the tenant
    #[arg(long = "project", value_name = "ID")]
    pub projects: Vec<i64>,
    /// File holding the query vector as a JSON array of numbers
    #[arg(long, value_name = "FILE")]
    pub vector_file: Option<PathBuf>,
    /// Use the stored vector of this chunk as the query
    #[arg(long, value_name = "CHUNK_ID")]
    pub like: Option<i64>,
    /// Number of hits
    #[arg(short = 'k', long = "top-k", default_value_t = 10)]
    pub k: u32,
    /// Drop hits scoring below this
    #[arg(long)]
    pub min_score: Option<f32>,
    /// Print the hits as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RecallArgs {
    /// Stored rows to use as queries, picked at random
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub samples: u32,
    /// Hits compared per query
    #[arg(short = 'k', long = "top-k", default_value_t = 10)]
    pub k: u32,
    /// Exit 1 when the mean recall is below this
    #[arg(long, default_value_t = 0.95)]
    pub min_recall: f64,
    /// Print the figures as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Tenant whose search is planned
    #[arg(long, value_name = "ID")]
    pub tenant: i64,
    /// Restrict to these projects (repeatable); default: every project of the tenant
    #[arg(long = "project", value_name = "ID")]
    pub projects: Vec<i64>,
    /// Number of hits the planned search asks for
    #[arg(short = 'k', long = "top-k", default_value_t = 10)]
    pub k: u32,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON lines: {"chunk_id":..,"tenant_id":..,"project_id":..,"embedding":[..]}
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Rows per upsert call
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// pgvector mode only: load with COPY (bulk_load) instead of upserts
    #[arg(long)]
    pub bulk: bool,
    /// With --bulk: build the vector index after loading
    #[arg(long, requires = "bulk")]
    pub build_index: bool,
}

#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// The documentation table (markdown) instead of the values in effect
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Args)]
pub struct CollectionArgs {
    #[command(subcommand)]
    pub action: CollectionAction,
}

#[derive(Debug, Subcommand)]
pub enum CollectionAction {
    /// Drop the Milvus collection (its rows are lost; pgvector is untouched)
    Drop(ConfirmArgs),
    /// Drop and create the Milvus collection empty with the configured schema and index
    Recreate(ConfirmArgs),
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// Confirm the destructive action
    #[arg(long)]
    pub yes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_their_variables() {
        let cli = Cli::parse_from([
            "vectorgate",
            "health",
            "--mode",
            "dual",
            "--milvus-port",
            "1",
        ]);
        assert_eq!(
            cli.global.overrides(),
            vec![
                ("VECTOR_STORE_MODE", "dual".to_string()),
                ("MILVUS_PORT", "1".to_string())
            ]
        );
    }

    #[test]
    fn search_needs_exactly_one_query_source() {
        assert!(Cli::try_parse_from(["vectorgate", "search", "--tenant", "1"]).is_err());
        assert!(Cli::try_parse_from([
            "vectorgate",
            "search",
            "--tenant",
            "1",
            "--like",
            "3",
            "--vector-file",
            "f"
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["vectorgate", "search", "--tenant", "1", "--like", "3"]).is_ok()
        );
    }

    #[test]
    fn a_project_filter_needs_a_tenant() {
        assert!(Cli::try_parse_from(["vectorgate", "backfill", "--project", "2"]).is_err());
    }
}
