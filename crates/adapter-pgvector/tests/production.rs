//! What production brings to pgvector, against the real server: tenants that must not
//! overwrite each other, reserved words as table names, 3,072-dimensional embeddings
//! (a half-precision index) and zero vectors under COSINE.

use vectorgate_domain::{
    GatewayError, Metric, SearchRequest, SearchScope, TenantConflict, VectorStoreGateway,
};
use vectorgate_testkit::{
    chunk, exact_top_k, generate_queries, generate_records, tenant, DataShape,
};

mod support;

use support::*;

fn one_conflict(err: &GatewayError, id: i64, owner: i64, requested: i64) -> bool {
    matches!(err, GatewayError::TenantConflict { conflicts }
        if conflicts[..] == [TenantConflict { chunk_id: chunk(id), owner: tenant(owner), requested: tenant(requested) }])
}

/// Each layout keeps a chunk in one tenant its own way (one table: the upsert's guard; a
/// partitioned one: its chunk-id registry), so the tenant tests run on both.
const LAYOUTS: [Option<u32>; 2] = [Some(0), Some(4)];

#[tokio::test]
async fn an_upsert_taking_a_chunk_of_another_tenant_is_refused_and_writes_nothing() {
    for partitions in LAYOUTS {
        // Batches of two: the four-record call below spans two batches.
        let mut config = config(4);
        config.batch_size = 2;
        config.tenant_partitions = partitions;
        refused_and_nothing_written(config).await;
    }
}

async fn refused_and_nothing_written(config: vectorgate_adapter_pgvector::PgVectorConfig) {
    with_store(config, |store| async move {
        let stored = vec![
            record(1, 1, 1, basis(4, 0, 1.0)),
            record(2, 1, 1, basis(4, 1, 1.0)),
        ];
        store.upsert_vectors(&stored).await.unwrap();

        // One batch: refused inside the write's own transaction.
        let err = store
            .upsert_vectors(&[record(2, 2, 1, basis(4, 2, 1.0))])
            .await
            .unwrap_err();
        assert!(one_conflict(&err, 2, 1, 2), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("chunk 2 belongs to tenant 1, not 2") && text.contains("nothing"),
            "{text}"
        );

        // Two batches, the conflict in the second: the first is not written either.
        let err = store
            .upsert_vectors(&[
                record(5, 2, 1, basis(4, 0, 1.0)),
                record(6, 2, 1, basis(4, 1, 1.0)),
                record(7, 2, 1, basis(4, 2, 1.0)),
                record(1, 2, 1, basis(4, 3, 1.0)),
            ])
            .await
            .unwrap_err();
        assert!(one_conflict(&err, 1, 1, 2), "{err}");
        assert_eq!(
            all_rows(&store).await,
            stored,
            "nothing of either call was written"
        );

        // The owner may still rewrite its chunk.
        let rewrite = record(2, 1, 3, basis(4, 3, 1.0));
        store
            .upsert_vectors(std::slice::from_ref(&rewrite))
            .await
            .unwrap();
        assert_eq!(all_rows(&store).await, vec![stored[0].clone(), rewrite]);
    })
    .await;
}

#[tokio::test]
async fn allow_tenant_move_lets_an_upsert_move_a_chunk() {
    for partitions in LAYOUTS {
        let mut config = config(4);
        config.allow_tenant_move = true;
        config.tenant_partitions = partitions;
        moved(config).await;
    }
}

async fn moved(config: vectorgate_adapter_pgvector::PgVectorConfig) {
    with_store(config, |store| async move {
        store
            .upsert_vectors(&[record(1, 1, 1, basis(4, 0, 1.0))])
            .await
            .unwrap();
        let moved = record(1, 2, 1, basis(4, 0, 1.0));
        store
            .upsert_vectors(std::slice::from_ref(&moved))
            .await
            .unwrap();
        assert_eq!(all_rows(&store).await, vec![moved]);
        assert!(store
            .tenant_conflicts(&[record(1, 3, 1, basis(4, 0, 1.0))])
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_table_named_with_a_reserved_word_works() {
    let mut config = config(4);
    config.table = "user".to_string();
    with_store(config, |store| async move {
        let records = vec![
            record(1, 1, 1, basis(4, 0, 1.0)),
            record(2, 1, 2, basis(4, 1, 1.0)),
        ];
        store.upsert_vectors(&records).await.unwrap();
        let hits = store
            .search(&SearchRequest::new(
                SearchScope::tenant(tenant(1)),
                records[1].embedding.clone(),
                k(1),
            ))
            .await
            .unwrap();
        assert_eq!(hits[0].chunk_id, chunk(2));
        assert_eq!(store.fetch(&[chunk(1)]).await.unwrap(), records[..1]);
        let health = store.health().await.unwrap();
        assert!(health.is_healthy(), "{health:?}");
        store
            .delete_vectors(&vectorgate_domain::DeleteRequest::tenant(tenant(1)))
            .await
            .unwrap();
        assert!(all_rows(&store).await.is_empty());
        // Bulk load (COPY) and its index rebuild name the table too.
        store.bulk_load(&records, true).await.unwrap();
        assert_eq!(all_rows(&store).await, records);
    })
    .await;
}

#[tokio::test]
async fn embeddings_of_3072_dimensions_are_indexed_in_half_precision() {
    const DIM: usize = 3072;
    let mut config = config(DIM as u32);
    // The index path (not the exact one), as wide as the data so its answers are exact.
    config.exact_search_max_rows = 0;
    config.ef_search = 1000;
    assert!(config.half_precision_index());
    with_store(config, |store| async move {
        let shape = DataShape {
            rows: 200,
            dim: DIM,
            tenants: 2,
            projects_per_tenant: 2,
            seed: 5,
        };
        let records = generate_records(shape, 1);
        store.upsert_vectors(&records).await.unwrap();
        // The column keeps every value in full precision.
        let back = store.fetch(&[records[0].chunk_id]).await.unwrap();
        assert_eq!(back[0], records[0]);

        let health = store.health().await.unwrap();
        let collection = health.stores[0].collection.clone().unwrap();
        assert_eq!(
            collection.index_params.get("opclass").map(String::as_str),
            Some("halfvec_ip_ops"),
            "{collection:?}"
        );
        assert!(health.is_healthy(), "{health:?}");

        let scope = SearchScope::tenant(tenant(1));
        for (q, query) in generate_queries(4, DIM, 9).into_iter().enumerate() {
            let hits = store
                .search(&SearchRequest::new(scope.clone(), query.clone(), k(10)))
                .await
                .unwrap();
            let exact = exact_top_k(&records, &scope, query.as_slice(), 10, Metric::Ip);
            let got: Vec<_> = hits.iter().map(|h| h.chunk_id).collect();
            let want: Vec<_> = exact.iter().map(|h| h.chunk_id).collect();
            assert_eq!(got, want, "query {q}");
            for (h, e) in hits.iter().zip(&exact) {
                // Scores come from the full-precision column, not the halfvec index.
                assert!(
                    (h.score - e.score).abs() <= 1e-3,
                    "query {q}: {} vs {}",
                    h.score,
                    e.score
                );
            }
        }
        // Bulk load rebuilds the half-precision index from its own definition.
        for t in [1, 2] {
            store
                .delete_vectors(&vectorgate_domain::DeleteRequest::tenant(tenant(t)))
                .await
                .unwrap();
        }
        store.bulk_load(&records, true).await.unwrap();
        assert_eq!(all_rows(&store).await.len(), records.len());
        let health = store.health().await.unwrap();
        assert!(health.is_healthy(), "{health:?}");
    })
    .await;
}

#[tokio::test]
async fn a_zero_vector_under_cosine_is_refused_and_changes_nothing() {
    let mut config = config(4);
    config.metric = Metric::Cosine;
    with_store(config, |store| async move {
        let stored = vec![record(1, 1, 1, basis(4, 0, 1.0))];
        store.upsert_vectors(&stored).await.unwrap();
        let err = store
            .upsert_vectors(&[
                record(2, 1, 1, basis(4, 1, 1.0)),
                record(3, 1, 1, vec![0.0; 4]),
            ])
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(err.to_string().contains("chunk_id 3"), "{err}");
        assert_eq!(all_rows(&store).await, stored);
        let err = store
            .search(&SearchRequest::new(
                SearchScope::tenant(tenant(1)),
                vectorgate_domain::Embedding::new(vec![0.0; 4]).unwrap(),
                k(5),
            ))
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
    })
    .await;
}
