//! dual, the relay: how fast it replays what Milvus missed during an outage (catch-up), and
//! how far Milvus trails pgvector under a steady write load with Milvus healthy (lag).
//!
//! Catch-up: a dual gateway whose Milvus is unreachable (a closed port) writes a backlog
//! (`--catch-up-rows`, 50,000 by default), so every id lands in the outbox as a failed
//! write; then a gateway on the real Milvus replays it (`sync`), timed. In each round the
//! Milvus gateway alone also upserts a backlog of the same size back to back, in calls of the
//! relay's batch size: the rate the target compares with (>= 0.8 x). Each backlog has ids
//! Milvus never held, the written tables are vacuumed, each timed phase starts once the
//! machine is quiet (Milvus seals and indexes what a backlog left for minutes), and the two
//! alternate which goes first over three rounds.
//! Milvus acknowledges a write before it has done most of the work for it, so only a
//! backlog large enough to outlast that delay measures a rate either can sustain; the rate
//! of single 1,000-row calls made seconds apart is reported beside it.
//! Lag: two writers upsert overlapping ids (ids their writes leave to the relay) for a while
//! with the background relay on; the outbox's lag is sampled every 100 ms. Target: p99
//! under 2 s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vectorgate_adapter_pgvector::IndexKind;
use vectorgate_composition::{
    vars, DualGateway, Settings, SettingsBuilder, Stores, VectorStoreFactory,
};
use vectorgate_domain::{VectorRecord, VectorStoreGateway};
use vectorgate_testkit::{generate_records, DataShape};

use crate::common::{
    bench_pool, drop_tables, median, percentile_ms, print_table, rows_per_s, settle, settle_within,
    Args, Figure, QUIET,
};
use crate::dual::builder;

const CATCH_UP_TARGET: f64 = 0.8;
const CATCH_UP_ROUNDS: usize = 3;
/// The longest wait for quiet before a timed catch-up phase: after a backlog of 50,000
/// rows, Milvus seals segments and builds their index for two to three minutes.
const CATCH_UP_QUIET_WAIT: Duration = Duration::from_secs(240);
const LAG_TARGET_MS: f64 = 2000.0;
const LAG_LOAD: Duration = Duration::from_secs(20);
const LAG_IDS: usize = 2000;

/// The relay bench's tables: the relay reads pgvector by primary key, so its vector index
/// only slows the writers; IVFFlat keeps a 50,000-row backlog's writes to seconds.
fn relay_builder(args: &Args) -> SettingsBuilder {
    builder(args, "relay").set(&vars::PGVECTOR_INDEX, IndexKind::Ivfflat)
}

pub async fn run(args: &Args, milvus_rows_per_s: f64) -> anyhow::Result<Value> {
    let settings = relay_builder(args)
        .set(&vars::DUAL_RELAY, "off")
        .set(&vars::DUAL_RECONCILE_INTERVAL_MS, 0)
        .build()?;
    let outcome = measure(args, milvus_rows_per_s, &settings).await;
    drop_tables(&[&settings.pgvector().table, &settings.dual().outbox_table]).await;
    if let Ok(milvus) = Stores::milvus_store(&settings) {
        milvus.schema().drop_collection().await.ok();
    }
    outcome
}

/// The same stores as `settings` (table, outbox, collection), otherwise as `args` give.
fn same_stores(args: &Args, settings: &Settings) -> SettingsBuilder {
    relay_builder(args)
        .set(&vars::PGVECTOR_TABLE, &settings.pgvector().table)
        .set(&vars::DUAL_OUTBOX_TABLE, &settings.dual().outbox_table)
        .set(&vars::MILVUS_COLLECTION, &settings.milvus().collection)
}

/// Waits for quiet before a timed phase, saying so when the machine stayed busy.
async fn quiet_before(phase: &str) {
    let busy = settle_within(Duration::from_secs(2), CATCH_UP_QUIET_WAIT).await;
    if busy >= QUIET {
        eprintln!(
            "warning: {phase} starts with the machine still {:.0}% busy",
            busy * 100.0
        );
    }
}

/// Vacuums and analyzes the bench's table and outbox.
async fn vacuum(settings: &Settings) -> anyhow::Result<()> {
    let pool = bench_pool().await?;
    let table = &settings.pgvector().table;
    // The id registry beside a table partitioned by tenant, when there is one.
    let registry = format!("{table}_chunk_ids");
    for name in [table, &registry, &settings.dual().outbox_table] {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(name)
            .fetch_one(&pool)
            .await?;
        if exists.is_some() {
            sqlx::raw_sql(&format!("VACUUM ANALYZE {name}"))
                .execute(&pool)
                .await?;
        }
    }
    pool.close().await;
    Ok(())
}

/// Times the replay of everything pending; its rate in rows per second.
async fn replay(up: &DualGateway, rows: usize) -> anyhow::Result<f64> {
    quiet_before("a replay").await;
    let pending = up.outbox_stats().await?.depth;
    let started = Instant::now();
    let report = up.sync().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        report.upserted as usize == rows && report.remaining == 0,
        "the replay of {pending} ids upserted {} rows and left {}",
        report.upserted,
        report.remaining
    );
    Ok(rows_per_s(rows, elapsed))
}

/// Times the Milvus gateway alone upserting `records` back to back in calls of `call_rows`.
async fn upsert_alone(
    milvus: &impl VectorStoreGateway,
    records: &[VectorRecord],
    call_rows: usize,
) -> anyhow::Result<f64> {
    quiet_before("Milvus alone").await;
    let started = Instant::now();
    for batch in records.chunks(call_rows) {
        milvus.upsert_vectors(batch).await?;
    }
    Ok(rows_per_s(records.len(), started.elapsed()))
}

async fn measure(
    args: &Args,
    milvus_rows_per_s: f64,
    settings: &Settings,
) -> anyhow::Result<Value> {
    let rows = args.catch_up_rows.max(1);
    let shape = DataShape {
        rows,
        ..args.shape()
    };
    // The writers' Milvus is down: port 1 refuses at once.
    let down = same_stores(args, settings)
        .set(&vars::MILVUS_PORT, 1)
        .set(&vars::MILVUS_CONNECT_TIMEOUT_MS, 200)
        .set(&vars::DUAL_RELAY, "off")
        .build()?;
    let up = VectorStoreFactory::build_dual(settings).await?;
    let writer = VectorStoreFactory::build_dual(&down).await?;
    let milvus = Stores::milvus_store(settings)?;
    let call_rows = settings.dual().relay_batch_size;
    let mut rounds = Vec::new();
    let mut alone = Vec::new();
    for round in 0..CATCH_UP_ROUNDS {
        // Ids no earlier phase used, the same vectors: the replay's, then Milvus alone's.
        let backlog = generate_records(shape, 1 + (2 * round * rows) as i64);
        let same_size = generate_records(shape, 1 + ((2 * round + 1) * rows) as i64);
        eprintln!("relay catch-up {round}: writing {rows} rows while Milvus is unreachable...");
        for batch in backlog.chunks(1000) {
            writer.upsert_vectors(batch).await?;
        }
        writer.flush_background().await;
        // What autovacuum would have done during an outage longer than these seconds;
        // otherwise it starts during whichever phase comes next.
        vacuum(settings).await?;
        let (replayed, milvus_rate) = if round % 2 == 0 {
            let r = replay(&up, rows).await?;
            (r, upsert_alone(&milvus, &same_size, call_rows).await?)
        } else {
            let m = upsert_alone(&milvus, &same_size, call_rows).await?;
            (replay(&up, rows).await?, m)
        };
        eprintln!(
            "relay catch-up {round}: replay {replayed:.0} rows/s, Milvus alone {milvus_rate:.0} \
             rows/s (calls of {call_rows}): {:.2} x",
            replayed / milvus_rate
        );
        rounds.push(replayed);
        alone.push(milvus_rate);
    }
    let catch_up = median(&rounds);
    let milvus_alone = median(&alone);
    let per_round: Vec<f64> = rounds.iter().zip(&alone).map(|(r, m)| r / m).collect();
    let ratio = median(&per_round);
    let catch_up_target = CATCH_UP_TARGET * milvus_alone;
    let vs_isolated = catch_up / milvus_rows_per_s;

    // Lag under a steady load, Milvus healthy, the relay in the background.
    settle(Duration::from_secs(2)).await;
    let steady = same_stores(args, settings)
        .set(&vars::DUAL_RECONCILE_INTERVAL_MS, 0)
        .build()?;
    let lag_records = generate_records(
        DataShape {
            rows: LAG_IDS,
            ..args.shape()
        },
        1,
    );
    let relaying = VectorStoreFactory::build_dual(&steady).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let gateway = relaying.clone();
        let stop = stop.clone();
        // Both writers cycle through the same ids, so their writes overlap.
        let batches: Vec<_> = lag_records.chunks(50).map(<[_]>::to_vec).collect();
        writers.push(tokio::spawn(async move {
            let mut written = 0u64;
            let mut i = w;
            while !stop.load(Ordering::SeqCst) {
                written += gateway.upsert_vectors(&batches[i % batches.len()]).await?;
                i += 1;
            }
            anyhow::Ok(written)
        }));
    }
    let mut lags = Vec::new();
    let mut max_depth = 0;
    let started = Instant::now();
    while started.elapsed() < LAG_LOAD {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = relaying.outbox_stats().await?;
        max_depth = max_depth.max(stats.depth);
        lags.push(stats.lag.unwrap_or_default());
    }
    stop.store(true, Ordering::SeqCst);
    let mut written = 0;
    for w in writers {
        written += w.await??;
    }
    let lag_p50 = percentile_ms(&mut lags, 50.0);
    let lag_p99 = percentile_ms(&mut lags, 99.0);
    relaying.close().await?;
    up.close().await?;
    writer.close().await?;

    let list = |values: &[f64], digits: usize| {
        values
            .iter()
            .map(|v| format!("{v:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    print_table(
        &format!(
            "dual relay (backlogs of {rows} rows written while Milvus was down; then {} s of steady writes)",
            LAG_LOAD.as_secs()
        ),
        &[
            Figure::target(
                "relay_catch_up_rows_per_s",
                format!(
                    "{catch_up:.0} (median of {CATCH_UP_ROUNDS}: {}); {ratio:.2} x Milvus alone \
                     (median of the rounds: {})",
                    list(&rounds, 0),
                    list(&per_round, 2)
                ),
                format!(
                    ">= {CATCH_UP_TARGET} x Milvus alone in the same round (median of the \
                     rounds); {CATCH_UP_TARGET} x its median = {catch_up_target:.0}"
                ),
                ratio >= CATCH_UP_TARGET,
            ),
            Figure::info(
                "Milvus alone, same-size backlog, back to back (rows/s)",
                format!("{milvus_alone:.0} (median; calls of {call_rows}: {})", list(&alone, 0)),
            ),
            Figure::info(
                "Milvus, single 1,000-row calls seconds apart (rows/s)",
                format!("{milvus_rows_per_s:.0}; the replay ran at {vs_isolated:.2} x"),
            ),
            Figure::target(
                "relay_lag_p99_ms (steady load)",
                format!("{lag_p99:.0} (p50 {lag_p50:.0}, outbox depth at most {max_depth})"),
                format!("< {LAG_TARGET_MS:.0}"),
                lag_p99 < LAG_TARGET_MS,
            ),
            Figure::info("rows written during the lag run", written.to_string()),
        ],
    );
    Ok(json!({
        "relay_catch_up_rows_per_s": catch_up,
        "relay_catch_up_rows": rows,
        "relay_catch_up_rounds_rows_per_s": rounds,
        "relay_catch_up_target_rows_per_s": catch_up_target,
        "relay_catch_up_milvus_alone_rows_per_s": milvus_alone,
        "relay_catch_up_milvus_alone_rounds_rows_per_s": alone,
        "relay_catch_up_vs_milvus_alone": ratio,
        "relay_catch_up_milvus_single_calls_rows_per_s": milvus_rows_per_s,
        "relay_catch_up_vs_milvus_single_calls": vs_isolated,
        "relay_lag_p50_ms": lag_p50,
        "relay_lag_p99_ms": lag_p99,
        "relay_lag_max_outbox_depth": max_depth,
        "relay_lag_rows_written": written,
    }))
}
