//! pgvector: upsert through the gateway vs raw COPY into an identical indexed table, bulk
//! load with the index built afterwards, and filtered search (1 and 8 clients).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use vectorgate_adapter_pgvector::{PgIndex, PgVectorConfig, PgVectorStore};
use vectorgate_domain::{Dimension, VectorStoreGateway};
use vectorgate_testkit::{unique_name, ServicesEnv};

use crate::common::{
    bench_pool, drop_tables, measure_search, print_table, round, round3, rows_per_s, Args, Dataset,
    Figure,
};

/// What the issue asks of pgvector on this machine.
const UPSERT_VS_COPY_TARGET: f64 = 0.9;
const RECALL_TARGET: f64 = 0.95;
const BULK_LOAD_TARGET: f64 = 30_000.0;

pub async fn run(args: &Args) -> anyhow::Result<Value> {
    let make = |purpose: &str| -> anyhow::Result<PgVectorStore> {
        Ok(PgVectorStore::new(config(args, purpose)?)?)
    };
    let mut sequential = make("upsert_seq")?.config().clone();
    sequential.upsert_concurrency = 1;
    let stores = [
        make("copy")?,
        make("upsert")?,
        make("bulk")?,
        PgVectorStore::new(sequential)?,
    ];
    let outcome = measure(args, &stores).await;
    let tables: Vec<&str> = stores.iter().map(|s| s.config().table.as_str()).collect();
    drop_tables(&tables).await;
    for store in &stores {
        store.close().await?;
    }
    outcome
}

/// A store configuration for a fresh table named after `purpose`, with the search and
/// build settings the arguments override.
pub fn config(args: &Args, purpose: &str) -> anyhow::Result<PgVectorConfig> {
    let url = ServicesEnv::load().database_url();
    let mut config = PgVectorConfig::for_url(&url, Dimension::new(u32::try_from(args.dim)?)?)?;
    config.table = unique_name(&format!("bench_pgv_{purpose}"));
    if let Some(ef) = args.ef_search {
        config.ef_search = ef;
    }
    if args.ef_construction.is_some() {
        config.hnsw_ef_construction = args.ef_construction;
    }
    if let Some(max) = args.exact_search_max_rows {
        config.exact_search_max_rows = max;
    }
    if args.partitions.is_some() {
        config.tenant_partitions = args.partitions;
    }
    Ok(config)
}

async fn measure(args: &Args, stores: &[PgVectorStore; 4]) -> anyhow::Result<Value> {
    let [copy_store, upsert_store, bulk_store, sequential_store] = stores;
    let config = upsert_store.config().clone();
    eprintln!(
        "generating {} records (dim {}) and exact answers...",
        args.rows, args.dim
    );
    let data = Dataset::generate(args, config.metric)?;
    for store in stores {
        store.bootstrap().await?;
    }
    let rows = data.records.len();

    let (mut upsert, mut copy_baseline, mut upsert_sequential) = (f64::NAN, f64::NAN, f64::NAN);
    if !args.search_only {
        // Three tables with the same HNSW index, filled with the same rows in 4 rounds;
        // within a round each method loads the same quarter, in a rotated order, so that
        // on this shared 2-core machine every method sees the same load and index sizes:
        // - raw COPY BINARY (the fastest way rows enter an indexed table: the yardstick),
        // - upsert through the port (batches of 1000, upsert_concurrency at a time),
        // - the same upsert one batch at a time (like for like with the one-stream COPY).
        eprintln!(
            "COPY baseline ({}), gateway upsert ({}, batch {}, {} at a time) and one-at-a-time upsert ({}), 4 rotated rounds...",
            copy_store.config().table,
            upsert_store.config().table,
            config.batch_size,
            config.upsert_concurrency,
            sequential_store.config().table,
        );
        let gateway: Arc<dyn VectorStoreGateway> = Arc::new(upsert_store.clone());
        let sequential: Arc<dyn VectorStoreGateway> = Arc::new(sequential_store.clone());
        let mut spent = [Duration::ZERO; 3];
        let rounds = 4;
        let per_round = rows.div_ceil(rounds);
        for (round, part) in data.records.chunks(per_round).enumerate() {
            for step in 0..3 {
                let method = (round + step) % 3;
                let t = Instant::now();
                match method {
                    0 => copy_store.bulk_load(part, false).await.map(|_| ())?,
                    1 => gateway.upsert_vectors(part).await.map(|_| ())?,
                    _ => sequential.upsert_vectors(part).await.map(|_| ())?,
                }
                spent[method] += t.elapsed();
            }
        }
        copy_baseline = rows_per_s(rows, spent[0]);
        upsert = rows_per_s(rows, spent[1]);
        upsert_sequential = rows_per_s(rows, spent[2]);
    }

    // Bulk load: index dropped, COPY, index rebuilt; load and build timed apart.
    eprintln!(
        "bulk load into {} (index built after)...",
        bulk_store.config().table
    );
    let report = bulk_store.bulk_load_timed(&data.records, true).await?;
    let index_build = report.index_build.unwrap_or_default();
    let bulk_load = rows_per_s(rows, report.load);
    let bulk_total = rows_per_s(rows, report.load + index_build);

    // Searches on the table filled through the gateway (the bulk-loaded one with
    // --search-only). ANALYZE first: a served table has statistics, and without them the
    // plan would change whenever autovacuum runs.
    let search_store = if args.search_only {
        bulk_store
    } else {
        upsert_store
    };
    let analyze = format!("ANALYZE {}", search_store.config().table);
    sqlx::raw_sql(&analyze)
        .execute(&bench_pool().await?)
        .await
        .context("ANALYZE")?;
    let gateway: Arc<dyn VectorStoreGateway> = Arc::new(search_store.clone());
    let queries = Arc::new(data.queries.clone());
    data.warm_up(gateway.as_ref(), args.k).await?;
    eprintln!("searching, 1 client...");
    let one = measure_search(gateway.clone(), queries.clone(), 1).await?;
    eprintln!("searching, 8 clients...");
    let eight = measure_search(gateway.clone(), queries.clone(), 8).await?;

    let mut sweep = Vec::new();
    let (project_queries, tenant_queries): (Vec<_>, Vec<_>) = data
        .queries
        .iter()
        .cloned()
        .partition(|q| q.request.scope.project_ids().is_some());
    let (project_queries, tenant_queries) = (Arc::new(project_queries), Arc::new(tenant_queries));
    for &ef in &args.ef_sweep {
        let mut tuned = search_store.config().clone();
        tuned.ef_search = ef;
        tuned.exact_search_max_rows = 0;
        let tuned: Arc<dyn VectorStoreGateway> = Arc::new(PgVectorStore::new(tuned)?);
        let p = measure_search(tuned.clone(), project_queries.clone(), 1).await?;
        let t = measure_search(tuned.clone(), tenant_queries.clone(), 1).await?;
        eprintln!(
            "ef_search {ef}: one-project scope recall {:.3} qps {:.1} p50 {:.2} ms | whole-tenant scope recall {:.3} qps {:.1} p50 {:.2} ms",
            p.recall, p.qps, p.p50_ms, t.recall, t.qps, t.p50_ms
        );
        sweep.push(json!({
            "ef_search": ef,
            "project_scope": {"recall_at_10": round3(p.recall), "qps": round(p.qps), "p50_ms": round3(p.p50_ms), "p99_ms": round3(p.p99_ms)},
            "tenant_scope": {"recall_at_10": round3(t.recall), "qps": round(t.qps), "p50_ms": round3(t.p50_ms), "p99_ms": round3(t.p99_ms)},
        }));
        tuned.close().await?;
    }

    let index = match config.vector_index() {
        PgIndex::Hnsw { m, ef_construction } => {
            format!("hnsw(m={m}, ef_construction={ef_construction})")
        }
        PgIndex::IvfFlat { lists } => format!("ivfflat(lists={lists})"),
    };
    let mut params = args.params(data.metric);
    params.insert("index".into(), json!(index));
    params.insert("ef_search".into(), json!(config.ef_search));
    params.insert(
        "exact_search_max_rows".into(),
        json!(config.exact_search_max_rows),
    );
    params.insert("batch_size".into(), json!(config.batch_size));
    params.insert(
        "upsert_concurrency".into(),
        json!(config.upsert_concurrency),
    );
    params.insert(
        "upsert_method".into(),
        json!("INSERT ... SELECT FROM UNNEST(...) ON CONFLICT, one statement (and transaction) per batch of batch_size, upsert_concurrency batches at a time"),
    );
    params.insert(
        "copy_baseline_method".into(),
        json!("COPY ... FORMAT binary (one per round) into a fresh table with the same HNSW index"),
    );
    params.insert(
        "write_rounds".into(),
        json!("4 rounds of a quarter of the rows each; COPY, gateway upsert and one-at-a-time upsert interleaved in rotated order; times summed per method"),
    );
    params.insert("bulk_load_rows_per_s_covers".into(), json!("dropping the index and the COPY; index_build_s is separate; bulk_load_total_rows_per_s includes it"));
    params.insert(
        "search_table".into(),
        json!(if args.search_only {
            "the bulk-loaded table, ANALYZEd"
        } else {
            "the table filled by the gateway upsert, ANALYZEd"
        }),
    );

    let value = json!({
        "upsert_rows_per_s": round(upsert),
        "upsert_rows_per_s_one_batch_at_a_time": round(upsert_sequential),
        "copy_baseline_rows_per_s": round(copy_baseline),
        "upsert_vs_copy": round3(upsert / copy_baseline),
        "bulk_load_rows_per_s": round(bulk_load),
        "index_build_s": round3(index_build.as_secs_f64()),
        "bulk_load_total_rows_per_s": round(bulk_total),
        "search_qps": round(one.qps),
        "search_qps_8_clients": round(eight.qps),
        "recall_at_10": round3(one.recall),
        "recall_at_10_8_clients": round3(eight.recall),
        "search_p50_ms": round3(one.p50_ms),
        "search_p99_ms": round3(one.p99_ms),
        "searches_1_client": one.searches,
        "searches_8_clients": eight.searches,
        "search_p50_ms_8_clients": round3(eight.p50_ms),
        "search_p99_ms_8_clients": round3(eight.p99_ms),
        "ef_sweep": sweep,
        "params": params,
    });

    let ratio = upsert / copy_baseline;
    print_table(
        &format!(
            "pgvector: {} rows, dim {}, {} tenants x {} projects, {} queries, k={}, {}, ef_search {}, exact search for scopes <= {} rows",
            args.rows, args.dim, args.tenants, args.projects, args.queries, args.k, index, config.ef_search, config.exact_search_max_rows
        ),
        &[
            Figure::target(
                "upsert_rows_per_s (gateway, batch 1000, 2 batches at a time, index present)",
                format!("{upsert:.0} ({ratio:.2} x COPY)"),
                format!(">= {UPSERT_VS_COPY_TARGET} x copy baseline = {:.0}", UPSERT_VS_COPY_TARGET * copy_baseline),
                ratio >= UPSERT_VS_COPY_TARGET,
            ),
            Figure::info("copy_baseline_rows_per_s (raw COPY, index present)", format!("{copy_baseline:.0}")),
            Figure::info(
                "upsert, one batch at a time (upsert_concurrency 1)",
                format!("{upsert_sequential:.0} ({:.2} x COPY)", upsert_sequential / copy_baseline),
            ),
            Figure::target(
                "bulk_load_rows_per_s (COPY, index built after)",
                format!("{bulk_load:.0}"),
                format!(">= {BULK_LOAD_TARGET:.0}"),
                bulk_load >= BULK_LOAD_TARGET,
            ),
            Figure::info("index_build_s", format!("{:.2}", index_build.as_secs_f64())),
            Figure::info("bulk_load_total_rows_per_s (load + index build)", format!("{bulk_total:.0}")),
            Figure::info("search_qps (1 client)", format!("{:.1}", one.qps)),
            Figure::info("search_qps_8_clients", format!("{:.1}", eight.qps)),
            Figure::target(
                "recall_at_10 (vs exact filtered search)",
                format!("{:.3}", one.recall),
                format!(">= {RECALL_TARGET}"),
                one.recall >= RECALL_TARGET,
            ),
            Figure::info("search_p50_ms / p99_ms (1 client)", format!("{:.2} / {:.2}", one.p50_ms, one.p99_ms)),
            Figure::info("search_p50_ms / p99_ms (8 clients)", format!("{:.2} / {:.2}", eight.p50_ms, eight.p99_ms)),
        ],
    );
    Ok(value)
}
