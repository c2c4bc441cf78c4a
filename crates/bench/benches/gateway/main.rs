//! The benchmark harness behind `cargo xtask bench`:
//! `cargo bench -p vectorgate-bench --bench gateway -- --store pgvector|milvus|dual|all [--rows N ...]`.
//!
//! Each store is one module with `pub async fn run(&Args) -> anyhow::Result<serde_json::Value>`
//! that measures it, prints its table and returns its results object; adding a store is
//! that module, one `Store` variant and one arm in `run_store`. Results are merged into
//! `target/bench/results.json` under the store's name, leaving other stores' entries alone.

mod common;
mod dual;
mod milvus;
mod milvus_scale;
mod pgvector;
mod pgvector_scale;
mod relay;

use clap::Parser;

use common::{Args, Store};

async fn run_store(store: Store, args: &Args) -> anyhow::Result<serde_json::Value> {
    match store {
        Store::Pgvector => pgvector::run(args).await,
        Store::Milvus => milvus::run(args).await,
        Store::Dual => dual::run(args).await,
        Store::All => unreachable!("main runs `--store all` as each store in turn"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The gateway's own logs, on demand: e.g. `RUST_LOG=vectorgate_composition=debug` shows
    // where each relay batch spends its time (claim, read, Milvus write, completion).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let stores = match args.store {
        Store::All => Store::EACH.to_vec(),
        one => vec![one],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let path = args.results_path();
    // Each store's results are merged as soon as it is measured, so that a later store's
    // failure does not lose the earlier figures.
    for store in stores {
        let (value, name) = match store {
            Store::Milvus if args.search_only || !args.scale.is_empty() => (
                runtime.block_on(milvus_scale::run(&args))?,
                "milvus_scale".to_string(),
            ),
            Store::Pgvector if !args.scale.is_empty() => (
                runtime.block_on(pgvector_scale::run(&args))?,
                "pgvector_scale".to_string(),
            ),
            _ => (runtime.block_on(run_store(store, &args))?, store.name()),
        };
        common::merge_results(&path, &name, value)?;
        println!("results merged into {} under {name:?}", path.display());
    }
    Ok(())
}
