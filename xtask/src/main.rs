//! `cargo xtask`: the project's automation (see README.md for the commands a user types).
//! The work is in the library (`xtask/src/lib.rs`), which tests also use to start servers
//! of their own.

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use xtask::layout::Layout;
use xtask::services::{Ports, DEFAULT_MILVUS_PORT, DEFAULT_PG_PORT};
use xtask::{demo, docs, lint, services, steps};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "vectorgate's automation: real PostgreSQL+pgvector and Milvus servers, tests, lint, bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start, inspect or stop the local servers (data and settings under target/)
    Services {
        #[command(subcommand)]
        action: ServicesCmd,
    },
    /// Services up, fmt, clippy, every workspace test against the servers, services down
    Test(TestArgs),
    /// Services up, the guarded Milvus integration suite, services down
    TestMilvus(TestArgs),
    /// cargo-deny: bans, licenses, sources (and advisories where its database is reachable)
    Lint,
    /// Services up, the benchmark harness (results in target/bench/), services down
    Bench(BenchArgs),
    /// Regenerate README.md's settings table from the settings' declarations
    Docs,
    /// Services up, the migration story with the `vectorgate` CLI (load, search, backfill,
    /// reconcile, Milvus vs pgvector, health, rollback), services down unless --keep
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Use running services named by DATABASE_URL, MILVUS_HOST, MILVUS_PORT; start and stop nothing
    #[arg(long)]
    external: bool,
    /// Leave the services running afterwards (to explore with the CLI)
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    ports: PortArgs,
}

#[derive(Debug, Subcommand)]
enum ServicesCmd {
    /// Install the pinned server wheels if needed, start (or reuse) both servers, wait until
    /// they answer, write target/services.env
    Up(PortArgs),
    /// Pids, ports and versions of the servers started by `up`
    Status,
    /// Stop the processes `up` started (by pid) and wait until their ports are free
    Down,
}

#[derive(Debug, Clone, Copy, Args)]
struct PortArgs {
    /// PostgreSQL port on 127.0.0.1
    #[arg(long, default_value_t = DEFAULT_PG_PORT)]
    pg_port: u16,
    /// Milvus gRPC port on 127.0.0.1; Milvus's other ports move with it (P-1 to P+9)
    #[arg(long, default_value_t = DEFAULT_MILVUS_PORT)]
    milvus_port: u16,
}

impl PortArgs {
    fn ports(self) -> Ports {
        Ports {
            pg: self.pg_port,
            milvus: self.milvus_port,
        }
    }
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Use running services named by DATABASE_URL, MILVUS_HOST, MILVUS_PORT (e.g. the
    /// docker-compose stack); start and stop nothing
    #[arg(long)]
    external: bool,
    #[command(flatten)]
    ports: PortArgs,
    /// Extra arguments for the test runner (e.g. a test name filter)
    #[arg(last = true)]
    extra: Vec<String>,
}

/// The benchmark harness's `--store` values (the `Store` ValueEnum in
/// crates/bench/benches/gateway/common.rs): xtask passes the name through unchanged and
/// does not depend on the bench crate, so that `cargo xtask` stays quick to build.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Store {
    Pgvector,
    Milvus,
    Dual,
    All,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Which store(s) to benchmark
    #[arg(long, value_enum, default_value_t = Store::All)]
    store: Store,
    /// Use running services from the environment; start and stop nothing
    #[arg(long)]
    external: bool,
    #[command(flatten)]
    ports: PortArgs,
    /// Extra arguments for the benchmark harness
    #[arg(last = true)]
    extra: Vec<String>,
}

/// The child processes get Ctrl-C from the terminal themselves; xtask only notes it, so
/// that it skips the remaining steps and still stops the services.
fn stop_services_on_interrupt() {
    let result = ctrlc::set_handler(|| {
        steps::INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\nxtask: interrupted; skipping the remaining steps, then stopping the services");
    });
    if let Err(e) = result {
        eprintln!("xtask: could not install the interrupt handler: {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let layout = Layout::current();
    let result: Result<()> = match cli.command {
        Cmd::Services { action } => match action {
            ServicesCmd::Up(ports) => services::up(&layout, ports.ports()).map(|_| ()),
            ServicesCmd::Status => services::status(&layout),
            ServicesCmd::Down => services::down(&layout),
        },
        Cmd::Test(args) => {
            stop_services_on_interrupt();
            steps::test(&layout, args.external, args.ports.ports(), &args.extra)
        }
        Cmd::TestMilvus(args) => {
            stop_services_on_interrupt();
            steps::test_milvus(&layout, args.external, args.ports.ports(), &args.extra)
        }
        Cmd::Lint => lint::lint(&layout),
        Cmd::Docs => docs::docs(&layout),
        Cmd::Demo(args) => {
            stop_services_on_interrupt();
            demo::demo(
                &layout,
                demo::DemoOptions {
                    external: args.external,
                    keep: args.keep,
                    ports: args.ports.ports(),
                },
            )
        }
        Cmd::Bench(args) => {
            stop_services_on_interrupt();
            let store = args
                .store
                .to_possible_value()
                .expect("no skipped variants")
                .get_name()
                .to_string();
            steps::bench(
                &layout,
                args.external,
                args.ports.ports(),
                &store,
                &args.extra,
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
