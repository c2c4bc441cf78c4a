//! Guarded integration suite against a real Milvus (`RUN_MILVUS_TESTS=1`; run by
//! `cargo xtask test-milvus`). Without the variable every test prints SKIPPED and returns;
//! with it and no server, they fail.

mod support;

use std::collections::BTreeSet;

use support::*;
use vectorgate_adapter_milvus::{MilvusSchemaManager, MilvusStore, PartitionKey};
use vectorgate_domain::{
    DeleteRequest, Embedding, GatewayError, Metric, ScanFilter, SearchRequest, SearchScope, TopK,
    VectorRecord, VectorStoreGateway,
};
use vectorgate_testkit::{chunk, milvus_tests_enabled, project, tenant};

fn top(k: u32) -> TopK {
    TopK::new(k).unwrap()
}

#[tokio::test]
async fn connects_and_reports_the_server_version_through_milvus_sdk_rust() {
    if !milvus_tests_enabled("connects_and_reports_the_server_version_through_milvus_sdk_rust") {
        return;
    }
    let store = MilvusStore::new(config("vg_version")).unwrap();
    let version = store.server_version().await.unwrap();
    assert!(version.starts_with("v2."), "unexpected version {version:?}");
}

#[tokio::test]
async fn seed_suite_tenants_only_see_their_own_and_delete_removes() {
    if !milvus_tests_enabled("seed_suite_tenants_only_see_their_own_and_delete_removes") {
        return;
    }
    let (store, _guard) = fresh_store("vg_seed").await;
    let mut records = Vec::new();
    for i in 0..20i64 {
        let t = 1 + i % 2; // tenants 1 and 2
        records.push(record(100 + i, t, 1 + i % 3, axis(i as usize)));
    }
    assert_eq!(store.upsert_vectors(&records).await.unwrap(), 20);

    for t in [1i64, 2] {
        let request = SearchRequest::new(SearchScope::tenant(tenant(t)), axis(0), top(20));
        let hits = store.search(&request).await.unwrap();
        assert_eq!(hits.len(), 10, "tenant {t} owns 10 rows");
        let own: BTreeSet<i64> = records
            .iter()
            .filter(|r| r.tenant_id == tenant(t))
            .map(|r| r.chunk_id.get())
            .collect();
        for hit in &hits {
            assert!(own.contains(&hit.chunk_id.get()), "tenant {t} saw {hit:?}");
        }
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "best first"
        );
    }
    // Project-restricted scope.
    let scope = SearchScope::projects(tenant(1), [project(2)]).unwrap();
    let hits = store
        .search(&SearchRequest::new(scope, axis(1), top(20)))
        .await
        .unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.project_id == project(2)));

    // An id of tenant 2 cannot be deleted through tenant 1.
    let deleted = store
        .delete_vectors(&DeleteRequest::chunks(tenant(1), [chunk(101)]))
        .await
        .unwrap();
    assert_eq!(deleted, 0, "chunk 101 belongs to tenant 2");
    assert_eq!(store.fetch(&[chunk(101)]).await.unwrap().len(), 1);

    let deleted = store
        .delete_vectors(&DeleteRequest::tenant(tenant(1)))
        .await
        .unwrap();
    assert_eq!(deleted, 10);
    let hits = store
        .search(&SearchRequest::new(
            SearchScope::tenant(tenant(1)),
            axis(0),
            top(20),
        ))
        .await
        .unwrap();
    assert!(hits.is_empty(), "deleted rows still found: {hits:?}");
    let remaining = store
        .search(&SearchRequest::new(
            SearchScope::tenant(tenant(2)),
            axis(0),
            top(20),
        ))
        .await
        .unwrap();
    assert_eq!(remaining.len(), 10, "tenant 2 untouched");

    let deleted = store
        .delete_vectors(&DeleteRequest::project(tenant(2), project(1)))
        .await
        .unwrap();
    assert!(deleted > 0);
    assert_eq!(
        store
            .count(ScanFilter::new(Some(tenant(2)), Some(project(1))).unwrap())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn re_upsert_replaces_the_vector_tenant_and_project() {
    if !milvus_tests_enabled("re_upsert_replaces_the_vector_tenant_and_project") {
        return;
    }
    let (store, _guard) = fresh_store("vg_reupsert").await;
    store
        .upsert_vectors(&[record(1, 1, 1, axis(0)), record(2, 1, 1, axis(3))])
        .await
        .unwrap();
    store
        .upsert_vectors(&[record(1, 1, 2, axis(5))])
        .await
        .unwrap();
    let fetched = store.fetch(&[chunk(1)]).await.unwrap();
    assert_eq!(fetched, vec![record(1, 1, 2, axis(5))]);
    assert_eq!(
        store.count(ScanFilter::all()).await.unwrap(),
        2,
        "no duplicate row"
    );
    let hits = store
        .search(&SearchRequest::new(
            SearchScope::tenant(tenant(1)),
            axis(5),
            top(1),
        ))
        .await
        .unwrap();
    assert_eq!(hits[0].chunk_id, chunk(1));
    assert_eq!(hits[0].project_id, project(2));
}

#[tokio::test]
async fn an_upsert_taking_a_chunk_of_another_tenant_is_refused() {
    if !milvus_tests_enabled("an_upsert_taking_a_chunk_of_another_tenant_is_refused") {
        return;
    }
    let (store, _guard) = fresh_store("vg_tenant_move").await;
    let stored = record(1, 1, 1, axis(0));
    store
        .upsert_vectors(std::slice::from_ref(&stored))
        .await
        .unwrap();
    let err = store
        .upsert_vectors(&[record(2, 2, 1, axis(1)), record(1, 2, 1, axis(2))])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("chunk 1 belongs to tenant 1, not 2"),
        "{err}"
    );
    assert_eq!(
        store.fetch(&[chunk(1), chunk(2)]).await.unwrap(),
        vec![stored],
        "nothing of the call was written"
    );

    // ALLOW_TENANT_MOVE: the move goes through.
    let mut config = store.config().clone();
    config.allow_tenant_move = true;
    let moving = MilvusStore::new(config).unwrap();
    moving
        .upsert_vectors(&[record(1, 2, 1, axis(2))])
        .await
        .unwrap();
    assert_eq!(
        moving.fetch(&[chunk(1)]).await.unwrap(),
        vec![record(1, 2, 1, axis(2))]
    );
}

/// A call of dense ids is checked by id ranges: the server must find a taken chunk among
/// them, whether the tenants interleave or come in long stretches, and must not count a
/// stored chunk the call does not name.
#[tokio::test]
async fn a_dense_call_taking_a_chunk_of_another_tenant_is_refused() {
    if !milvus_tests_enabled("a_dense_call_taking_a_chunk_of_another_tenant_is_refused") {
        return;
    }
    let (store, _guard) = fresh_store("vg_tenant_dense").await;
    // Chunk 150 belongs to tenant 1; chunk 500, under tenant 9, sits in a gap of every call.
    let stored = vec![record(150, 1, 1, axis(0)), record(500, 9, 1, axis(1))];
    store.upsert_vectors(&stored).await.unwrap();
    let call = |ids: std::ops::Range<i64>, tenant_of: fn(i64) -> i64| -> Vec<VectorRecord> {
        ids.filter(|&id| id != 500)
            .map(|id| record(id, tenant_of(id), 1, axis(id as usize)))
            .collect()
    };
    let interleaved = call(100..1000, |id| 2 + id % 2);
    let stretches = call(100..1000, |id| if id < 400 { 2 } else { 3 });
    for records in [&interleaved, &stretches] {
        let err = store.upsert_vectors(records).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("chunk 150 belongs to tenant 1, not 2"),
            "{err}"
        );
        assert!(!err.to_string().contains("chunk 500"), "{err}");
        let ids: Vec<_> = (100..1000).map(chunk).collect();
        assert_eq!(
            store.fetch(&ids).await.unwrap(),
            stored,
            "nothing of the call was written"
        );
    }
    // Without the taken chunk the call goes through, chunk 500 staying with tenant 9.
    let free = call(200..1000, |id| 2 + id % 2);
    assert_eq!(store.upsert_vectors(&free).await.unwrap(), 799);
    assert_eq!(
        store.fetch(&[chunk(500)]).await.unwrap(),
        vec![stored[1].clone()]
    );
}

#[tokio::test]
async fn a_search_right_after_an_upsert_sees_it_at_the_default_consistency() {
    if !milvus_tests_enabled("a_search_right_after_an_upsert_sees_it_at_the_default_consistency") {
        return;
    }
    let (store, _guard) = fresh_store("vg_ryw").await;
    assert_eq!(
        store.config().consistency,
        vectorgate_adapter_milvus::Consistency::default()
    );
    for round in 0..15i64 {
        let embedding = axis(round as usize);
        store
            .upsert_vectors(&[record(1000 + round, 3, 1, embedding.clone())])
            .await
            .unwrap();
        let hits = store
            .search(&SearchRequest::new(
                SearchScope::tenant(tenant(3)),
                embedding,
                top(16),
            ))
            .await
            .unwrap();
        assert!(
            hits.iter().any(|h| h.chunk_id == chunk(1000 + round)),
            "round {round}: own write not visible: {hits:?}"
        );
        let deleted = store
            .delete_vectors(&DeleteRequest::chunks(tenant(3), [chunk(1000 + round)]))
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        let hits = store
            .search(&SearchRequest::new(
                SearchScope::tenant(tenant(3)),
                axis(round as usize),
                top(16),
            ))
            .await
            .unwrap();
        assert!(
            hits.iter().all(|h| h.chunk_id != chunk(1000 + round)),
            "round {round}: own delete not visible"
        );
    }
}

#[tokio::test]
async fn schema_mismatch_is_refused_and_the_collection_left_untouched() {
    if !milvus_tests_enabled("schema_mismatch_is_refused_and_the_collection_left_untouched") {
        return;
    }
    let (store, _guard) = fresh_store("vg_mismatch").await;
    store
        .upsert_vectors(&[record(1, 1, 1, axis(0)), record(2, 1, 1, axis(1))])
        .await
        .unwrap();

    let mut other_dim = store.config().clone();
    other_dim.dimension = vectorgate_domain::Dimension::new(16).unwrap();
    let err = MilvusStore::new(other_dim)
        .unwrap()
        .ensure_schema()
        .await
        .unwrap_err();
    match &err {
        GatewayError::SchemaMismatch {
            object, details, ..
        } => {
            assert_eq!(object, &store.config().collection);
            assert!(details.contains("embedding"), "{details}");
            assert!(
                details.contains("dim=16") && details.contains("dim=8"),
                "{details}"
            );
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }

    let mut other_metric = store.config().clone();
    other_metric.metric = Metric::L2;
    let err = MilvusStore::new(other_metric)
        .unwrap()
        .ensure_schema()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GatewayError::SchemaMismatch { details, .. } if details.contains("metric") && details.contains("L2") && details.contains("IP")),
        "{err:?}"
    );

    // Untouched: same rows, still searchable with the original settings.
    assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 2);
    store.ensure_schema().await.unwrap();
    let health = store.health().await.unwrap();
    let status = health.stores[0].collection.clone().unwrap();
    assert_eq!(status.dimension, Some(8));
    assert_eq!(status.metric, Some(Metric::Ip));
}

/// With `MILVUS_PARTITION_KEY` unset an existing collection is served with whatever layout
/// it has; given explicitly, another layout is refused and nothing is changed.
#[tokio::test]
async fn a_layout_named_explicitly_is_checked_and_an_unset_one_accepts_the_existing() {
    if !milvus_tests_enabled(
        "a_layout_named_explicitly_is_checked_and_an_unset_one_accepts_the_existing",
    ) {
        return;
    }
    let (store, _guard) = unkeyed_store("vg_layout").await;
    store
        .upsert_vectors(&[record(1, 1, 1, axis(0)), record(2, 2, 1, axis(1))])
        .await
        .unwrap();
    let layout = |store: &MilvusStore| {
        let store = store.clone();
        async move {
            let health = store.health().await.unwrap();
            health.stores[0].collection.clone().unwrap().layout.unwrap()
        }
    };
    assert_eq!(layout(&store).await, "no partition key");

    let mut keyed = store.config().clone();
    keyed.partition_key = Some(PartitionKey::Tenant);
    let err = MilvusStore::new(keyed)
        .unwrap()
        .ensure_schema()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GatewayError::SchemaMismatch { details, .. } if details.contains(
            "layout: expected partition key tenant_id, 64 partitions, found no partition key"
        )),
        "{err}"
    );

    // A new keyed collection is refused on this server (2.3.5: its upsert misroutes keyed
    // rows), before anything is created.
    let mut keyed_new = config("vg_layout_keyed");
    keyed_new.partition_key = Some(PartitionKey::Tenant);
    let (refused, _keyed_guard) = store_with(keyed_new);
    let result = refused.ensure_schema().await;
    let version = refused.server_version().await.unwrap();
    if version.starts_with("v2.3") {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, GatewayError::SchemaMismatch { details, .. }
                if details.contains("wrong partition") && details.contains("MILVUS_PARTITION_KEY=none")),
            "{err}"
        );
        let health = refused.health().await.unwrap();
        assert!(
            !health.stores[0].collection.as_ref().unwrap().exists,
            "nothing was created"
        );
    } else {
        result.unwrap();
        assert_eq!(
            layout(&refused).await,
            "partition key tenant_id, 64 partitions"
        );
    }

    // Unset, a new collection gets the layout the server keeps: no key before 2.4.
    let (fresh, _fresh_guard) = fresh_store("vg_layout_unset").await;
    let expected = if version.starts_with("v2.3") {
        "no partition key"
    } else {
        "partition key tenant_id, 64 partitions"
    };
    assert_eq!(layout(&fresh).await, expected);

    let mut unset = store.config().clone();
    unset.partition_key = None;
    let served = MilvusStore::new(unset).unwrap();
    served.ensure_schema().await.unwrap();
    let hits = served
        .search(&SearchRequest::new(
            SearchScope::tenant(tenant(2)),
            axis(1),
            top(5),
        ))
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.chunk_id.get()).collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(layout(&served).await, "no partition key", "nothing changed");
}

/// The partition-key probe's calls on a real server (negative ids and tenants, Strong
/// counts, a move, the delete): on a collection without a key every row stays where a
/// filtered read looks, so it passes, and the collection's own rows are untouched. (Milvus
/// 2.3.5 refuses a keyed collection before the probe could run; the probe's verdicts are
/// unit-tested.)
#[tokio::test]
async fn the_partition_key_probe_runs_on_a_real_server_and_leaves_rows_untouched() {
    if !milvus_tests_enabled(
        "the_partition_key_probe_runs_on_a_real_server_and_leaves_rows_untouched",
    ) {
        return;
    }
    let (store, _guard) = unkeyed_store("vg_probe").await;
    store
        .upsert_vectors(&[record(1, 1, 1, axis(0))])
        .await
        .unwrap();
    store.schema().verify_key_routing().await.unwrap();
    store.schema().verify_key_routing().await.unwrap();
    assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 1);
    let hits = store
        .search(&SearchRequest::new(
            SearchScope::tenant(tenant(1)),
            axis(0),
            top(10),
        ))
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.chunk_id.get()).collect::<Vec<_>>(),
        vec![1]
    );
}

#[tokio::test]
async fn recreate_replaces_a_mismatched_collection() {
    if !milvus_tests_enabled("recreate_replaces_a_mismatched_collection") {
        return;
    }
    let (store, _guard) = fresh_store("vg_recreate").await;
    store
        .upsert_vectors(&[record(1, 1, 1, axis(0))])
        .await
        .unwrap();
    let mut l2 = store.config().clone();
    l2.metric = Metric::L2;
    let l2_store = MilvusStore::new(l2).unwrap();
    assert!(l2_store.ensure_schema().await.is_err());
    l2_store.schema().recreate().await.unwrap();
    l2_store.ensure_schema().await.unwrap();
    assert_eq!(l2_store.count(ScanFilter::all()).await.unwrap(), 0);
    let status = l2_store.schema().status().await.unwrap();
    assert_eq!(status.metric, Some(Metric::L2));
}

#[tokio::test]
async fn partition_helpers_create_list_and_drop() {
    if !milvus_tests_enabled("partition_helpers_create_list_and_drop") {
        return;
    }
    // Named partitions and a partition key exclude each other in Milvus: the helpers serve
    // collections without a key.
    let (store, _guard) = unkeyed_store("vg_partitions").await;
    let schema = store.schema();
    let name = schema
        .ensure_partition(tenant(7), project(3))
        .await
        .unwrap();
    assert_eq!(name, "tenant_7_project_3");
    assert_eq!(
        MilvusSchemaManager::partition_name(tenant(7), project(3)),
        name
    );
    // Idempotent.
    schema
        .ensure_partition(tenant(7), project(3))
        .await
        .unwrap();
    let partitions = schema.list_partitions().await.unwrap();
    assert!(partitions.contains(&name), "{partitions:?}");
    assert!(schema.drop_partition(tenant(7), project(3)).await.unwrap());
    assert!(!schema.drop_partition(tenant(7), project(3)).await.unwrap());
    let partitions = schema.list_partitions().await.unwrap();
    assert!(!partitions.contains(&name), "{partitions:?}");
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    if !milvus_tests_enabled("bad_input_is_refused_and_nothing_is_stored") {
        return;
    }
    let (store, _guard) = fresh_store("vg_badinput").await;
    // Wrong dimension in the second record: nothing of the call is written.
    let wrong = Embedding::new(vec![0.5; 4]).unwrap();
    let err = store
        .upsert_vectors(&[record(1, 1, 1, axis(0)), record(2, 1, 1, wrong.clone())])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        GatewayError::DimensionMismatch {
            expected: 8,
            got: 4
        }
    );
    // Duplicate ids.
    let err = store
        .upsert_vectors(&[record(1, 1, 1, axis(0)), record(1, 1, 1, axis(1))])
        .await
        .unwrap_err();
    assert!(err.is_invalid_input() && err.to_string().contains("duplicate chunk_id 1"));
    assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 0);
    // Wrong query dimension.
    let err = store
        .search(&SearchRequest::new(
            SearchScope::tenant(tenant(1)),
            wrong,
            top(5),
        ))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        GatewayError::DimensionMismatch {
            expected: 8,
            got: 4
        }
    ));
    // NaN, k = 0 and an empty project set cannot even be expressed as a request.
    assert!(Embedding::new(vec![f32::NAN; 8]).is_err());
    assert!(TopK::new(0).is_err());
    assert!(SearchScope::projects(tenant(1), []).is_err());
    // min_score must be a number.
    let err = store
        .search(
            &SearchRequest::new(SearchScope::tenant(tenant(1)), axis(0), top(5))
                .with_min_score(f32::NAN),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_input());
}

#[tokio::test]
async fn health_reports_version_collection_index_load_and_rows() {
    if !milvus_tests_enabled("health_reports_version_collection_index_load_and_rows") {
        return;
    }
    let (store, _guard) = fresh_store("vg_health").await;
    store
        .upsert_vectors(&[record(1, 1, 1, axis(0)), record(2, 2, 1, axis(1))])
        .await
        .unwrap();
    let health = store.health().await.unwrap();
    assert!(health.is_healthy(), "{health:?}");
    let s = &health.stores[0];
    assert!(s.server_version.as_deref().unwrap().starts_with("v2."));
    let c = s.collection.as_ref().unwrap();
    assert_eq!(c.name, store.config().collection);
    assert!(c.exists);
    assert_eq!(c.loaded, Some(true));
    assert_eq!(c.dimension, Some(8));
    assert_eq!(c.index_type.as_deref(), Some("IVF_FLAT"));
    assert_eq!(
        c.index_params.get("nlist").map(String::as_str),
        Some(store.config().effective_nlist().to_string().as_str())
    );
    assert_eq!(c.row_count, Some(2));
    assert_eq!(
        c.layout.as_deref(),
        Some("no partition key"),
        "a new collection has no partition key by default"
    );

    // A collection that does not exist is reported, not an error.
    let missing = MilvusStore::new(config("vg_health_missing")).unwrap();
    let health = missing.health().await.unwrap();
    assert!(!health.is_healthy());
    assert!(health.stores[0]
        .problem
        .as_deref()
        .unwrap()
        .contains("does not exist"));
}

#[tokio::test]
async fn unreachable_server_names_host_and_port() {
    if !milvus_tests_enabled("unreachable_server_names_host_and_port") {
        return;
    }
    let mut settings = config("vg_unreachable");
    settings.port = 9;
    let store = MilvusStore::new(settings).unwrap();
    let err = store.ensure_schema().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        err.to_string().contains("cannot reach http://127.0.0.1:9"),
        "{err}"
    );
    let health = store.health().await.unwrap();
    assert!(!health.stores[0].reachable);
}

#[tokio::test]
async fn scores_follow_the_port_convention_for_each_metric() {
    if !milvus_tests_enabled("scores_follow_the_port_convention_for_each_metric") {
        return;
    }
    for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
        let mut settings = config("vg_metric");
        settings.metric = metric;
        let settings = settings.exact_search();
        let (store, _guard) = store_with(settings);
        store.ensure_schema().await.unwrap();
        let shape = vectorgate_testkit::DataShape {
            rows: 200,
            dim: 8,
            tenants: 1,
            projects_per_tenant: 1,
            seed: 7,
        };
        // Distinct random vectors: no ties, so the order is fully determined.
        let records = vectorgate_testkit::generate_records(shape, 0);
        store.upsert_vectors(&records).await.unwrap();
        let query = Embedding::new(vec![0.3, -0.2, 0.9, 0.1, -0.5, 0.4, 0.0, 0.2]).unwrap();
        let scope = SearchScope::tenant(tenant(1));
        let hits = store
            .search(&SearchRequest::new(scope.clone(), query.clone(), top(10)))
            .await
            .unwrap();
        let exact = vectorgate_testkit::exact_top_k(&records, &scope, query.as_slice(), 10, metric);
        assert_eq!(hits.len(), 10);
        for (got, want) in hits.iter().zip(&exact) {
            assert_eq!(
                got.chunk_id, want.chunk_id,
                "{metric}: {hits:?} vs {exact:?}"
            );
            assert!(
                (got.score - want.score).abs() < 1e-4,
                "{metric}: score {} vs {}",
                got.score,
                want.score
            );
        }
        // min_score drops the weaker hits.
        let threshold = exact[4].score;
        let hits = store
            .search(&SearchRequest::new(scope, query, top(10)).with_min_score(threshold))
            .await
            .unwrap();
        assert!(
            hits.len() >= 5 && hits.iter().all(|h| h.score >= threshold),
            "{metric}"
        );
    }
}

#[tokio::test]
async fn scan_fetch_and_count_read_rows_back_in_id_order() {
    if !milvus_tests_enabled("scan_fetch_and_count_read_rows_back_in_id_order") {
        return;
    }
    let (store, _guard) = fresh_store("vg_scan").await;
    let records: Vec<_> = (0..60i64)
        .map(|i| record(500 - i, 1 + i % 3, 1 + i % 2, axis(i as usize)))
        .collect();
    store.upsert_vectors(&records).await.unwrap();
    let rows = store
        .scan_range(ScanFilter::tenant(tenant(2)), chunk(0), chunk(1_000), true)
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows.windows(2).all(|w| w[0].chunk_id < w[1].chunk_id));
    for row in &rows {
        let original = records.iter().find(|r| r.chunk_id == row.chunk_id).unwrap();
        assert_eq!(row.clone().into_record().as_ref(), Some(original));
    }
    let ids_only = store
        .scan_range(ScanFilter::all(), chunk(450), chunk(459), false)
        .await
        .unwrap();
    assert_eq!(ids_only.len(), 10);
    assert!(ids_only.iter().all(|r| r.embedding.is_none()));
    let fetched = store
        .fetch(&[chunk(500), chunk(441), chunk(9)])
        .await
        .unwrap();
    assert_eq!(
        fetched.iter().map(|r| r.chunk_id.get()).collect::<Vec<_>>(),
        vec![441, 500]
    );
    assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 60);
    assert_eq!(
        store.count(ScanFilter::tenant(tenant(3))).await.unwrap(),
        20
    );
}
