//! The outbox rules on the real PostgreSQL (the same cases the in-memory outbox is held
//! to in the unit tests). Needs DATABASE_URL.

use std::time::Duration;

use vectorgate_adapter_pgvector::{PgOutbox, PgVectorConfig, PgVectorStore};
use vectorgate_domain::outbox::{Completion, Intent, IntentOp, Outbox};
use vectorgate_domain::{ChunkId, DeleteRequest, Dimension, TenantId};
use vectorgate_testkit::{unique_name, ServicesEnv};

const LEASE: Duration = Duration::from_secs(60);

fn upsert(ids: &[i64]) -> Intent {
    Intent {
        op: IntentOp::Upsert,
        tenant_ids: vec![TenantId::new(1).unwrap()],
        chunk_ids: ids.iter().map(|i| ChunkId::new(*i).unwrap()).collect(),
        project_id: None,
    }
}

async fn outbox() -> PgOutbox {
    let mut config = PgVectorConfig::for_url(
        &ServicesEnv::load().database_url(),
        Dimension::new(4).unwrap(),
    )
    .unwrap();
    config.max_connections = 2;
    let outbox = PgVectorStore::new(config)
        .unwrap()
        .outbox(&unique_name("test_outbox"))
        .unwrap();
    outbox.bootstrap().await.unwrap();
    outbox.bootstrap().await.unwrap(); // idempotent
    outbox
}

#[tokio::test]
async fn intents_settle_by_the_overlap_rules() {
    let outbox = outbox().await;

    // A lone write removes its intent.
    let a = outbox.record(&upsert(&[1, 2]), LEASE).await.unwrap();
    assert_eq!(outbox.depth().await.unwrap(), 1);
    assert_eq!(
        outbox.complete(a, &upsert(&[1, 2]), &[]).await.unwrap(),
        Completion::Removed
    );
    assert_eq!(outbox.depth().await.unwrap(), 0);

    // Two overlapping writes in flight together: both kept for replay.
    let b = outbox.record(&upsert(&[3, 4]), LEASE).await.unwrap();
    let c = outbox.record(&upsert(&[4, 5]), LEASE).await.unwrap();
    assert_eq!(
        outbox.complete(b, &upsert(&[3, 4]), &[]).await.unwrap(),
        Completion::KeptForReplay
    );
    assert_eq!(
        outbox.complete(c, &upsert(&[4, 5]), &[]).await.unwrap(),
        Completion::KeptForReplay
    );
    // ... unless known not to have been concurrent.
    let d = outbox.record(&upsert(&[9]), LEASE).await.unwrap();
    let e = outbox.record(&upsert(&[9]), LEASE).await.unwrap();
    assert_eq!(
        outbox.complete(d, &upsert(&[9]), &[e]).await.unwrap(),
        Completion::Removed
    );
    assert_eq!(
        outbox.complete(e, &upsert(&[9]), &[d]).await.unwrap(),
        Completion::Removed
    );
    assert_eq!(outbox.depth().await.unwrap(), 2);

    // Kept entries were released (no lease): sync claims them, in id order, once.
    let claimed = outbox.claim(0, 10, LEASE).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b, c]);
    assert_eq!(claimed[1].intent, upsert(&[4, 5]));
    assert!(outbox.claim(0, 10, LEASE).await.unwrap().is_empty());

    // A write of chunk 4 that starts while the sync runs is kept although the sync
    // finishes before it settles.
    let f = outbox.record(&upsert(&[4]), LEASE).await.unwrap();
    outbox.mark_done(&[b, c]).await.unwrap();
    assert_eq!(
        outbox.complete(f, &upsert(&[4]), &[]).await.unwrap(),
        Completion::KeptForReplay
    );
    assert_eq!(outbox.depth().await.unwrap(), 1);
    // b and c finished after f started, and f is still pending: a writer like f settling
    // later must still see them, so nothing is purged yet.
    assert_eq!(outbox.purge_done().await.unwrap(), 0);
    let claimed = outbox.claim(c, 10, LEASE).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.id).collect::<Vec<_>>(), vec![f]);
    outbox.mark_done(&[f]).await.unwrap();
    assert_eq!(outbox.purge_done().await.unwrap(), 3);
    assert_eq!(outbox.depth().await.unwrap(), 0);

    // Failures keep the entry with the error and count the attempt.
    let g = outbox.record(&upsert(&[7]), LEASE).await.unwrap();
    outbox.fail(g, "milvus: connection refused").await.unwrap();
    let claimed = outbox.claim(f, 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].id, g);
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(
        claimed[0].last_error.as_deref(),
        Some("milvus: connection refused")
    );
    outbox.release(&[g], "still down").await.unwrap();
    let claimed = outbox.claim(f, 10, LEASE).await.unwrap();
    assert_eq!(claimed[0].attempts, 2);

    // A writer whose entry a sync replayed and purged while it was in flight re-records it.
    outbox.mark_done(&[g]).await.unwrap();
    let pending_before = outbox.depth().await.unwrap();
    let h = outbox.record(&upsert(&[8]), LEASE).await.unwrap();
    sqlx::query(&format!("DELETE FROM {} WHERE id = $1", outbox.table()))
        .bind(h)
        .execute(
            &sqlx::PgPool::connect(&ServicesEnv::load().database_url())
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        outbox.complete(h, &upsert(&[8]), &[]).await.unwrap(),
        Completion::KeptForReplay
    );
    assert_eq!(outbox.depth().await.unwrap(), pending_before + 1);

    // Scope deletes overlap every write of their tenant.
    let scope = Intent::delete(&DeleteRequest::tenant(TenantId::new(1).unwrap()));
    let i = outbox.record(&scope, LEASE).await.unwrap();
    let j = outbox.record(&upsert(&[100]), LEASE).await.unwrap();
    assert_eq!(
        outbox.complete(j, &upsert(&[100]), &[]).await.unwrap(),
        Completion::KeptForReplay
    );
    outbox.fail(i, "milvus down").await.unwrap();
    let claimed = outbox.claim(h, 10, LEASE).await.unwrap();
    assert!(claimed
        .iter()
        .any(|e| e.id == i && e.intent.op == IntentOp::DeleteScope));
    assert!(claimed.iter().any(|e| e.id == j));

    outbox.drop_table().await.unwrap();
}
