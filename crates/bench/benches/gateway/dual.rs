//! dual: upsert latency of the dual gateway (batch 1000) beside pgvector alone and Milvus
//! alone, measured in the same run on the same batches, plus one PostgreSQL round trip
//! (the cost of recording the outbox intent). Target: dual p50 <= 1.15 x max(pgvector p50,
//! Milvus p50) + one round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vectorgate_adapter_milvus::MilvusStore;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_composition::{
    vars, Settings, SettingsBuilder, Stores, VectorStoreFactory, VectorStoreMode,
};
use vectorgate_domain::{Metric, VectorStoreGateway};
use vectorgate_testkit::{generate_records, unique_name, ServicesEnv};

use crate::common::{bench_pool, drop_tables, percentile_ms, print_table, Args, Figure};

const BATCH: usize = 1000;
const TARGET_FACTOR: f64 = 1.15;

fn settings(args: &Args, purpose: &str) -> anyhow::Result<Settings> {
    Ok(builder(args, purpose).build()?)
}

/// The dual settings of one purpose's own table, outbox and collection.
pub fn builder(args: &Args, purpose: &str) -> SettingsBuilder {
    let env = ServicesEnv::load();
    Settings::builder()
        .set(&vars::EMBEDDING_DIM, args.dim)
        .set(&vars::VECTOR_STORE_MODE, VectorStoreMode::Dual)
        .set(&vars::VECTOR_METRIC, Metric::Ip)
        .set(&vars::DATABASE_URL, env.database_url())
        .set(
            &vars::PGVECTOR_TABLE,
            unique_name(&format!("bench_dual_{purpose}")),
        )
        .set(
            &vars::DUAL_OUTBOX_TABLE,
            unique_name(&format!("bench_dual_outbox_{purpose}")),
        )
        .set(&vars::MILVUS_HOST, env.milvus_host())
        .set(&vars::MILVUS_PORT, env.milvus_port())
        .set(
            &vars::MILVUS_COLLECTION,
            unique_name(&format!("bench_dual_{purpose}")),
        )
        .set(&vars::UPSERT_BATCH_SIZE, BATCH)
}

pub async fn run(args: &Args) -> anyhow::Result<Value> {
    // Three independent sets of tables/collections receive the same batches: pgvector
    // alone, Milvus alone, and the dual gateway (its own table + collection + outbox).
    let alone = settings(args, "alone")?;
    let dual_settings = settings(args, "dual")?;
    let pg = Stores::pgvector_store(&alone)?;
    let milvus = Stores::milvus_store(&alone)?;
    let mut outcome = measure(args, &pg, &milvus, &dual_settings).await;
    if let Ok(Value::Object(figures)) = &mut outcome {
        let milvus_rows_per_s = figures
            .get("milvus_upsert_p50_ms")
            .and_then(Value::as_f64)
            .map(|p50| BATCH as f64 * 1000.0 / p50)
            .unwrap_or(f64::NAN);
        match crate::relay::run(args, milvus_rows_per_s).await {
            Ok(Value::Object(relay)) => figures.extend(relay),
            Ok(_) => {}
            Err(e) => outcome = Err(e),
        }
    }

    let dual_stores = Stores::both(&dual_settings)?;
    drop_tables(&[
        &alone.pgvector().table,
        &dual_settings.pgvector().table,
        &dual_settings.dual().outbox_table,
    ])
    .await;
    for store in [&milvus, dual_stores.require_milvus()?] {
        if let Err(e) = store.schema().drop_collection().await {
            eprintln!("warning: could not drop a bench collection: {e}");
        }
    }
    outcome
}

async fn measure(
    args: &Args,
    pg: &PgVectorStore,
    milvus: &MilvusStore,
    dual_settings: &Settings,
) -> anyhow::Result<Value> {
    eprintln!("generating {} records (dim {})...", args.rows, args.dim);
    let records = generate_records(args.shape(), 1);
    pg.bootstrap().await?;
    milvus.ensure_schema().await?;
    let dual = VectorStoreFactory::build_dual(dual_settings).await?;

    let pg_gateway: Arc<dyn VectorStoreGateway> = Arc::new(pg.clone());
    let milvus_gateway: Arc<dyn VectorStoreGateway> = Arc::new(milvus.clone());
    let dual_gateway: Arc<dyn VectorStoreGateway> = dual.clone();
    let methods = [
        ("pgvector", pg_gateway),
        ("milvus", milvus_gateway),
        ("dual", dual_gateway),
    ];

    // One PostgreSQL round trip (what recording the intent costs), on a warm pool.
    let pool = bench_pool().await?;
    let mut round_trips = Vec::new();
    for i in 0..60 {
        let t = Instant::now();
        sqlx::query("SELECT 1").execute(&pool).await?;
        if i >= 10 {
            round_trips.push(t.elapsed());
        }
    }
    let pg_round_trip_ms = percentile_ms(&mut round_trips, 50.0);

    // Batches of 1000 in rotated order, so that every method sees the same machine load
    // and the same table/collection sizes over the run. The first round warms up.
    let batches: Vec<_> = records.chunks(BATCH).collect();
    eprintln!(
        "upserting {} batches of {BATCH} into pgvector alone, Milvus alone and dual, rotated...",
        batches.len()
    );
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for (round, batch) in batches.iter().enumerate() {
        for step in 0..3 {
            let method = (round + step) % 3;
            let t = Instant::now();
            methods[method].1.upsert_vectors(batch).await?;
            if round > 0 {
                samples[method].push(t.elapsed());
            }
        }
    }
    dual.flush_background().await;
    let outbox_depth_after = dual.outbox_stats().await?.depth;

    let [pg_s, milvus_s, dual_s] = &mut samples;
    let pgvector_p50 = percentile_ms(pg_s, 50.0);
    let milvus_p50 = percentile_ms(milvus_s, 50.0);
    let dual_p50 = percentile_ms(dual_s, 50.0);
    let dual_p95 = percentile_ms(dual_s, 95.0);
    let slower = pgvector_p50.max(milvus_p50);
    let bound = TARGET_FACTOR * slower + pg_round_trip_ms;
    let met = dual_p50 <= bound;

    print_table(
        &format!(
            "dual upsert, batch {BATCH}, {} rows, dim {} ({} measured batches per method)",
            args.rows,
            args.dim,
            dual_s.len()
        ),
        &[
            Figure::info("pgvector_upsert_p50_ms", format!("{pgvector_p50:.1}")),
            Figure::info("milvus_upsert_p50_ms", format!("{milvus_p50:.1}")),
            Figure::info("pg_round_trip_ms", format!("{pg_round_trip_ms:.2}")),
            Figure::target(
                "upsert_p50_ms (dual)",
                format!("{dual_p50:.1}"),
                format!("<= 1.15 x {slower:.1} + {pg_round_trip_ms:.2} = {bound:.1}"),
                met,
            ),
            Figure::info("upsert_p95_ms (dual)", format!("{dual_p95:.1}")),
            Figure::info(
                "sum of both stores (sequential)",
                format!("{:.1}", pgvector_p50 + milvus_p50),
            ),
            Figure::target(
                "outbox entries left",
                outbox_depth_after.to_string(),
                "0".into(),
                outbox_depth_after == 0,
            ),
        ],
    );
    dual.close().await?;

    Ok(json!({
        "params": {
            "rows": args.rows,
            "dim": args.dim,
            "batch": BATCH,
            "measured_batches_per_method": dual_s.len(),
            "metric": "IP",
        },
        "upsert_p50_ms": dual_p50,
        "upsert_p95_ms": dual_p95,
        "pgvector_upsert_p50_ms": pgvector_p50,
        "milvus_upsert_p50_ms": milvus_p50,
        "pg_round_trip_ms": pg_round_trip_ms,
        "target_upsert_p50_ms": bound,
        "target_met": met,
        "outbox_depth_after": outbox_depth_after,
    }))
}
