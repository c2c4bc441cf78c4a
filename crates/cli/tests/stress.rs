//! Dual mode under everything at once, against the real servers: concurrent writers over
//! overlapping ids (10% of upserts move a chunk to another tenant) with project deletes,
//! a backfill, three relays contending for the lead, Milvus SIGKILLed and restarted, and a
//! writer process SIGKILLed mid-import. After the relays drain, an independent row-by-row
//! comparison of both stores (ids, tenants, projects, vectors) must find no difference.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vectorgate_adapter_milvus::{Consistency, MilvusConfig, MilvusStore};
use vectorgate_composition::{vars, DualGateway, Settings, VectorStoreFactory, VectorStoreMode};
use vectorgate_domain::{
    ChunkId, DeleteRequest, Embedding, GatewayError, ProjectId, ScanFilter, StoreKind, TenantId,
    VectorRecord, VectorStoreGateway,
};
use vectorgate_testkit::{milvus_tests_enabled, unique_name, unit_vector, OwnMilvus, ServicesEnv};

use support::DIM;

const IDS: i64 = 400;
const TENANTS: i64 = 4;
const PROJECTS: i64 = 3;

struct Names {
    table: String,
    outbox: String,
    collection: String,
}

fn settings(names: &Names, milvus_port: u16) -> Settings {
    let env = ServicesEnv::load();
    Settings::builder()
        .set(&vars::VECTOR_STORE_MODE, VectorStoreMode::Dual)
        .set(&vars::EMBEDDING_DIM, DIM)
        // One upsert in ten moves a chunk to another tenant, on purpose.
        .set(&vars::ALLOW_TENANT_MOVE, true)
        .set(&vars::DATABASE_URL, env.database_url())
        .set(&vars::PGVECTOR_TABLE, &names.table)
        .set(&vars::DUAL_OUTBOX_TABLE, &names.outbox)
        .set(&vars::MILVUS_HOST, "127.0.0.1")
        .set(&vars::MILVUS_PORT, milvus_port)
        .set(&vars::MILVUS_COLLECTION, &names.collection)
        .set(&vars::MILVUS_CONNECT_TIMEOUT_MS, 1000)
        .set(&vars::MILVUS_CALL_TIMEOUT_MS, 3000)
        // Short leases, so that the killed writer's ids are taken over within the test; the
        // statement deadline below them still leaves room for lock waits on 2 busy cores.
        .set(&vars::DUAL_INTENT_LEASE_MS, 8000)
        // Statements must end well within the lease (the settings refuse otherwise).
        .set(&vars::PGVECTOR_STATEMENT_TIMEOUT_MS, 6000)
        .set(&vars::DUAL_RELAY_INTERVAL_MS, 200)
        .set(&vars::DUAL_RECONCILE_INTERVAL_MS, 0)
        .set(&vars::SYNC_BATCH_SIZE, 200)
        .build()
        .unwrap()
}

fn record(rng: &mut impl Rng, id: i64, tenant: i64) -> VectorRecord {
    VectorRecord::new(
        ChunkId::new(id).unwrap(),
        TenantId::new(tenant).unwrap(),
        ProjectId::new(rng.gen_range(1..=PROJECTS)).unwrap(),
        Embedding::new(unit_vector(rng, DIM as usize)).unwrap(),
    )
}

/// Writes until `stop`: upserts over the shared id range (10% of them moving a chunk to
/// another tenant), chunk deletes and project deletes.
async fn writer(dual: Arc<DualGateway>, seed: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut writes = 0;
    while !stop.load(Ordering::SeqCst) {
        let roll = rng.gen_range(0..100);
        let result = if roll < 85 {
            let mut ids: Vec<i64> = (0..20).map(|_| rng.gen_range(0..IDS)).collect();
            ids.sort_unstable();
            ids.dedup();
            let batch: Vec<VectorRecord> = ids
                .iter()
                .map(|&id| {
                    // Each id has a home tenant; one upsert in ten moves it elsewhere.
                    let home = id % TENANTS + 1;
                    let tenant = if rng.gen_range(0..10) == 0 {
                        rng.gen_range(1..=TENANTS)
                    } else {
                        home
                    };
                    record(&mut rng, id, tenant)
                })
                .collect();
            dual.upsert_vectors(&batch).await.map(|_| ())
        } else if roll < 95 {
            let tenant = TenantId::new(rng.gen_range(1..=TENANTS)).unwrap();
            let ids = (0..5).map(|_| ChunkId::new(rng.gen_range(0..IDS)).unwrap());
            dual.delete_vectors(&DeleteRequest::chunks(tenant, ids))
                .await
                .map(|_| ())
        } else {
            let tenant = TenantId::new(rng.gen_range(1..=TENANTS)).unwrap();
            let project = ProjectId::new(rng.gen_range(1..=PROJECTS)).unwrap();
            dual.delete_vectors(&DeleteRequest::project(tenant, project))
                .await
                .map(|_| ())
        };
        // Only pgvector failures reach the caller: a statement deadline hit behind this
        // test's pile of lock waits, or PostgreSQL itself gone for a moment (pgvector 0.8.2,
        // which the test server runs, has HNSW insert/vacuum races this churn can trip, and
        // a crashed backend restarts the server). Either way that write did not happen in
        // pgvector, or happened without its answer, and the stores must still converge.
        match result {
            Ok(()) => writes += 1,
            Err(GatewayError::Timeout { .. }) => {}
            Err(GatewayError::Unavailable {
                store: StoreKind::Pgvector,
                reason,
                ..
            }) => {
                eprintln!("writer {seed}: pgvector unavailable, write not acknowledged: {reason}")
            }
            Err(other) => panic!("a dual write fails only when pgvector does: {other}"),
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
    }
    writes
}

async fn pg_rows(settings: &Settings) -> BTreeMap<i64, VectorRecord> {
    let pg = vectorgate_composition::Stores::pgvector_store(settings).unwrap();
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = pg.scan(ScanFilter::all(), after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.chunk_id);
        out.extend(page.into_iter().map(|r| (r.chunk_id.get(), r)));
    }
    out
}

async fn milvus_rows(settings: &Settings) -> BTreeMap<i64, VectorRecord> {
    let mut config: MilvusConfig = settings.milvus().clone();
    config.consistency = Consistency::Strong;
    let milvus = MilvusStore::new(config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    // After a restart Milvus reloads the collection on its own; reads wait for it.
    while milvus.schema().status().await.ok().and_then(|s| s.loaded) != Some(true) {
        assert!(
            Instant::now() < deadline,
            "Milvus did not reload the collection"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    milvus
        .scan_range(
            ScanFilter::all(),
            ChunkId::new(0).unwrap(),
            ChunkId::new(i64::MAX).unwrap(),
            true,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let r = r.into_record().unwrap();
            (r.chunk_id.get(), r)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everything_at_once_converges_to_identical_stores() {
    if !milvus_tests_enabled("everything_at_once_converges_to_identical_stores") {
        return;
    }
    let mut server = OwnMilvus::new(23_000);
    tokio::task::block_in_place(|| server.start(5));
    let names = Names {
        table: unique_name("stress"),
        outbox: unique_name("stress_outbox"),
        collection: unique_name("stress"),
    };
    let settings = settings(&names, server.port());
    let env: Vec<(&str, String)> = vec![
        ("VECTOR_STORE_MODE", "dual".into()),
        ("EMBEDDING_DIM", DIM.to_string()),
        ("DATABASE_URL", ServicesEnv::load().database_url()),
        ("PGVECTOR_TABLE", names.table.clone()),
        ("DUAL_OUTBOX_TABLE", names.outbox.clone()),
        ("MILVUS_HOST", "127.0.0.1".into()),
        ("MILVUS_PORT", server.port().to_string()),
        ("MILVUS_COLLECTION", names.collection.clone()),
        ("MILVUS_CONNECT_TIMEOUT_MS", "1000".into()),
        ("MILVUS_CALL_TIMEOUT_MS", "3000".into()),
        ("DUAL_INTENT_LEASE_MS", "8000".into()),
        ("PGVECTOR_STATEMENT_TIMEOUT_MS", "6000".into()),
        ("ALLOW_TENANT_MOVE", "true".into()),
    ];
    let vectorgate = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vectorgate"));
        cmd.args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.env_remove("RUST_LOG");
        cmd
    };

    // Three gateways, as three replicas of a service: their relays contend for the lead.
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(VectorStoreFactory::build_dual(&settings).await.unwrap());
    }
    // Rows in pgvector before dual writes start, for the backfill to copy meanwhile.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let seed_rows: Vec<VectorRecord> = (IDS..IDS + 300)
        .map(|id| record(&mut rng, id, id % TENANTS + 1))
        .collect();
    vectorgate_composition::Stores::pgvector_store(&settings)
        .unwrap()
        .upsert_vectors(&seed_rows)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = gateways
        .iter()
        .enumerate()
        .map(|(i, g)| tokio::spawn(writer(g.clone(), i as u64 + 1, stop.clone())))
        .collect();
    let backfill = vectorgate(&["backfill", "--batch", "100"]).spawn().unwrap();

    // A writer process killed mid-import: its ids stay leased, then the relay takes over.
    let dir = tempfile::tempdir().unwrap();
    let import_file = dir.path().join("import.jsonl");
    let import_rows: Vec<VectorRecord> = (IDS + 300..IDS + 2300)
        .map(|id| record(&mut rng, id, id % TENANTS + 1))
        .collect();
    std::fs::write(
        &import_file,
        import_rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let mut import = vectorgate(&[
        "import",
        "--batch",
        "20",
        "--file",
        import_file.to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    import.kill().expect("SIGKILL the importing writer");
    let _ = import.wait();

    // Milvus dies mid-stream and comes back. Milvus 2.3.5 standalone restarted on its data
    // after SIGKILL often dies in its first start (stale etcd sessions), so a few starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| server.kill());
    tokio::time::sleep(Duration::from_secs(4)).await;
    tokio::task::block_in_place(|| server.start(5));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::SeqCst);
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    // The backfill waits out the Milvus restart and completes.
    let backfill = backfill.wait_with_output().unwrap();
    assert_eq!(
        backfill.status.code(),
        Some(0),
        "backfill: {}",
        String::from_utf8_lossy(&backfill.stderr)
    );

    // The relays drain on their own (the killed writer's lease runs out first).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let stats = gateways[0].outbox_stats().await.unwrap();
        if stats.depth == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relays did not drain the outbox: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for g in &gateways {
        g.close().await.unwrap();
    }

    let (in_pg, in_milvus) = (pg_rows(&settings).await, milvus_rows(&settings).await);
    eprintln!(
        "stress: {writes} dual writes; pgvector holds {} rows, Milvus {}",
        in_pg.len(),
        in_milvus.len()
    );
    let missing: Vec<_> = in_pg
        .keys()
        .filter(|k| !in_milvus.contains_key(k))
        .collect();
    let extra: Vec<_> = in_milvus
        .keys()
        .filter(|k| !in_pg.contains_key(k))
        .collect();
    let differing: Vec<_> = in_pg
        .iter()
        .filter(|(k, r)| in_milvus.get(k).is_some_and(|m| m != *r))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differing.is_empty(),
        "missing in Milvus {missing:?}, only in Milvus {extra:?}, differing {differing:?}"
    );
    assert!(in_pg.len() > 300, "the test wrote something");

    // Clean up the tables (the collection goes with the server).
    let pool = sqlx::PgPool::connect(&ServicesEnv::load().database_url())
        .await
        .unwrap();
    for table in [&names.table, &names.outbox] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}, {table}_chunk_ids"))
            .execute(&pool)
            .await
            .unwrap();
    }
}
