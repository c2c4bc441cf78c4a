//! The pgvector store against the real PostgreSQL + pgvector (DATABASE_URL or
//! target/services.env). Every test works in its own table and drops it at the end.

use std::time::Duration;

use vectorgate_adapter_pgvector::{IndexKind, PgVectorConfig, PgVectorStore};
use vectorgate_domain::{
    ChunkId, DeleteRequest, Dimension, Embedding, GatewayError, Metric, ProjectFilter, ScanFilter,
    SearchRequest, SearchScope, TopK, VectorRecord, VectorStoreGateway,
};
use vectorgate_testkit::{
    chunk, exact_top_k, generate_queries, generate_records, project, tenant, DataShape, ServicesEnv,
};

mod support;

use support::*;

#[tokio::test]
async fn round_trip_upsert_search_reupsert_delete() {
    with_store(config(8), |store| async move {
        let records = vec![
            record(1, 1, 1, basis(8, 0, 1.0)),
            record(2, 1, 1, basis(8, 1, 1.0)),
            record(3, 1, 2, basis(8, 2, 1.0)),
        ];
        assert_eq!(store.upsert_vectors(&records).await.unwrap(), 3);
        assert_eq!(all_rows(&store).await, records);

        let query = Embedding::new(basis(8, 1, 1.0)).unwrap();
        let request = SearchRequest::new(SearchScope::tenant(tenant(1)), query.clone(), k(3));
        let hits = store.search(&request).await.unwrap();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].chunk_id, chunk(2));
        let expected = Metric::Ip.score(query.as_slice(), records[1].embedding.as_slice());
        assert!((hits[0].score - expected).abs() < 1e-5, "{hits:?}");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

        // Re-upsert chunk 2 with another vector and project: replaced, not duplicated.
        let moved = record(2, 1, 2, basis(8, 5, 1.0));
        assert_eq!(
            store
                .upsert_vectors(std::slice::from_ref(&moved))
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.fetch(&[chunk(2)]).await.unwrap(), vec![moved.clone()]);
        assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 3);
        let hits = store
            .search(&SearchRequest::new(
                SearchScope::tenant(tenant(1)),
                moved.embedding.clone(),
                k(1),
            ))
            .await
            .unwrap();
        assert_eq!(
            (hits[0].chunk_id, hits[0].project_id),
            (chunk(2), project(2))
        );

        // min_score drops weaker hits: only the exact match scores ~1.0.
        let strict =
            SearchRequest::new(SearchScope::tenant(tenant(1)), query, k(3)).with_min_score(0.9);
        assert!(store.search(&strict).await.unwrap().is_empty());
        let strict = SearchRequest::new(SearchScope::tenant(tenant(1)), moved.embedding, k(3))
            .with_min_score(0.9);
        assert_eq!(store.search(&strict).await.unwrap().len(), 1);

        let removed = store
            .delete_vectors(&DeleteRequest::chunks(tenant(1), [chunk(2)]))
            .await
            .unwrap();
        assert_eq!(removed, 1);
        let removed = store
            .delete_vectors(&DeleteRequest::tenant(tenant(1)))
            .await
            .unwrap();
        assert_eq!(removed, 2);
        let hits = store.search(&request).await.unwrap();
        assert!(hits.is_empty(), "{hits:?}");
    })
    .await;
}

#[tokio::test]
async fn searches_and_deletes_never_cross_tenants() {
    with_store(config(8), |store| async move {
        // Same project ids in both tenants; the tenant-2 vectors are the better matches.
        let mut records = Vec::new();
        for i in 0..6 {
            records.push(record(100 + i, 1, 1 + i % 2, basis(8, i as usize, 0.5)));
            records.push(record(200 + i, 2, 1 + i % 2, basis(8, i as usize, 1.0)));
        }
        store.upsert_vectors(&records).await.unwrap();
        let query = Embedding::new(basis(8, 0, 1.0)).unwrap();

        let hits = store
            .search(&SearchRequest::new(
                SearchScope::tenant(tenant(1)),
                query.clone(),
                k(50),
            ))
            .await
            .unwrap();
        assert_eq!(hits.len(), 6);
        assert!(hits.iter().all(|h| (100..106).contains(&h.chunk_id.get())));
        let scope = SearchScope::projects(tenant(2), [project(1)]).unwrap();
        let hits = store
            .search(&SearchRequest::new(scope, query.clone(), k(50)))
            .await
            .unwrap();
        let ids: Vec<i64> = hits.iter().map(|h| h.chunk_id.get()).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.iter().all(|id| [200, 202, 204].contains(id)), "{ids:?}");

        // Tenant 1 asking to delete tenant 2's chunks removes nothing.
        let removed = store
            .delete_vectors(&DeleteRequest::chunks(tenant(1), [chunk(200), chunk(201)]))
            .await
            .unwrap();
        assert_eq!(removed, 0);
        assert_eq!(
            store.fetch(&[chunk(200), chunk(201)]).await.unwrap().len(),
            2
        );
        // Restricted to project 2, chunk 100 (project 1) stays.
        let removed = store
            .delete_vectors(
                &DeleteRequest::chunks_in_projects(
                    tenant(1),
                    [project(2)],
                    [chunk(100), chunk(101)],
                )
                .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(
            store.fetch(&[chunk(100), chunk(101)]).await.unwrap().len(),
            1
        );
        // A project delete in tenant 1 leaves tenant 2's project of the same id alone.
        let removed = store
            .delete_vectors(&DeleteRequest::project(tenant(1), project(1)))
            .await
            .unwrap();
        assert_eq!(removed, 3, "chunks 100, 102 and 104");
        assert_eq!(
            store
                .count(ScanFilter::new(Some(tenant(2)), Some(project(1))).unwrap())
                .await
                .unwrap(),
            3
        );
        let removed = store
            .delete_vectors(&DeleteRequest::tenant(tenant(1)))
            .await
            .unwrap();
        assert_eq!(removed, 2, "chunks 103 and 105");
        assert_eq!(store.count(ScanFilter::tenant(tenant(2))).await.unwrap(), 6);
        assert_eq!(store.count(ScanFilter::tenant(tenant(1))).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_tenant_with_one_percent_of_rows_still_gets_k_hits() {
    let mut config = config(32);
    // One table: in a table partitioned by tenant, this tenant would have its own graph.
    config.tenant_partitions = Some(0);
    // ef_search = k: one HNSW pass yields about 10 candidates of which ~1% belong to the
    // tenant; only the iterative scan can find 10 of its rows.
    config.ef_search = 10;
    with_store(config, |store| async move {
        let shape = DataShape {
            rows: 5000,
            dim: 32,
            tenants: 1,
            projects_per_tenant: 1,
            seed: 7,
        };
        let mut records = generate_records(shape, 0);
        for (i, r) in records.iter_mut().enumerate() {
            // Every 100th row belongs to tenant 1, the rest to tenant 2.
            r.tenant_id = tenant(if i % 100 == 0 { 1 } else { 2 });
        }
        store.upsert_vectors(&records).await.unwrap();
        sqlx_exec(&store, &format!("ANALYZE {}", store.config().table)).await;

        let tenant_rows: Vec<VectorRecord> = records
            .iter()
            .filter(|r| r.tenant_id == tenant(1))
            .cloned()
            .collect();
        assert_eq!(tenant_rows.len(), 50);
        let check = |plan: Vec<String>| {
            let store = store.clone();
            let records = &records;
            let tenant_rows = &tenant_rows;
            async move {
                for query in generate_queries(10, 32, 7) {
                    let scope = SearchScope::tenant(tenant(1));
                    let hits = store
                        .search(&SearchRequest::new(scope.clone(), query.clone(), k(10)))
                        .await
                        .unwrap();
                    assert_eq!(hits.len(), 10, "plan: {plan:?}");
                    assert!(hits
                        .iter()
                        .all(|h| tenant_rows.iter().any(|r| r.chunk_id == h.chunk_id)));
                    let exact = exact_top_k(records, &scope, query.as_slice(), 10, Metric::Ip);
                    let recall = vectorgate_testkit::recall(&hits, &exact);
                    assert!(recall >= 0.8, "recall {recall}, plan {plan:?}");
                }
            }
        };
        // By default a 50-row scope is searched exactly (exact_search_max_rows).
        let scope = SearchScope::tenant(tenant(1));
        let small = store.search_plan(&scope, 10).await.unwrap();
        assert!(small.exact && small.rows_counted == 50, "{small}");
        assert_eq!(small.vector_index, None, "{small}");
        check(small.explain.clone()).await;
        // Left to itself the planner reads so selective a tenant through the b-tree and
        // sorts it; the store forces the HNSW index instead when the scope is not searched
        // exactly. The tenant filter then applies to the index's candidates, and only the
        // iterative scan can find 10 of the tenant's rows.
        let url = ServicesEnv::load().database_url();
        let planner = planner_choice(&store, &url).await;
        assert!(
            !planner.iter().any(|l| l.contains("embedding_idx")),
            "the planner's own plan already used the vector index, so this test shows nothing: {planner:?}"
        );
        let mut indexed = store.config().clone();
        indexed.exact_search_max_rows = 0;
        let indexed = PgVectorStore::new(indexed).unwrap();
        let forced = indexed.search_plan(&scope, 10).await.unwrap();
        assert!(!forced.exact, "{forced}");
        assert!(
            forced.vector_index.as_ref().is_some_and(|i| i.ends_with("embedding_idx")),
            "{forced}"
        );
        let check = |plan: Vec<String>| {
            let store = indexed.clone();
            let records = &records;
            let tenant_rows = &tenant_rows;
            async move {
                for query in generate_queries(10, 32, 7) {
                    let scope = SearchScope::tenant(tenant(1));
                    let hits = store
                        .search(&SearchRequest::new(scope.clone(), query.clone(), k(10)))
                        .await
                        .unwrap();
                    assert_eq!(hits.len(), 10, "plan: {plan:?}");
                    let exact = exact_top_k(records, &scope, query.as_slice(), 10, Metric::Ip);
                    let recall = vectorgate_testkit::recall(&hits, &exact);
                    assert!(recall >= 0.8, "recall {recall}, plan {plan:?}");
                    assert!(hits
                        .iter()
                        .all(|h| tenant_rows.iter().any(|r| r.chunk_id == h.chunk_id)));
                }
            }
        };
        check(forced.explain).await;
        indexed.close().await.unwrap();
    })
    .await;
}

/// The planner's own plan (no settings) for a tenant-filtered top-10 query like the
/// store's, on a fresh connection to `url`.
async fn planner_choice(store: &PgVectorStore, url: &str) -> Vec<String> {
    use sqlx::Row;
    sqlx::query(&format!(
        "EXPLAIN SELECT chunk_id FROM {0} WHERE tenant_id = 1 \
         ORDER BY embedding <#> (SELECT embedding FROM {0} LIMIT 1) LIMIT 10",
        store.config().table
    ))
    .fetch_all(&sqlx::PgPool::connect(url).await.unwrap())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect()
}

/// Records with varied norms, so that IP, cosine and L2 rank differently.
fn varied_records(rows: usize, dim: usize) -> Vec<VectorRecord> {
    let shape = DataShape {
        rows,
        dim,
        tenants: 2,
        projects_per_tenant: 2,
        seed: 11,
    };
    generate_records(shape, 1)
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            let scale = 0.5 + (i % 7) as f32 * 0.25;
            let scaled: Vec<f32> = r.embedding.as_slice().iter().map(|x| x * scale).collect();
            r.embedding = Embedding::new(scaled).unwrap();
            r
        })
        .collect()
}

async fn assert_exact_agreement(store: &PgVectorStore, metric: Metric, label: &str) {
    let records = varied_records(300, 16);
    store.upsert_vectors(&records).await.unwrap();
    let scopes = [
        SearchScope::tenant(tenant(1)),
        SearchScope::projects(tenant(2), [project(1)]).unwrap(),
        SearchScope::projects(tenant(1), [project(1), project(2)]).unwrap(),
    ];
    for (qi, query) in generate_queries(6, 16, 3).into_iter().enumerate() {
        let query = Embedding::new(query.as_slice().iter().map(|x| x * 1.5).collect()).unwrap();
        let scope = &scopes[qi % scopes.len()];
        let hits = store
            .search(&SearchRequest::new(scope.clone(), query.clone(), k(10)))
            .await
            .unwrap();
        let exact = exact_top_k(&records, scope, query.as_slice(), 10, metric);
        let got: Vec<i64> = hits.iter().map(|h| h.chunk_id.get()).collect();
        let want: Vec<i64> = exact.iter().map(|h| h.chunk_id.get()).collect();
        assert_eq!(got, want, "{label} {metric} query {qi}");
        for (h, e) in hits.iter().zip(&exact) {
            assert!(
                (h.score - e.score).abs() <= 1e-4,
                "{label} {metric} query {qi}: {} vs {}",
                h.score,
                e.score
            );
            assert_eq!(h.project_id, e.project_id);
        }
    }
}

/// Exact search by construction: an IVFFlat index probed in all its lists visits every
/// row, so the store's top-10 must equal brute force for each metric.
#[tokio::test]
async fn exact_search_agrees_with_brute_force_for_each_metric_ivfflat_all_lists() {
    for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
        let mut config = config(16);
        config.metric = metric;
        config.index = IndexKind::Ivfflat;
        config.ivfflat_lists = 4;
        config.ivfflat_probes = 4;
        config.exact_search_max_rows = 0;
        with_store(config, |store| async move {
            assert_exact_agreement(&store, metric, "ivfflat probes=lists").await;
        })
        .await;
    }
}

/// The same through HNSW with ef_search (1000) above the row count (300): the graph
/// search then keeps every reachable row as a candidate.
#[tokio::test]
async fn exact_search_agrees_with_brute_force_for_each_metric_hnsw_wide_ef() {
    for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
        let mut config = config(16);
        config.metric = metric;
        config.ef_search = 1000;
        config.exact_search_max_rows = 0;
        with_store(config, |store| async move {
            assert_exact_agreement(&store, metric, "hnsw ef_search=1000").await;
        })
        .await;
    }
}

/// The default path for small scopes: the scope's rows read and sorted exactly.
#[tokio::test]
async fn exact_search_agrees_with_brute_force_for_each_metric_small_scope_path() {
    for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
        let mut config = config(16);
        config.metric = metric;
        // HNSW at its narrowest: only the exact path can give brute force's answers.
        config.ef_search = 1;
        with_store(config, |store| async move {
            assert_exact_agreement(&store, metric, "exact small-scope search").await;
        })
        .await;
    }
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_changes_nothing() {
    with_store(config(8), |store| async move {
        let before = vec![
            record(1, 1, 1, basis(8, 0, 1.0)),
            record(2, 1, 1, basis(8, 1, 1.0)),
        ];
        store.upsert_vectors(&before).await.unwrap();

        // A wrong-dimension record among good ones: nothing of the call is written.
        let batch = vec![
            record(1, 1, 1, basis(8, 7, 1.0)),
            record(3, 1, 1, basis(8, 2, 1.0)),
            record(4, 1, 1, vec![0.5; 9]),
        ];
        let err = store.upsert_vectors(&batch).await.unwrap_err();
        assert_eq!(
            err,
            GatewayError::DimensionMismatch {
                expected: 8,
                got: 9
            }
        );
        assert_eq!(all_rows(&store).await, before);

        // NaN never becomes an Embedding, so it cannot reach the store.
        let err = Embedding::new(vec![0.1, f32::NAN, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1]).unwrap_err();
        assert!(
            matches!(&err, GatewayError::InvalidInput(m) if m.contains("NaN")),
            "{err}"
        );

        // Duplicate ids: invalid input naming the id; the good record 5 is not written.
        let batch = vec![
            record(5, 1, 1, basis(8, 3, 1.0)),
            record(2, 1, 1, basis(8, 4, 1.0)),
            record(2, 1, 2, basis(8, 5, 1.0)),
        ];
        let err = store.upsert_vectors(&batch).await.unwrap_err();
        assert!(
            matches!(&err, GatewayError::InvalidInput(m) if m.contains("duplicate chunk_id 2")),
            "{err}"
        );
        assert_eq!(all_rows(&store).await, before);

        // Empty batch: a no-op.
        assert_eq!(store.upsert_vectors(&[]).await.unwrap(), 0);
        assert_eq!(store.bulk_load(&[], true).await.unwrap(), 0);

        // k = 0 and an empty project set cannot be expressed.
        assert!(TopK::new(0).unwrap_err().is_invalid_input());
        assert!(SearchScope::projects(tenant(1), [])
            .unwrap_err()
            .is_invalid_input());
        let hand_built = DeleteRequest::Chunks {
            tenant_id: tenant(1),
            projects: ProjectFilter::Only(Default::default()),
            chunk_ids: vec![chunk(1)],
        };
        let err = store.delete_vectors(&hand_built).await.unwrap_err();
        assert!(err.is_invalid_input(), "{err}");

        // A query of the wrong dimension.
        let request = SearchRequest::new(
            SearchScope::tenant(tenant(1)),
            Embedding::new(vec![0.1; 4]).unwrap(),
            k(3),
        );
        let err = store.search(&request).await.unwrap_err();
        assert_eq!(
            err,
            GatewayError::DimensionMismatch {
                expected: 8,
                got: 4
            }
        );
        assert_eq!(all_rows(&store).await, before);

        // The same table opened with another dimension or metric: refused, unchanged.
        let mut other = store.config().clone();
        other.dimension = Dimension::new(16).unwrap();
        let err = PgVectorStore::new(other)
            .unwrap()
            .bootstrap()
            .await
            .unwrap_err();
        match &err {
            GatewayError::SchemaMismatch {
                object, details, ..
            } => {
                assert!(object.contains(&store.config().table), "{err}");
                assert!(
                    details.contains("vector(8)") && details.contains("vector(16)"),
                    "{err}"
                );
            }
            other => panic!("expected SchemaMismatch, got {other}"),
        }
        let mut other = store.config().clone();
        other.metric = Metric::L2;
        let err = PgVectorStore::new(other)
            .unwrap()
            .bootstrap()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, GatewayError::SchemaMismatch { details, .. }
                if details.contains("vector_ip_ops") && details.contains("vector_l2_ops")),
            "{err}"
        );
        assert_eq!(all_rows(&store).await, before);
        let health = store.health().await.unwrap();
        assert!(health.is_healthy(), "{health:?}");
        assert_eq!(
            health.stores[0].collection.as_ref().unwrap().dimension,
            Some(8)
        );
    })
    .await;
}

#[tokio::test]
async fn a_table_missing_a_column_is_refused_and_left_alone() {
    let config = config(8);
    let table = config.table.clone();
    let store = PgVectorStore::new(config).unwrap();
    sqlx_exec(
        &store,
        &format!(
            "CREATE TABLE {table} (chunk_id bigint PRIMARY KEY, tenant_id bigint NOT NULL, \
             embedding vector(8) NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
        ),
    )
    .await;
    let result = store.bootstrap().await;
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
    )
    .bind(&table)
    .fetch_all(&test_pool().await)
    .await
    .unwrap();
    let indexes: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = $1")
        .bind(&table)
        .fetch_one(&test_pool().await)
        .await
        .unwrap();
    drop_table(&store).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, GatewayError::SchemaMismatch { details, .. }
            if details.contains("column project_id is missing")),
        "{err}"
    );
    assert_eq!(
        columns,
        ["chunk_id", "tenant_id", "embedding", "updated_at"]
    );
    assert_eq!(
        indexes, 1,
        "only the primary key: bootstrap created nothing"
    );
}

#[tokio::test]
async fn concurrent_bootstraps_of_one_table_all_succeed() {
    let config = config(8);
    let stores: Vec<PgVectorStore> = (0..4)
        .map(|_| PgVectorStore::new(config.clone()).unwrap())
        .collect();
    let results = futures::future::join_all(stores.iter().map(|s| s.bootstrap())).await;
    let again = stores[0].bootstrap().await;
    drop_table(&stores[0]).await;
    for r in results {
        r.unwrap();
    }
    again.unwrap();
}

#[tokio::test]
async fn health_reports_version_dimension_index_and_rows() {
    with_store(config(8), |store| async move {
        let records: Vec<VectorRecord> = (0..25)
            .map(|i| record(i, 1, 1, basis(8, (i % 8) as usize, 1.0)))
            .collect();
        store.upsert_vectors(&records).await.unwrap();
        sqlx_exec(&store, &format!("ANALYZE {}", store.config().table)).await;
        let health = store.health().await.unwrap();
        assert!(health.is_healthy(), "{health:?}");
        let pg = &health.stores[0];
        assert!(pg.reachable);
        let version = pg.server_version.as_deref().unwrap();
        assert!(version.contains("pgvector 0.8."), "{version}");
        let table = pg.collection.as_ref().unwrap();
        assert_eq!(table.name, store.config().table);
        assert!(table.exists);
        assert_eq!(table.dimension, Some(8));
        assert_eq!(table.metric, Some(Metric::Ip));
        assert_eq!(table.index_type.as_deref(), Some("hnsw"));
        assert_eq!(table.index_params.get("m").map(String::as_str), Some("16"));
        assert_eq!(table.row_count, Some(25));
        assert!(table.row_count_estimated);
    })
    .await;

    // A table that does not exist: reachable, but unhealthy with the reason.
    let store = PgVectorStore::new(config(8)).unwrap();
    let health = store.health().await.unwrap();
    assert!(!health.is_healthy());
    assert!(health.stores[0].reachable);
    let problem = health.stores[0].problem.as_deref().unwrap();
    assert!(problem.contains("does not exist"), "{problem}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_naming_host_not_password() {
    let mut config = PgVectorConfig::for_url(
        "postgres://app:hunter2@127.0.0.1:1/vectorgate",
        Dimension::new(8).unwrap(),
    )
    .unwrap();
    config.connect_timeout = Duration::from_secs(2);
    let store = PgVectorStore::new(config).unwrap();
    // An empty batch is answered without any I/O, even with the server unreachable.
    assert_eq!(store.upsert_vectors(&[]).await.unwrap(), 0);
    let err = store
        .upsert_vectors(&[record(1, 1, 1, basis(8, 0, 1.0))])
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("127.0.0.1:1") && text.contains("upsert"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    let health = store.health().await.unwrap();
    assert!(!health.stores[0].reachable);
    assert!(!format!("{health:?}{store:?}").contains("hunter2"));
}

#[tokio::test]
async fn bulk_load_then_search_scan_and_fetch() {
    with_store(config(32), |store| async move {
        let shape = DataShape {
            rows: 2000,
            dim: 32,
            tenants: 2,
            projects_per_tenant: 2,
            seed: 5,
        };
        let records = generate_records(shape, 10);
        let report = store.bulk_load_timed(&records, true).await.unwrap();
        assert_eq!(report.rows, 2000);
        assert!(report.index_build.is_some());
        assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 2000);
        let health = store.health().await.unwrap();
        let table = health.stores[0].collection.clone().unwrap();
        assert_eq!(table.index_type.as_deref(), Some("hnsw"), "index rebuilt");

        // Searching with a stored vector finds that record first, scored ~1 (unit vectors).
        for r in records.iter().step_by(97) {
            let hits = store
                .search(&SearchRequest::new(
                    SearchScope::projects(r.tenant_id, [r.project_id]).unwrap(),
                    r.embedding.clone(),
                    k(5),
                ))
                .await
                .unwrap();
            assert_eq!(hits.len(), 5);
            assert_eq!(hits[0].chunk_id, r.chunk_id);
            assert!((hits[0].score - 1.0).abs() < 1e-4);
        }

        // Paging by chunk id gives every row of the filter once, in order.
        let filter = ScanFilter::new(Some(tenant(2)), Some(project(1))).unwrap();
        let mut paged = Vec::new();
        let mut after: Option<ChunkId> = None;
        loop {
            let page = store.scan(filter, after, 128).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|r| r.chunk_id);
            paged.extend(page);
        }
        let expected: Vec<VectorRecord> = records
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect();
        assert_eq!(paged, expected);
        assert_eq!(store.count(filter).await.unwrap(), expected.len() as u64);
        let fetched = store
            .fetch(&[chunk(10), chunk(11), chunk(999_999)])
            .await
            .unwrap();
        assert_eq!(fetched, records[..2].to_vec());

        // COPY does not upsert: an existing id fails the whole load, nothing is added.
        let clash = vec![record(50_000, 1, 1, vec![0.1; 32]), records[0].clone()];
        let err = store.bulk_load(&clash, false).await.unwrap_err();
        assert!(
            matches!(
                err,
                GatewayError::Backend {
                    operation: "bulk_load",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 2000);
    })
    .await;
}

#[tokio::test]
async fn an_upsert_spanning_many_concurrent_batches_writes_every_row_once() {
    let mut config = config(8);
    config.batch_size = 7;
    config.upsert_concurrency = 3;
    with_store(config, |store| async move {
        let records: Vec<VectorRecord> = (0..100)
            .map(|i| record(i, 1 + i % 2, 1, basis(8, (i % 8) as usize, 1.0 + i as f32)))
            .collect();
        assert_eq!(store.upsert_vectors(&records).await.unwrap(), 100);
        assert_eq!(all_rows(&store).await, records);
        // Again with every vector changed: replaced in place, still 100 rows.
        let changed: Vec<VectorRecord> = records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.embedding = Embedding::new(vec![0.5; 8]).unwrap();
                r
            })
            .collect();
        assert_eq!(store.upsert_vectors(&changed).await.unwrap(), 100);
        assert_eq!(all_rows(&store).await, changed);
        // A duplicate in the last batch stops the whole call before any batch is sent.
        let mut with_duplicate: Vec<VectorRecord> = (200..300)
            .map(|i| record(i, 1, 1, basis(8, 0, 1.0)))
            .collect();
        with_duplicate.push(record(200, 1, 1, basis(8, 1, 1.0)));
        let err = store.upsert_vectors(&with_duplicate).await.unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert_eq!(all_rows(&store).await, changed);
    })
    .await;
}

/// Services await these inside spawned tasks and `Send` trait objects (the composition
/// factory does), which fails to compile if a future is not `Send`. No I/O happens: the
/// futures are built and dropped.
#[tokio::test]
async fn operator_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let store = PgVectorStore::new(
        PgVectorConfig::for_url(
            "postgres://nobody@127.0.0.1:9/none",
            Dimension::new(3).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let records = [record(1, 1, 1, vec![1.0, 0.0, 0.0])];
    let ids = [chunk(1)];
    assert_send(&store.bootstrap());
    assert_send(&store.bulk_load(&records, true));
    assert_send(&store.bulk_load_timed(&records, true));
    assert_send(&store.scan(ScanFilter::all(), None, 10));
    assert_send(&store.fetch(&ids));
    assert_send(&store.count(ScanFilter::all()));
}
