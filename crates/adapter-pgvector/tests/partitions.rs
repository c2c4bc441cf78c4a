//! A table partitioned by tenant (`PGVECTOR_PARTITIONS`), against the real server: what it
//! is created as, how an existing table's layout is kept or refused, and that a chunk id
//! stays in one tenant however the writes race.

use std::sync::Arc;

use vectorgate_adapter_pgvector::{PgVectorStore, DEFAULT_TENANT_PARTITIONS};
use vectorgate_domain::{
    DeleteRequest, GatewayError, ScanFilter, SearchRequest, SearchScope, VectorStoreGateway,
};
use vectorgate_testkit::{exact_top_k, generate_queries, generate_records, tenant, DataShape};

mod support;

use support::*;

/// Rows of the table and of its chunk-id registry, each as (chunk id, tenant), read
/// directly: the registry must name exactly the table's rows.
/// The layout `health` reports for the store's table.
async fn layout(store: &PgVectorStore) -> String {
    let health = store.health().await.unwrap();
    assert!(health.is_healthy(), "{health:?}");
    let table = health.stores[0].collection.clone().unwrap();
    table.layout.unwrap()
}

async fn table_and_registry(store: &PgVectorStore) -> (Vec<(i64, i64)>, Vec<(i64, i64)>) {
    let pool = test_pool().await;
    let table = &store.config().table;
    let read = |sql: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>(&sql)
                .fetch_all(&pool)
                .await
                .expect("read")
        }
    };
    (
        read(format!(
            "SELECT chunk_id, tenant_id FROM {table} ORDER BY 1"
        ))
        .await,
        read(format!(
            "SELECT chunk_id, tenant_id FROM {table}_chunk_ids ORDER BY 1"
        ))
        .await,
    )
}

#[tokio::test]
async fn a_new_table_is_partitioned_by_tenant_and_keeps_each_chunk_in_one_tenant() {
    with_store(config(4), |store| async move {
        assert_eq!(
            layout(&store).await,
            format!("partitioned by HASH (tenant_id), {DEFAULT_TENANT_PARTITIONS} partitions")
        );
        let stored: Vec<_> = (1..=8)
            .map(|i| record(i, 1 + i % 2, 1, basis(4, (i % 4) as usize, 1.0)))
            .collect();
        store.upsert_vectors(&stored).await.unwrap();
        let (rows, registry) = table_and_registry(&store).await;
        assert_eq!(rows.len(), 8);
        assert_eq!(rows, registry);

        // Chunk 2 is tenant 1's: tenant 2 taking it is refused, with nothing of the batch
        // written (chunk 9 is new).
        let err = store
            .upsert_vectors(&[
                record(9, 2, 1, basis(4, 0, 1.0)),
                record(2, 2, 1, basis(4, 1, 1.0)),
            ])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("chunk 2 belongs to tenant 1, not 2"),
            "{err}"
        );
        assert_eq!(all_rows(&store).await, stored);

        // The owner rewrites it in place; a tenant delete clears the registry too.
        store
            .upsert_vectors(&[record(2, 1, 3, basis(4, 3, 1.0))])
            .await
            .unwrap();
        assert_eq!(
            store
                .delete_vectors(&DeleteRequest::tenant(tenant(2)))
                .await
                .unwrap(),
            4
        );
        let (rows, registry) = table_and_registry(&store).await;
        assert_eq!(rows, vec![(2, 1), (4, 1), (6, 1), (8, 1)]);
        assert_eq!(rows, registry);
        // Chunk 1 left with tenant 2, so tenant 1 may now take it.
        store
            .upsert_vectors(&[record(1, 1, 1, basis(4, 0, 1.0))])
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_bulk_load_fills_the_registry_and_rebuilds_every_partitions_index() {
    let mut config = config(16);
    config.tenant_partitions = Some(4);
    config.exact_search_max_rows = 0;
    with_store(config, |store| async move {
        let shape = DataShape {
            rows: 2000,
            dim: 16,
            tenants: 4,
            projects_per_tenant: 2,
            seed: 11,
        };
        let records = generate_records(shape, 0);
        assert_eq!(store.bulk_load(&records, true).await.unwrap(), 2000);
        let (rows, registry) = table_and_registry(&store).await;
        assert_eq!(rows.len(), 2000);
        assert_eq!(rows, registry);

        // A chunk id already stored, under another tenant, fails the whole load.
        let mut again = records[..1].to_vec();
        again[0].tenant_id = tenant(if again[0].tenant_id == tenant(1) {
            2
        } else {
            1
        });
        assert!(store.bulk_load(&again, false).await.is_err());
        assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 2000);

        // Searches walk the tenant's partition's own index.
        let scope = SearchScope::tenant(records[0].tenant_id);
        let plan = store.search_plan(&scope, 10).await.unwrap();
        assert!(
            plan.vector_index
                .as_ref()
                .is_some_and(|i| i.contains("embedding_idx")),
            "{plan}"
        );
        for query in generate_queries(5, 16, 3) {
            let hits = store
                .search(&SearchRequest::new(scope.clone(), query.clone(), k(10)))
                .await
                .unwrap();
            let exact = exact_top_k(
                &records,
                &scope,
                query.as_slice(),
                10,
                store.config().metric,
            );
            assert!(vectorgate_testkit::recall(&hits, &exact) >= 0.8, "{hits:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn an_existing_table_keeps_its_layout_unless_the_setting_names_another() {
    let mut one_table = config(4);
    one_table.tenant_partitions = Some(0);
    with_store(one_table.clone(), |store| async move {
        // Unset: served as it is.
        let mut unset = store.config().clone();
        unset.tenant_partitions = None;
        let served = PgVectorStore::new(unset).unwrap();
        served.bootstrap().await.unwrap();
        served
            .upsert_vectors(&[record(1, 1, 1, basis(4, 0, 1.0))])
            .await
            .unwrap();
        assert_eq!(layout(&served).await, "one table");

        // Named otherwise: refused, naming both layouts and the variable.
        let mut partitioned = store.config().clone();
        partitioned.tenant_partitions = Some(8);
        let refused = PgVectorStore::new(partitioned).unwrap();
        let err = refused.bootstrap().await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, GatewayError::SchemaMismatch { .. }), "{text}");
        assert!(
            text.contains("expected partitioned by HASH (tenant_id), 8 partitions")
                && text.contains("found one table")
                && text.contains("PGVECTOR_PARTITIONS"),
            "{text}"
        );
        assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 1);
    })
    .await;
}

/// Writers of the same new chunk ids under two tenants at once: in a partitioned table no
/// index on chunk id alone exists, so without the registry both would insert and the
/// chunk would belong to two tenants. Each id must end with one owner, and every refused
/// writer must have been told so.
#[tokio::test]
async fn concurrent_writers_of_new_chunks_under_two_tenants_leave_one_owner() {
    with_store(config(4), |store| async move {
        let store = Arc::new(store);
        let mut writers = Vec::new();
        for writer in 0..8_i64 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let tenant_id = 1 + writer % 2;
                let mut refused = 0;
                for round in 0..20_i64 {
                    let ids = (round * 10..round * 10 + 10)
                        .map(|id| record(id + 1, tenant_id, 1, basis(4, 0, 1.0)))
                        .collect::<Vec<_>>();
                    match store.upsert_vectors(&ids).await {
                        Ok(_) => {}
                        Err(GatewayError::TenantConflict { .. }) => refused += 1,
                        Err(e) => panic!("writer {writer}: {e}"),
                    }
                }
                refused
            }));
        }
        let mut refused = 0;
        for writer in writers {
            refused += writer.await.unwrap();
        }
        let (rows, registry) = table_and_registry(&store).await;
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            ids,
            (1..=200).collect::<Vec<_>>(),
            "each chunk once: {rows:?}"
        );
        assert_eq!(rows, registry);
        assert!(
            refused > 0,
            "the writers never met: the race was not forced"
        );
    })
    .await;
}

/// With moves allowed, writers moving the same chunks between three tenants at once: each
/// chunk must end in exactly one tenant, with the registry agreeing.
#[tokio::test]
async fn concurrent_moves_leave_each_chunk_in_one_tenant() {
    let mut config = config(4);
    config.allow_tenant_move = true;
    with_store(config, |store| async move {
        let store = Arc::new(store);
        let mut writers = Vec::new();
        for writer in 0..6_i64 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for round in 0..15_i64 {
                    let tenant_id = 1 + (writer + round) % 3;
                    let ids = (1..=50)
                        .map(|id| record(id, tenant_id, 1, basis(4, 0, 1.0)))
                        .collect::<Vec<_>>();
                    store.upsert_vectors(&ids).await.expect("move");
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        let (rows, registry) = table_and_registry(&store).await;
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            ids,
            (1..=50).collect::<Vec<_>>(),
            "each chunk once: {rows:?}"
        );
        assert_eq!(rows, registry);
    })
    .await;
}

/// TRUNCATE fires no row triggers, so the registry keeps the ids of the rows it removed.
/// A write that meets such a leftover finds no row holding the id, removes it, and goes on.
#[tokio::test]
async fn a_registry_row_left_by_a_truncate_does_not_block_its_chunk() {
    with_store(config(4), |store| async move {
        store
            .upsert_vectors(&[record(1, 1, 1, basis(4, 0, 1.0))])
            .await
            .unwrap();
        sqlx_exec(&store, &format!("TRUNCATE {}", store.config().table)).await;
        let (rows, registry) = table_and_registry(&store).await;
        assert_eq!((rows.len(), registry), (0, vec![(1, 1)]));

        store
            .upsert_vectors(&[record(1, 2, 1, basis(4, 0, 1.0))])
            .await
            .unwrap();
        let (rows, registry) = table_and_registry(&store).await;
        assert_eq!(rows, vec![(1, 2)]);
        assert_eq!(rows, registry);
    })
    .await;
}

/// A store learns the layout once; a table dropped and re-created in the other layout
/// under it costs one failed write, after which the store writes the new table.
#[tokio::test]
async fn a_table_recreated_in_the_other_layout_is_learned_again() {
    with_store(config(4), |store| async move {
        store
            .upsert_vectors(&[record(1, 1, 1, basis(4, 0, 1.0))])
            .await
            .unwrap();
        drop_table(&store).await;
        let mut one_table = store.config().clone();
        one_table.tenant_partitions = Some(0);
        PgVectorStore::new(one_table)
            .unwrap()
            .bootstrap()
            .await
            .unwrap();

        let write = [record(2, 1, 1, basis(4, 1, 1.0))];
        assert!(store.upsert_vectors(&write).await.is_err());
        store.upsert_vectors(&write).await.unwrap();
        assert_eq!(layout(&store).await, "one table");
        assert_eq!(all_rows(&store).await, write.to_vec());
    })
    .await;
}

/// A write refuses a table whose layout differs from the one the setting names, even
/// without a bootstrap first.
#[tokio::test]
async fn a_write_refuses_a_table_of_another_layout_than_the_setting_names() {
    let mut one_table = config(4);
    one_table.tenant_partitions = Some(0);
    with_store(one_table, |store| async move {
        let mut partitioned = store.config().clone();
        partitioned.tenant_partitions = Some(4);
        let err = PgVectorStore::new(partitioned)
            .unwrap()
            .upsert_vectors(&[record(1, 1, 1, basis(4, 0, 1.0))])
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::SchemaMismatch { .. }), "{err}");
        assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 0);
    })
    .await;
}
