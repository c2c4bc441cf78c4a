//! Dual mode against the real servers: round trip, pgvector/Milvus parity of exact search,
//! and a Milvus killed mid-stream (its own server, so the shared ones are never touched).
//!
//! Needs DATABASE_URL (fails without it) and RUN_MILVUS_TESTS=1 plus a Milvus
//! (MILVUS_HOST/MILVUS_PORT); the fault test starts a Milvus of its own through xtask's code
//! (the pinned wheel that `cargo xtask services up` installs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vectorgate_adapter_milvus::{Consistency, MilvusStore};
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_composition::{
    vars, DualGateway, ReadFrom, Settings, SettingsBuilder, Stores, VectorStoreFactory,
    VectorStoreMode,
};
use vectorgate_domain::{
    ChunkId, DeleteRequest, Embedding, Metric, ScanFilter, SearchRequest, SearchScope, TopK,
    VectorRecord, VectorStoreGateway,
};
use vectorgate_testkit::{
    exact_top_k, generate_queries, generate_records, milvus_tests_enabled, project, tenant,
    unique_name, DataShape, OwnMilvus, ServicesEnv,
};

const DIM: u32 = 16;

fn builder(metric: Metric, milvus_host: &str, milvus_port: u16) -> SettingsBuilder {
    builder_of_dim(DIM, metric, milvus_host, milvus_port)
}

fn builder_of_dim(
    dim: u32,
    metric: Metric,
    milvus_host: &str,
    milvus_port: u16,
) -> SettingsBuilder {
    let env = ServicesEnv::load();
    Settings::builder()
        .set(&vars::EMBEDDING_DIM, dim)
        // These tests move chunks between tenants on purpose, to see the move reach Milvus
        // (the refusal is tested in the pgvector suite and the dual unit tests).
        .set(&vars::ALLOW_TENANT_MOVE, true)
        .set(&vars::VECTOR_STORE_MODE, VectorStoreMode::Dual)
        .set(&vars::VECTOR_METRIC, metric)
        .set(&vars::DATABASE_URL, env.database_url())
        .set(&vars::PGVECTOR_TABLE, unique_name("dual_chunks"))
        .set(&vars::PGVECTOR_HNSW_EF_SEARCH, 1000)
        .set(&vars::DUAL_OUTBOX_TABLE, unique_name("dual_outbox"))
        .set(&vars::MILVUS_HOST, milvus_host)
        .set(&vars::MILVUS_PORT, milvus_port)
        .set(&vars::MILVUS_COLLECTION, unique_name("dual_chunks"))
        // nprobe = nlist: IVF_FLAT visits every list, i.e. exact search.
        .set(&vars::MILVUS_INDEX_NLIST, 16)
        .set(&vars::MILVUS_SEARCH_NPROBE, 16)
        .set(&vars::MILVUS_CONSISTENCY, Consistency::Strong)
        // The tests replay with sync() unless they test the relay itself.
        .set(&vars::DUAL_RELAY, "off")
}

fn settings(metric: Metric, milvus_host: &str, milvus_port: u16) -> Settings {
    builder(metric, milvus_host, milvus_port).build().unwrap()
}

/// Drops tables with the test's own connection (not through the code under test).
async fn drop_tables(tables: &[&str]) {
    let pool = sqlx::PgPool::connect(&ServicesEnv::load().database_url())
        .await
        .unwrap();
    for table in tables {
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}, {table}_chunk_ids"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

fn env_host() -> String {
    ServicesEnv::load().milvus_host()
}

fn env_port() -> u16 {
    ServicesEnv::load().milvus_port()
}

fn shared_milvus_settings(metric: Metric) -> Settings {
    settings(metric, &env_host(), env_port())
}

/// Drops what a test created: both tables, the collection and the mode record.
async fn cleanup(settings: &Settings) {
    let stores = Stores::both(settings).unwrap();
    drop_tables(&[&settings.pgvector().table, &settings.dual().outbox_table]).await;
    let pool = sqlx::PgPool::connect(&ServicesEnv::load().database_url())
        .await
        .unwrap();
    sqlx::query("DELETE FROM vectorgate_state WHERE key = $1")
        .bind(format!("vector_store_mode:{}", settings.pgvector().table))
        .execute(&pool)
        .await
        .ok();
    let _ = stores.milvus.unwrap().schema().drop_collection().await;
}

/// Every row of pgvector, by chunk id.
async fn pg_rows(pg: &PgVectorStore) -> Vec<VectorRecord> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = pg.scan(ScanFilter::all(), after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.chunk_id);
        out.extend(page);
    }
    out
}

/// Every row of Milvus, by chunk id.
async fn milvus_rows(milvus: &MilvusStore) -> Vec<VectorRecord> {
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
        .map(|r| r.into_record().expect("scan asked for vectors"))
        .collect()
}

fn shape(rows: usize, seed: u64) -> DataShape {
    DataShape {
        rows,
        dim: DIM as usize,
        tenants: 2,
        projects_per_tenant: 3,
        seed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_round_trip_keeps_both_stores_equal() {
    if !milvus_tests_enabled("dual_round_trip_keeps_both_stores_equal") {
        return;
    }
    let settings = shared_milvus_settings(Metric::Ip);
    let dual = VectorStoreFactory::build_dual(&settings).await.unwrap();
    let stores = Stores::both(&settings).unwrap();
    let (pg, milvus) = (stores.pgvector.unwrap(), stores.milvus.unwrap());

    let records = generate_records(shape(120, 7), 1_000);
    assert_eq!(dual.upsert_vectors(&records).await.unwrap(), 120);
    // A re-upsert moves chunk 1000 to another tenant and changes its vector.
    let moved = VectorRecord::new(
        records[0].chunk_id,
        tenant(2),
        project(3),
        Embedding::new(vec![0.25; DIM as usize]).unwrap(),
    );
    dual.upsert_vectors(std::slice::from_ref(&moved))
        .await
        .unwrap();
    let deleted = dual
        .delete_vectors(&DeleteRequest::chunks(
            records[1].tenant_id,
            [records[1].chunk_id, records[7].chunk_id],
        ))
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let deleted = dual
        .delete_vectors(&DeleteRequest::project(tenant(1), project(2)))
        .await
        .unwrap();
    assert!(deleted > 0);
    dual.flush_background().await;

    let in_pg = pg_rows(&pg).await;
    assert_eq!(in_pg, milvus_rows(&milvus).await, "stores differ");
    assert!(in_pg.contains(&moved));
    assert!(!in_pg.iter().any(|r| r.chunk_id == records[1].chunk_id));
    // Overlapping writes may conservatively keep their intents (see dual.rs); a sync must
    // then replay them without changing anything and leave the outbox empty.
    if dual.outbox_stats().await.unwrap().depth > 0 {
        let report = dual.sync().await.unwrap();
        assert_eq!(report.entries_failed, 0, "{report:?}");
        assert_eq!(
            in_pg,
            milvus_rows(&milvus).await,
            "sync changed agreeing stores"
        );
    }
    assert_eq!(dual.outbox_stats().await.unwrap().depth, 0);

    // Reads: pgvector by default; the same top hits through Milvus.
    let query = SearchRequest::new(
        SearchScope::tenant(tenant(2)),
        Embedding::new(vec![0.25; DIM as usize]).unwrap(),
        TopK::new(5).unwrap(),
    );
    let from_pg = dual.search(&query).await.unwrap();
    assert_eq!(from_pg[0].chunk_id, moved.chunk_id);
    let via_milvus = builder(Metric::Ip, &env_host(), env_port())
        .set(&vars::PGVECTOR_TABLE, &settings.pgvector().table)
        .set(&vars::DUAL_OUTBOX_TABLE, &settings.dual().outbox_table)
        .set(&vars::MILVUS_COLLECTION, &settings.milvus().collection)
        .set(&vars::DUAL_READ_FROM, ReadFrom::Milvus)
        .build()
        .unwrap();
    let dual_milvus = VectorStoreFactory::build_dual(&via_milvus).await.unwrap();
    let from_milvus = dual_milvus.search(&query).await.unwrap();
    let ids =
        |hits: &[vectorgate_domain::SearchHit]| hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>();
    assert_eq!(ids(&from_pg), ids(&from_milvus));

    let report = dual.sync().await.unwrap();
    assert_eq!(report.remaining, 0);
    dual.close().await.unwrap();
    cleanup(&settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_search_agrees_between_pgvector_and_milvus_for_every_metric() {
    if !milvus_tests_enabled("exact_search_agrees_between_pgvector_and_milvus_for_every_metric") {
        return;
    }
    for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
        assert_parity(DIM, metric, Path::Exact).await;
    }
}

/// 3,072 dimensions (OpenAI's text-embedding-3-large): pgvector indexes a halfvec
/// expression there. Its exact path must equal Milvus and brute force; its index path ranks
/// candidates in half precision and scores them from the full-precision column, so scores
/// still agree within 1e-3 while one of ten ids may differ (a near tie at the 10th place
/// can order differently in 16-bit floats).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_at_3072_dimensions_agrees_between_pgvector_and_milvus() {
    if !milvus_tests_enabled("search_at_3072_dimensions_agrees_between_pgvector_and_milvus") {
        return;
    }
    for metric in [Metric::Ip, Metric::Cosine] {
        assert_parity(3072, metric, Path::Exact).await;
        assert_parity(3072, metric, Path::HalfPrecisionIndex).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    /// pgvector reads the (small) scope exactly.
    Exact,
    /// pgvector goes through its vector index (exact search switched off).
    HalfPrecisionIndex,
}

async fn assert_parity(dim: u32, metric: Metric, path: Path) {
    let mut builder = builder_of_dim(dim, metric, &env_host(), env_port());
    if path == Path::HalfPrecisionIndex {
        builder = builder.set(&vars::PGVECTOR_EXACT_SEARCH_MAX_ROWS, 0);
    }
    let settings = builder.build().unwrap();
    assert_eq!(settings.pgvector().half_precision_index(), dim > 2000);
    let dual = VectorStoreFactory::build_dual(&settings).await.unwrap();
    let stores = Stores::both(&settings).unwrap();
    let (pg, milvus) = (stores.pgvector.unwrap(), stores.milvus.unwrap());
    let shape = DataShape {
        dim: dim as usize,
        ..shape(300, 11)
    };
    // Varying norms, so that IP, cosine and L2 rank differently.
    let records: Vec<VectorRecord> = generate_records(shape, 1)
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let scale = 0.5 + (i % 7) as f32 * 0.25;
            let v = r.embedding.as_slice().iter().map(|x| x * scale).collect();
            VectorRecord::new(
                r.chunk_id,
                r.tenant_id,
                r.project_id,
                Embedding::new(v).unwrap(),
            )
        })
        .collect();
    dual.upsert_vectors(&records).await.unwrap();
    dual.flush_background().await;

    let (score_tolerance, ids_may_differ) = match path {
        Path::Exact => (if dim > 100 { 1e-3 } else { 1e-4 }, 0),
        Path::HalfPrecisionIndex => (1e-3, 1),
    };
    let scopes = [
        SearchScope::tenant(tenant(1)),
        SearchScope::projects(tenant(2), [project(1), project(3)]).unwrap(),
    ];
    let label = format!("{metric} dim {dim} {path:?}");
    for (q, query) in generate_queries(5, dim as usize, 3).into_iter().enumerate() {
        for scope in &scopes {
            let request = SearchRequest::new(scope.clone(), query.clone(), TopK::new(10).unwrap());
            let a = pg.search(&request).await.unwrap();
            let b = milvus.search(&request).await.unwrap();
            let exact = exact_top_k(&records, scope, query.as_slice(), 10, metric);
            let ids = |hits: &[vectorgate_domain::SearchHit]| {
                hits.iter().map(|h| h.chunk_id.get()).collect::<Vec<_>>()
            };
            assert_eq!(ids(&b), ids(&exact), "{label} query {q}: Milvus vs exact");
            let missed = ids(&exact)
                .iter()
                .filter(|id| !ids(&a).contains(id))
                .count();
            assert!(
                missed <= ids_may_differ && a.len() == exact.len(),
                "{label} query {q}: pgvector {:?} vs exact {:?}",
                ids(&a),
                ids(&exact)
            );
            if ids_may_differ == 0 {
                assert_eq!(ids(&a), ids(&exact), "{label} query {q}: pgvector order");
            }
            for x in &a {
                if let Some(y) = b.iter().find(|y| y.chunk_id == x.chunk_id) {
                    assert!(
                        (x.score - y.score).abs() <= score_tolerance * y.score.abs().max(1.0),
                        "{label} query {q} chunk {}: pgvector {} vs Milvus {}",
                        x.chunk_id,
                        x.score,
                        y.score
                    );
                }
            }
        }
    }
    dual.close().await.unwrap();
    cleanup(&settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_killed_mid_stream_dual_writes_succeed_and_sync_converges() {
    if !milvus_tests_enabled("milvus_killed_mid_stream_dual_writes_succeed_and_sync_converges") {
        return;
    }
    let mut server = OwnMilvus::new(22_000);
    let settings = builder(Metric::Ip, "127.0.0.1", server.port())
        .set(&vars::MILVUS_CALL_TIMEOUT_MS, 3000)
        .set(&vars::MILVUS_CONNECT_TIMEOUT_MS, 2000)
        .build()
        .unwrap();

    // The service starts in dual mode before its Milvus ever ran (no collection yet).
    let dual: Arc<DualGateway> = VectorStoreFactory::build_dual(&settings)
        .await
        .expect("dual mode starts while Milvus is down");
    let records = generate_records(shape(600, 5), 10_000);
    let mut batches = records.chunks(50);
    for batch in batches.by_ref().take(1) {
        dual.upsert_vectors(batch)
            .await
            .expect("a dual write succeeds before Milvus was ever reached");
    }
    dual.flush_background().await;
    assert_eq!(
        dual.outbox_stats().await.unwrap().depth,
        50,
        "one entry per id"
    );

    // Milvus comes up: the next write creates the collection and reaches it.
    tokio::task::block_in_place(|| server.start(3));
    for batch in batches.by_ref().take(2) {
        dual.upsert_vectors(batch).await.unwrap();
    }
    dual.flush_background().await;
    assert_eq!(
        dual.outbox_stats().await.unwrap().depth,
        50,
        "writes after Milvus came up reached it"
    );
    let milvus = MilvusStore::new(settings.milvus().clone()).unwrap();
    let status = milvus.schema().status().await.unwrap();
    assert!(status.exists && status.loaded == Some(true), "{status:?}");

    tokio::task::block_in_place(|| server.kill());
    let mut written_while_down = 0;
    for (i, batch) in batches.by_ref().take(6).enumerate() {
        let n = dual
            .upsert_vectors(batch)
            .await
            .unwrap_or_else(|e| panic!("dual upsert {i} with Milvus down must succeed: {e}"));
        written_while_down += n;
        dual.flush_background().await;
        assert_eq!(
            dual.outbox_stats().await.unwrap().depth,
            50 * (i as u64 + 2),
            "one outbox entry per id Milvus missed"
        );
    }
    assert_eq!(written_while_down, 300);
    // A delete and a move while down, too.
    let gone = [records[0].chunk_id, records[160].chunk_id];
    dual.delete_vectors(&DeleteRequest::chunks(records[0].tenant_id, [gone[0]]))
        .await
        .unwrap();
    dual.delete_vectors(&DeleteRequest::chunks(records[160].tenant_id, [gone[1]]))
        .await
        .unwrap();
    let moved = VectorRecord::new(
        records[3].chunk_id,
        tenant(9),
        project(9),
        Embedding::new(vec![0.5; DIM as usize]).unwrap(),
    );
    dual.upsert_vectors(std::slice::from_ref(&moved))
        .await
        .unwrap();
    dual.flush_background().await;
    assert_eq!(
        dual.outbox_stats().await.unwrap().depth,
        350,
        "the deleted and moved ids were pending already: one entry each"
    );

    tokio::task::block_in_place(|| server.start(3));
    // Later writes reach Milvus again.
    for batch in batches {
        dual.upsert_vectors(batch).await.unwrap();
    }
    dual.flush_background().await;

    // Replay. Milvus may still be loading its collection right after the restart: retry
    // a bounded number of times, as an operator would.
    let deadline = Instant::now() + Duration::from_secs(120);
    let report = loop {
        let report = dual.sync().await.unwrap();
        if report.remaining == 0 || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(report.remaining, 0, "{report:?}");
    assert!(report.entries_replayed >= 10, "{report:?}");

    // Replays only write; reading back needs the collection loaded again, which Milvus
    // does on its own after a restart (health says "not loaded" meanwhile).
    let stores = Stores::both(&settings).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while stores
        .milvus
        .as_ref()
        .unwrap()
        .schema()
        .status()
        .await
        .ok()
        .and_then(|s| s.loaded)
        != Some(true)
    {
        assert!(
            Instant::now() < deadline,
            "Milvus did not reload the collection"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let in_pg = pg_rows(stores.pgvector.as_ref().unwrap()).await;
    let in_milvus = milvus_rows(stores.milvus.as_ref().unwrap()).await;
    assert_eq!(in_pg.len(), 600 - 2);
    let by_id = |rows: &[VectorRecord]| -> BTreeMap<i64, VectorRecord> {
        rows.iter().map(|r| (r.chunk_id.get(), r.clone())).collect()
    };
    let (a, b) = (by_id(&in_pg), by_id(&in_milvus));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same ids"
    );
    assert_eq!(a, b, "same tenants, projects and vectors");
    assert!(!b.contains_key(&gone[0].get()) && !b.contains_key(&gone[1].get()));
    assert_eq!(b.get(&moved.chunk_id.get()), Some(&moved));

    dual.close().await.unwrap();
    // The collection lives on this test's own server (removed with it); drop the tables.
    drop(stores);
    drop_tables(&[&settings.pgvector().table, &settings.dual().outbox_table]).await;
    drop(server);
}
