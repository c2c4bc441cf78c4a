//! The relay in the background, the periodic reconcile, and every interleaving that used to
//! lose a write, forced in that order.

use super::*;

// ---- The relay in the background -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_replays_on_its_own_once_milvus_is_back() {
    let f = Fixture::new(background());
    f.milvus.set_down(true);
    f.dual
        .upsert_vectors(&[rec(1, 1, 1, 0.1), rec(2, 1, 1, 0.2)])
        .await
        .unwrap();
    f.dual
        .delete_vectors(&DeleteRequest::tenant(t(9)))
        .await
        .unwrap();
    f.dual.flush_background().await;
    assert!(!f.converged());
    f.milvus.set_down(false);
    eventually("the relay replayed without a sync", || {
        f.converged() && f.outbox.pending().is_empty()
    })
    .await;
    f.dual.close().await.unwrap();
}

/// The leader's outbox statement fails after Milvus took a batch (a statement deadline
/// under load, seen in the stress test): the batch's claims must not stay behind, or the
/// leader skips those ids for as long as it leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_outbox_statement_does_not_strand_the_leaders_claims() {
    let f = Fixture::new(background());
    eventually("the relay leads", || f.outbox.try_lead_is_taken()).await;
    let replay = f.milvus_gate.hold(Call::Put);
    f.milvus_gate.fail(Call::Upsert, 1);
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.1)]).await.unwrap();
    replay.reached().await;
    // Completing the claimed batch fails; the outbox comes back right after.
    f.outbox.set_unavailable(true);
    replay.release();
    eventually("the relay's outbox call failed", || {
        f.outbox.refused_calls() > 0
    })
    .await;
    assert_eq!(
        f.outbox.claimed(),
        vec![c(1)],
        "the failed pass left its claim"
    );
    f.outbox.set_unavailable(false);
    f.dual.upsert_vectors(&[rec(2, 1, 1, 0.2)]).await.unwrap();
    eventually(
        "the relay replayed every id, the one it had claimed too",
        || f.converged() && f.outbox.pending().is_empty(),
    )
    .await;
    f.dual.close().await.unwrap();
}

/// A replay starts with a small batch, so Milvus is written soon, and doubles it; while
/// Milvus writes a batch, the one before is completed: a slow completion does not hold
/// back the next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_starts_small_and_completes_a_batch_while_milvus_writes_the_next() {
    let f = Fixture::new(DualSettings {
        relay_batch_size: 8,
        ..manual()
    });
    f.milvus.set_down(true);
    let records: Vec<_> = (1..=15).map(|i| rec(i, 1, 1, i as f32 / 20.0)).collect();
    f.dual.upsert_vectors(&records).await.unwrap();
    f.dual.flush_background().await;
    f.milvus.set_down(false);

    let first_write = f.milvus_gate.hold(Call::Put);
    let dual = f.dual.clone();
    let sync = tokio::spawn(async move { dual.sync().await });
    first_write.reached().await;
    // Batches of 1 (being written) and 2 (read meanwhile), not 8.
    eventually("the first two batches are claimed", || {
        f.outbox.claimed().len() == 3
    })
    .await;
    assert!(f.milvus.snapshot().is_empty());

    let first_completion = f.outbox.hold_complete();
    first_write.release();
    first_completion.reached().await;
    eventually(
        "the second batch is written while the first one's completion waits",
        || f.milvus.snapshot().len() == 3,
    )
    .await;
    assert_eq!(f.outbox.pending().len(), 15, "nothing completed yet");
    first_completion.release();

    let report = sync.await.unwrap().unwrap();
    assert_eq!((report.upserted, report.remaining), (15, 0));
    assert!(f.converged() && f.outbox.pending().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_leads_and_a_standby_takes_over_when_it_closes() {
    let f = Fixture::new(background());
    let second = f.gateway(background());
    // The first gateway's relay leads: the second cannot.
    eventually("the first relay leads", || f.outbox.try_lead_is_taken()).await;
    f.dual.close().await.unwrap();
    // With the leader gone, the standby replays.
    f.milvus_gate.fail(Call::Upsert, 1);
    second.upsert_vectors(&[rec(3, 1, 1, 0.3)]).await.unwrap();
    eventually("the standby took over and replayed", || {
        f.converged() && f.outbox.pending().is_empty()
    })
    .await;
    second.close().await.unwrap();
}

#[test]
fn the_periodic_reconcile_repairs_drift_from_outside_the_outbox_and_counts_it() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let f = Fixture::new(DualSettings {
                reconcile_interval: Duration::from_millis(20),
                reconcile_rows: 2,
                ..background()
            });
            f.dual
                .upsert_vectors(&[rec(1, 1, 1, 0.1), rec(2, 1, 1, 0.2), rec(3, 1, 1, 0.3)])
                .await
                .unwrap();
            f.dual.flush_background().await;
            // Drift no write recorded: a changed row, a lost row and a ghost row.
            f.milvus.put_raw(rec(2, 1, 1, 0.9));
            f.milvus.remove(&[c(3)]).await.unwrap();
            f.milvus.put_raw(rec(50, 4, 1, 0.5));
            eventually("the reconcile window found and repaired the drift", || {
                f.converged()
            })
            .await;
            f.dual.close().await.unwrap();
        })
    });
    let drift = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, _, _, _)| key.key().name() == crate::observability::DRIFT_ROWS_TOTAL)
        .map(|(_, _, _, value)| value);
    assert_eq!(drift, Some(DebugValue::Counter(3)));
}

/// A write that lands in both stores between a window's pgvector read and its Milvus read
/// is not drift. Before, the window counted it and had the relay replay it (seen in the
/// dual benchmark: 2,000 rows of a steady write load reported as drift).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_between_the_two_reads_of_a_reconcile_window_is_not_drift() {
    let f = Fixture::new(manual());
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.1)]).await.unwrap();
    let window = Arc::new(super::super::reconcile::Window::new(
        &f.stores(),
        &DualSettings {
            reconcile_rows: 10,
            ..manual()
        },
    ));
    let milvus_read = f.milvus_gate.hold(Call::Range);
    let step = {
        let window = window.clone();
        tokio::spawn(async move { window.step().await })
    };
    milvus_read.reached().await;
    // pgvector was read with chunk 1 as it was; both stores now take a new chunk and a
    // changed one, and the write is done before the window asks the outbox.
    f.dual
        .upsert_vectors(&[rec(1, 1, 1, 0.5), rec(2, 1, 1, 0.2)])
        .await
        .unwrap();
    f.dual.flush_background().await;
    assert!(f.converged());
    milvus_read.release();
    assert_eq!(step.await.unwrap().unwrap(), 0, "no drift was counted");
    assert!(
        f.outbox.pending().is_empty(),
        "nothing was handed to the relay"
    );
}

// ---- Issue 12's interleavings, each forced in the order that lost a write ----------

/// 1. A write slower than its lease: the relay takes its ids over and replays them while
/// pgvector is still writing; the write then fails on Milvus. Before: the intent was gone
/// and Milvus kept the old row. Now the late settle records the ids again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaving_1_a_write_slower_than_its_lease() {
    let f = Fixture::new(manual());
    let pg_write = f.pg_gate.hold(Call::Upsert);
    f.milvus_gate.fail(Call::Upsert, 1);
    let writer = {
        let dual = f.dual.clone();
        tokio::spawn(async move { dual.upsert_vectors(&[rec(1, 1, 1, 0.9)]).await })
    };
    pg_write.reached().await;
    f.outbox.expire_leases();
    f.dual.sync().await.unwrap();
    pg_write.release();
    writer.await.unwrap().unwrap();
    f.dual.flush_background().await;
    assert_eq!(
        f.outbox.pending(),
        vec![c(1)],
        "the late write left its id for the relay"
    );
    f.dual.sync().await.unwrap();
    assert!(f.converged());
}

/// 2. A relay's replay fails after it read pgvector, while a write of the same id runs
/// to the end: the write must not take the entry as its own, or the id stays stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaving_2_a_failed_replay_does_not_let_a_writer_drop_the_entry() {
    let f = Fixture::new(manual());
    f.milvus_gate.fail(Call::Upsert, 1);
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.1)]).await.unwrap();
    f.dual.flush_background().await;
    let replay = f.milvus_gate.hold(Call::Put);
    f.milvus_gate.fail(Call::Put, 1);
    let sync = {
        let dual = f.dual.clone();
        tokio::spawn(async move { dual.sync().await })
    };
    replay.reached().await;
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.2)]).await.unwrap();
    f.dual.flush_background().await;
    replay.release();
    sync.await.unwrap().unwrap();
    assert_eq!(f.outbox.pending(), vec![c(1)]);
    f.dual.sync().await.unwrap();
    assert!(f.converged());
}

/// 3. Two syncs at once: one replays a stale copy after a writer's newer one. Before: both
/// entries were marked done and Milvus kept the stale copy. Now one relay runs at a time,
/// and a replay whose id changed meanwhile is replayed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaving_3_two_syncs_and_a_stale_replay() {
    let f = Fixture::new(manual());
    f.milvus_gate.fail(Call::Upsert, 1);
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.1)]).await.unwrap();
    f.dual.flush_background().await;
    let stale = f.milvus_gate.hold(Call::Put);
    let sync_a = {
        let dual = f.dual.clone();
        tokio::spawn(async move { dual.sync().await })
    };
    stale.reached().await;
    // A writer writes v2 to both stores, and a second sync starts while A replays v1.
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.2)]).await.unwrap();
    f.dual.flush_background().await;
    let other = f.gateway(manual());
    let sync_b = tokio::spawn(async move { other.sync().await });
    // B must find A leading; released earlier, A could finish before B even asks.
    eventually("the second sync stands by", || {
        f.outbox.lead_refusals() == 1
    })
    .await;
    stale.release();
    sync_a.await.unwrap().unwrap();
    let b = sync_b.await.unwrap().unwrap();
    assert!(b.other_relay, "one relay at a time");
    assert!(
        f.converged(),
        "{:?} vs {:?}",
        f.pg.snapshot(),
        f.milvus.snapshot()
    );
    assert!(f.outbox.pending().is_empty());
}

/// 5. A backfill page read before a writer commits lands after the writer's Milvus
/// write. Backfill now goes through the relay, so the write keeps the id for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaving_5_a_backfill_page_older_than_a_write() {
    let f = Fixture::new(manual());
    f.pg.put_raw(rec(1, 1, 1, 0.1));
    let page = f.milvus_gate.hold(Call::Put);
    let backfill = {
        let dual = f.dual.clone();
        tokio::spawn(async move { dual.replay(&[c(1)]).await })
    };
    page.reached().await;
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.2)]).await.unwrap();
    f.dual.flush_background().await;
    page.release();
    backfill.await.unwrap().unwrap();
    assert!(
        f.converged(),
        "{:?} vs {:?}",
        f.pg.snapshot(),
        f.milvus.snapshot()
    );
}

/// 6. A tenant delete racing an upsert that moves a chunk into another tenant: pgvector
/// deletes the chunk, then the move re-creates it under tenant 2 in both stores, and only
/// then does Milvus apply the delete. Both writes name the id, so the relay replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaving_6_a_tenant_delete_racing_a_move() {
    let f = Fixture::new(manual());
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.1)]).await.unwrap();
    f.dual.flush_background().await;
    let milvus_delete = f.milvus_gate.hold(Call::Remove);
    let delete = {
        let dual = f.dual.clone();
        tokio::spawn(async move { dual.delete_vectors(&DeleteRequest::tenant(t(1))).await })
    };
    milvus_delete.reached().await;
    f.dual.upsert_vectors(&[rec(1, 2, 1, 0.1)]).await.unwrap();
    milvus_delete.release();
    assert_eq!(delete.await.unwrap().unwrap(), 1);
    f.dual.flush_background().await;
    assert!(
        f.milvus.snapshot().is_empty(),
        "Milvus lost the moved chunk for now"
    );
    f.dual.sync().await.unwrap();
    assert!(f.converged());
    assert_eq!(f.pg.snapshot()[0].tenant_id, t(2));
}
