//! The benchmark harness behind `cargo xtask bench`:
//! `cargo bench -p vectorgate-composition --bench gateway -- --store pgvector [--rows N ...]`.
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

async fn run_store(args: &Args) -> anyhow::Result<serde_json::Value> {
    match args.store.as_str() {
        "pgvector" => pgvector::run(args).await,
        "milvus" => milvus::run(args).await,
        "dual" => dual::run(args).await,
        other => {
            anyhow::bail!("unknown --store {other:?}; expected one of: pgvector, milvus, dual")
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let value = runtime.block_on(run_store(&args))?;
    let path = args.results_path();
    common::merge_results(&path, &args.store, value)?;
    println!(
        "results merged into {} under {:?}",
        path.display(),
        args.store
    );
    Ok(())
}
