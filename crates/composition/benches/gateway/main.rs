//! The benchmark harness behind `cargo xtask bench`:
//! `cargo bench -p vectorgate-composition --bench gateway -- --store pgvector|milvus|dual|all [--rows N ...]`.
//!
//! Each store is one module with `pub async fn run(&Args) -> anyhow::Result<serde_json::Value>`
//! that measures it, prints its table and returns its results object; adding a store is
//! that module plus one arm in `run_store`. Results are merged into
//! `target/bench/results.json` under the store's name, leaving other stores' entries alone.

mod common;
mod dual;
mod milvus;
mod pgvector;

use clap::Parser;

use common::Args;

/// The stores `--store all` measures, in this order.
const STORES: [&str; 3] = ["pgvector", "milvus", "dual"];

async fn run_store(store: &str, args: &Args) -> anyhow::Result<serde_json::Value> {
    match store {
        "pgvector" => pgvector::run(args).await,
        "milvus" => milvus::run(args).await,
        "dual" => dual::run(args).await,
        other => {
            anyhow::bail!("unknown --store {other:?}; expected one of: pgvector, milvus, dual, all")
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stores: Vec<&str> = match args.store.as_str() {
        "all" => STORES.to_vec(),
        one => vec![one],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let path = args.results_path();
    // Each store's results are merged as soon as it is measured, so that a later store's
    // failure does not lose the earlier figures.
    for store in stores {
        let value = runtime.block_on(run_store(store, &args))?;
        common::merge_results(&path, store, value)?;
        println!("results merged into {} under {store:?}", path.display());
    }
    Ok(())
}
