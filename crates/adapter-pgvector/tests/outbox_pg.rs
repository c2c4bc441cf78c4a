//! The outbox protocol on the real PostgreSQL: every rule of `docs/dual-mode.md` that the
//! table enforces, each forced in the order that matters. Needs DATABASE_URL.

use std::time::Duration;

use vectorgate_adapter_pgvector::{PgOutbox, PgVectorConfig, PgVectorStore};
use vectorgate_domain::outbox::{Outbox, Settle};
use vectorgate_domain::{ChunkId, DeleteRequest, Dimension, VectorStoreGateway};
use vectorgate_testkit::{chunk, project, tenant, unique_name, ServicesEnv};

const LEASE: Duration = Duration::from_secs(60);

fn ids(values: &[i64]) -> Vec<ChunkId> {
    values.iter().map(|v| chunk(*v)).collect()
}

/// A store on a fresh table with a fresh outbox beside it.
async fn fixture() -> (PgVectorStore, PgOutbox) {
    let mut config = PgVectorConfig::for_url(
        &ServicesEnv::load().database_url(),
        Dimension::new(4).unwrap(),
    )
    .unwrap();
    config.max_connections = 4;
    config.table = unique_name("outbox_data");
    let store = PgVectorStore::new(config).unwrap();
    store.bootstrap().await.unwrap();
    let outbox = store.outbox(&unique_name("test_outbox")).unwrap();
    outbox.bootstrap().await.unwrap();
    outbox.bootstrap().await.unwrap(); // idempotent
    (store, outbox)
}

async fn cleanup(store: &PgVectorStore, outbox: &PgOutbox) {
    outbox.drop_table().await.unwrap();
    let pool = sqlx::PgPool::connect(&ServicesEnv::load().database_url())
        .await
        .unwrap();
    sqlx::query(&format!(
        "DROP TABLE IF EXISTS {0}, {0}_chunk_ids",
        store.config().table
    ))
    .execute(&pool)
    .await
    .unwrap();
}

async fn depth(outbox: &PgOutbox) -> u64 {
    outbox.stats().await.unwrap().depth
}

#[tokio::test]
async fn a_lone_write_removes_its_entries_and_overlapping_writes_keep_theirs() {
    let (store, outbox) = fixture().await;
    outbox.record(&ids(&[1, 2]), LEASE).await.unwrap();
    assert_eq!(depth(&outbox).await, 2);
    assert_eq!(
        outbox
            .settle(&ids(&[1, 2]), &Settle::Applied)
            .await
            .unwrap(),
        0
    );
    assert_eq!(depth(&outbox).await, 0);

    // Two writes in flight together on id 2: whichever settles, id 2 stays for the relay.
    outbox.record(&ids(&[1, 2]), LEASE).await.unwrap();
    outbox.record(&ids(&[2, 3]), LEASE).await.unwrap();
    assert_eq!(
        outbox
            .settle(&ids(&[1, 2]), &Settle::Applied)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        outbox
            .settle(&ids(&[2, 3]), &Settle::Applied)
            .await
            .unwrap(),
        1
    );
    assert_eq!(depth(&outbox).await, 1);
    let claims = outbox.claim(10).await.unwrap();
    assert_eq!(
        claims.iter().map(|c| c.chunk_id).collect::<Vec<_>>(),
        ids(&[2])
    );
    assert_eq!(outbox.complete(&claims).await.unwrap(), 1);
    assert_eq!(depth(&outbox).await, 0);

    // A write after another settled is alone again.
    outbox.record(&ids(&[2]), LEASE).await.unwrap();
    assert_eq!(
        outbox.settle(&ids(&[2]), &Settle::Applied).await.unwrap(),
        0
    );
    cleanup(&store, &outbox).await;
}

#[tokio::test]
async fn a_failed_write_stays_for_the_relay_with_its_error() {
    let (store, outbox) = fixture().await;
    outbox.record(&ids(&[5, 6]), LEASE).await.unwrap();
    let left = outbox
        .settle(&ids(&[5, 6]), &Settle::Failed("milvus down".into()))
        .await
        .unwrap();
    assert_eq!(left, 2);
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.depth, stats.failed), (2, 2));
    assert_eq!(stats.last_error.as_deref(), Some("milvus down"));
    assert!(stats.lag.is_some());
    // The relay's replay fails too: the entries stay, still failed.
    let claims = outbox.claim(10).await.unwrap();
    assert_eq!(claims.len(), 2);
    outbox.release(&claims, "still down").await.unwrap();
    assert_eq!(outbox.stats().await.unwrap().failed, 2);
    // Then it succeeds: the entries are gone.
    let claims = outbox.claim(10).await.unwrap();
    assert_eq!(outbox.complete(&claims).await.unwrap(), 2);
    assert_eq!(depth(&outbox).await, 0);
    cleanup(&store, &outbox).await;
}

#[tokio::test]
async fn the_relay_leaves_writes_in_flight_alone_and_replays_again_what_changed_under_it() {
    let (store, outbox) = fixture().await;
    outbox.record(&ids(&[1]), LEASE).await.unwrap();
    assert!(
        outbox.claim(10).await.unwrap().is_empty(),
        "a write holds it"
    );
    outbox.enqueue(&ids(&[2])).await.unwrap();
    let claims = outbox.claim(10).await.unwrap();
    assert_eq!(
        claims.iter().map(|c| c.chunk_id).collect::<Vec<_>>(),
        ids(&[2])
    );
    assert!(outbox.claim(10).await.unwrap().is_empty(), "claimed once");
    // A write of id 2 starts and ends while the relay replays it: the relay's copy may be
    // older than the write's, so the entry stays for another replay.
    outbox.record(&ids(&[2]), LEASE).await.unwrap();
    assert_eq!(
        outbox.settle(&ids(&[2]), &Settle::Applied).await.unwrap(),
        1
    );
    assert_eq!(outbox.complete(&claims).await.unwrap(), 0);
    let again = outbox.claim(10).await.unwrap();
    assert_eq!(
        again.iter().map(|c| c.chunk_id).collect::<Vec<_>>(),
        ids(&[2])
    );
    assert_eq!(outbox.complete(&again).await.unwrap(), 1);
    // An enqueued id keeps its entry even when a lone write settles cleanly.
    outbox.enqueue(&ids(&[3])).await.unwrap();
    outbox.record(&ids(&[3]), LEASE).await.unwrap();
    assert_eq!(
        outbox.settle(&ids(&[3]), &Settle::Applied).await.unwrap(),
        1
    );
    assert_eq!(depth(&outbox).await, 2, "ids 1 (in flight) and 3");
    cleanup(&store, &outbox).await;
}

/// Issue 12, interleaving 1: a write slower than its lease. The relay takes the entry
/// over and replays it before the write ends; the write then fails on Milvus. The entry
/// is recorded again, so the relay replays after the write.
#[tokio::test]
async fn a_write_slower_than_its_lease_is_replayed_again_after_it_ends() {
    let (store, outbox) = fixture().await;
    outbox.record(&ids(&[7]), Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claims = outbox.claim(10).await.unwrap();
    assert_eq!(claims.len(), 1, "the lease ran out: taken over");
    assert_eq!(outbox.complete(&claims).await.unwrap(), 1);
    assert_eq!(depth(&outbox).await, 0);
    // The slow write ends now.
    let left = outbox
        .settle(&ids(&[7]), &Settle::Failed("milvus timed out".into()))
        .await
        .unwrap();
    assert_eq!(left, 1, "the entry is back for the relay");
    // The same when it ends well: its Milvus write may have landed after the replay.
    outbox.record(&ids(&[8]), Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claims = outbox.claim(10).await.unwrap();
    assert_eq!(claims.len(), 2);
    // Taken over but not completed yet: the late settle keeps it.
    assert_eq!(
        outbox.settle(&ids(&[8]), &Settle::Applied).await.unwrap(),
        1
    );
    outbox.complete(&claims).await.unwrap();
    let again = outbox.claim(10).await.unwrap();
    assert_eq!(
        again.iter().map(|c| c.chunk_id).collect::<Vec<_>>(),
        ids(&[8])
    );
    cleanup(&store, &outbox).await;
}

#[tokio::test]
async fn a_scope_delete_records_exactly_the_ids_it_removed() {
    let (store, outbox) = fixture().await;
    let rec = |id, t, p| {
        vectorgate_domain::VectorRecord::new(
            chunk(id),
            tenant(t),
            project(p),
            vectorgate_domain::Embedding::new(vec![0.1, 0.2, 0.3, 0.4]).unwrap(),
        )
    };
    store
        .upsert_vectors(&[rec(1, 1, 1), rec(2, 1, 2), rec(3, 1, 2), rec(4, 2, 2)])
        .await
        .unwrap();
    let gone = outbox
        .delete_scope(&DeleteRequest::project(tenant(1), project(2)), LEASE)
        .await
        .unwrap();
    assert_eq!(gone, ids(&[2, 3]));
    assert_eq!(
        store
            .count(vectorgate_domain::ScanFilter::all())
            .await
            .unwrap(),
        2
    );
    assert_eq!(depth(&outbox).await, 2);
    assert!(
        outbox.claim(10).await.unwrap().is_empty(),
        "held until settled"
    );
    assert_eq!(outbox.settle(&gone, &Settle::Applied).await.unwrap(), 0);
    let gone = outbox
        .delete_scope(&DeleteRequest::tenant(tenant(2)), LEASE)
        .await
        .unwrap();
    assert_eq!(gone, ids(&[4]));
    cleanup(&store, &outbox).await;
}

#[tokio::test]
async fn one_relay_leads_at_a_time_and_hands_over_on_release() {
    let (store, outbox) = fixture().await;
    let mut first = outbox.try_lead().await.unwrap().expect("nobody leads yet");
    assert!(outbox.try_lead().await.unwrap().is_none(), "taken");
    first.check().await.unwrap();
    first.release().await;
    let second = outbox.try_lead().await.unwrap().expect("released");
    second.release().await;
    cleanup(&store, &outbox).await;
}

#[tokio::test]
async fn a_failure_wakes_a_listening_relay() {
    let (store, outbox) = fixture().await;
    let mut wakeups = outbox.subscribe().await.unwrap();
    outbox.record(&ids(&[9]), LEASE).await.unwrap();
    outbox
        .settle(&ids(&[9]), &Settle::Failed("x".into()))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), wakeups.next())
        .await
        .expect("woken within 5 s")
        .unwrap();
    cleanup(&store, &outbox).await;
}

#[tokio::test]
async fn an_outbox_of_the_older_layout_is_refused_and_left_alone() {
    let (store, outbox) = fixture().await;
    let name = unique_name("old_outbox");
    let pool = sqlx::PgPool::connect(&ServicesEnv::load().database_url())
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE TABLE {name} (id bigserial PRIMARY KEY, op text NOT NULL, chunk_ids bigint[])"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let old = store.outbox(&name).unwrap();
    let err = old.bootstrap().await.unwrap_err();
    assert!(
        matches!(&err, vectorgate_domain::GatewayError::SchemaMismatch { details, .. } if details.contains("older vectorgate")),
        "{err}"
    );
    old.drop_table().await.unwrap();
    cleanup(&store, &outbox).await;
}

#[tokio::test]
async fn a_claim_rewrites_its_entries_in_place_without_new_index_entries() {
    let (store, fresh) = fixture().await;
    let name = unique_name("hot_outbox");
    let outbox = store.outbox(&name).unwrap();
    outbox.bootstrap().await.unwrap();
    let pool = sqlx::PgPool::connect(&ServicesEnv::load().database_url())
        .await
        .unwrap();
    let index_bytes = || async {
        sqlx::query_scalar::<_, i64>("SELECT pg_indexes_size($1::regclass)")
            .bind(&name)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    // Writes whose lease ran out at once: claimable as soon as they are recorded.
    let all: Vec<i64> = (1..=2000).collect();
    outbox.record(&ids(&all), Duration::ZERO).await.unwrap();
    let before = index_bytes().await;
    assert_eq!(outbox.claim(2000).await.unwrap().len(), 2000);
    assert_eq!(
        index_bytes().await,
        before,
        "the claim wrote new index entries: its updates did not stay on their pages (HOT)"
    );
    outbox.drop_table().await.unwrap();
    cleanup(&store, &fresh).await;
}
