//! dual, the relay: how fast it replays what Milvus missed during an outage (catch-up), and
//! how far Milvus trails pgvector under a steady write load with Milvus healthy (lag).
//!
//! Catch-up: a dual gateway whose Milvus is unreachable (a closed port) writes the rows, so
//! every id lands in the outbox as a failed write; then a gateway on the real Milvus
//! replays them (`sync`), timed. Five rounds (a replay of 10,000 rows lasts under a
//! second, so one round mostly measures what else the machine was doing); the median is
//! reported. Target: >= 0.8 x the Milvus gateway's upsert rate of the same run (1,000 rows
//! over the p50 of single 1,000-row calls, each after seconds of idle). Each round also
//! times the Milvus gateway alone upserting the same rows back to back, in calls the size of
//! the relay's batches: the sustained rate a replay competes with, reported beside it.
//! Lag: two writers upsert overlapping ids (ids their writes leave to the relay) for a while
//! with the background relay on; the outbox's lag is sampled every 100 ms. Target: p99
//! under 2 s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vectorgate_composition::{vars, Stores, VectorStoreFactory};
use vectorgate_domain::VectorStoreGateway;
use vectorgate_testkit::generate_records;

use crate::common::{
    drop_tables, median, percentile_ms, print_table, rows_per_s, settle, Args, Figure,
};
use crate::dual::builder;

const CATCH_UP_TARGET: f64 = 0.8;
const CATCH_UP_ROUNDS: usize = 5;
const LAG_TARGET_MS: f64 = 2000.0;
const LAG_LOAD: Duration = Duration::from_secs(20);

pub async fn run(args: &Args, milvus_rows_per_s: f64) -> anyhow::Result<Value> {
    let settings = builder(args, "relay")
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

async fn measure(
    args: &Args,
    milvus_rows_per_s: f64,
    settings: &vectorgate_composition::Settings,
) -> anyhow::Result<Value> {
    let rows = args.rows.min(10_000);
    let records = generate_records(
        vectorgate_testkit::DataShape {
            rows,
            ..args.shape()
        },
        1,
    );
    // The writers' Milvus is down: port 1 refuses at once.
    let down = builder(args, "relay")
        .set(&vars::PGVECTOR_TABLE, &settings.pgvector().table)
        .set(&vars::DUAL_OUTBOX_TABLE, &settings.dual().outbox_table)
        .set(&vars::MILVUS_COLLECTION, &settings.milvus().collection)
        .set(&vars::MILVUS_PORT, 1)
        .set(&vars::MILVUS_CONNECT_TIMEOUT_MS, 200)
        .set(&vars::DUAL_RELAY, "off")
        .build()?;
    let up = VectorStoreFactory::build_dual(settings).await?;
    let writer = VectorStoreFactory::build_dual(&down).await?;
    let milvus = Stores::milvus_store(settings)?;
    let call_rows = settings.dual().relay_batch_size;
    // Every round writes the same rows again (pgvector updates them, Milvus misses them).
    let mut rounds = Vec::new();
    let mut alone = Vec::new();
    for round in 0..CATCH_UP_ROUNDS {
        eprintln!("relay catch-up {round}: writing {rows} rows while Milvus is unreachable...");
        for batch in records.chunks(1000) {
            writer.upsert_vectors(batch).await?;
        }
        writer.flush_background().await;
        settle(Duration::from_secs(2)).await;
        let pending = up.outbox_stats().await?.depth;
        let started = Instant::now();
        let report = up.sync().await?;
        let seconds = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            report.upserted as usize == rows && report.remaining == 0,
            "the replay of {pending} ids upserted {} rows and left {}",
            report.upserted,
            report.remaining
        );
        let rate = report.upserted as f64 / seconds;
        eprintln!(
            "relay catch-up {round}: {pending} ids replayed in {seconds:.2} s ({rate:.0} rows/s)"
        );
        rounds.push(rate);

        settle(Duration::from_secs(2)).await;
        let started = Instant::now();
        for batch in records.chunks(call_rows) {
            milvus.upsert_vectors(batch).await?;
        }
        let milvus_rate = rows_per_s(rows, started.elapsed());
        eprintln!(
            "relay catch-up {round}: Milvus alone upserted the same rows at {milvus_rate:.0} rows/s \
             (calls of {call_rows}): the replay ran at {:.2} x",
            rate / milvus_rate
        );
        alone.push(milvus_rate);
    }
    let catch_up = median(&rounds);
    let sustained = median(&alone);
    let per_round: Vec<f64> = rounds.iter().zip(&alone).map(|(r, m)| r / m).collect();
    let sustained_ratio = median(&per_round);
    let catch_up_target = CATCH_UP_TARGET * milvus_rows_per_s;

    // Lag under a steady load, Milvus healthy, the relay in the background.
    let steady = builder(args, "relay")
        .set(&vars::PGVECTOR_TABLE, &settings.pgvector().table)
        .set(&vars::DUAL_OUTBOX_TABLE, &settings.dual().outbox_table)
        .set(&vars::MILVUS_COLLECTION, &settings.milvus().collection)
        .set(&vars::DUAL_RECONCILE_INTERVAL_MS, 0)
        .build()?;
    let relaying = VectorStoreFactory::build_dual(&steady).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let gateway = relaying.clone();
        let stop = stop.clone();
        // Both writers cycle through the same ids, so their writes overlap.
        let batches: Vec<_> = records[..2000.min(rows)]
            .chunks(50)
            .map(<[_]>::to_vec)
            .collect();
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

    print_table(
        &format!("dual relay ({rows} rows written while Milvus was down; then {} s of steady writes)", LAG_LOAD.as_secs()),
        &[
            Figure::target(
                "relay_catch_up_rows_per_s",
                format!(
                    "{catch_up:.0} ({rows} rows a round, median of {CATCH_UP_ROUNDS}: {})",
                    rounds.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
                ),
                format!(">= {CATCH_UP_TARGET} x Milvus upsert {milvus_rows_per_s:.0} = {catch_up_target:.0}"),
                catch_up >= catch_up_target,
            ),
            Figure::info(
                "Milvus alone, same rows, back to back (rows/s)",
                format!(
                    "{sustained:.0} (median; calls of {call_rows}); the replay ran at {sustained_ratio:.2} x \
                     (median of the rounds: {})",
                    per_round.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
                ),
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
        "relay_catch_up_milvus_same_rows_rows_per_s": sustained,
        "relay_catch_up_vs_milvus_same_rows": sustained_ratio,
        "relay_lag_p50_ms": lag_p50,
        "relay_lag_p99_ms": lag_p99,
        "relay_lag_max_outbox_depth": max_depth,
        "relay_lag_rows_written": written,
    }))
}
