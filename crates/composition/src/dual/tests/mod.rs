//! The dual gateway and its relay over in-memory stores: the write path here, the relay and
//! every forced interleaving in `relay`.

mod relay;

use std::sync::Arc;
use std::time::Duration;

use vectorgate_domain::{
    ChunkId, DeleteRequest, Dimension, Embedding, GatewayError, Metric, MockVectorStoreGateway,
    ProjectId, SearchHit, SearchRequest, SearchScope, StoreKind, TenantId, TopK, VectorRecord,
    VectorStoreGateway,
};

use super::*;
use crate::test_support::CapturedLogs;
use crate::testing::{Call, Gated, MemoryOutbox, MemoryState, MemoryStore};

fn dim() -> Dimension {
    Dimension::new(4).unwrap()
}

fn rec(id: i64, tenant: i64, project: i64, x: f32) -> VectorRecord {
    VectorRecord::new(
        ChunkId::new(id).unwrap(),
        TenantId::new(tenant).unwrap(),
        ProjectId::new(project).unwrap(),
        Embedding::new(vec![x, 1.0, 0.5, -0.25]).unwrap(),
    )
}

fn t(id: i64) -> TenantId {
    TenantId::new(id).unwrap()
}

fn c(id: i64) -> ChunkId {
    ChunkId::new(id).unwrap()
}

/// No background relay, no periodic reconcile: tests drive replays with `sync()`.
fn manual() -> DualSettings {
    DualSettings {
        relay: false,
        reconcile_interval: Duration::ZERO,
        ..DualSettings::default()
    }
}

/// A background relay that polls every 20 ms.
fn background() -> DualSettings {
    DualSettings {
        relay: true,
        relay_interval: Duration::from_millis(20),
        reconcile_interval: Duration::ZERO,
        ..DualSettings::default()
    }
}

struct Fixture {
    pg: Arc<MemoryStore>,
    milvus: Arc<MemoryStore>,
    pg_gate: Arc<Gated>,
    milvus_gate: Arc<Gated>,
    outbox: Arc<MemoryOutbox>,
    state: Arc<MemoryState>,
    dual: Arc<DualGateway>,
}

impl Fixture {
    fn new(settings: DualSettings) -> Self {
        Self::over(
            MemoryStore::new(StoreKind::Pgvector, dim(), Metric::Ip),
            settings,
        )
    }

    fn over(pg: MemoryStore, settings: DualSettings) -> Self {
        let pg = Arc::new(pg);
        let milvus = Arc::new(MemoryStore::new(StoreKind::Milvus, dim(), Metric::Ip));
        let outbox = Arc::new(MemoryOutbox::beside(pg.clone()));
        let mut f = Self {
            pg_gate: Gated::new(pg.clone()),
            milvus_gate: Gated::new(milvus.clone()),
            pg,
            milvus,
            outbox,
            state: Arc::default(),
            dual: Arc::new(DualGateway::new(empty_stores(), manual())),
        };
        f.dual = Arc::new(f.gateway(settings));
        f
    }

    /// Another gateway over the same stores and outbox: another process of the service.
    fn gateway(&self, settings: DualSettings) -> DualGateway {
        DualGateway::new(self.stores(), settings)
    }

    fn stores(&self) -> DualStores {
        DualStores {
            pgvector: self.pg_gate.clone(),
            milvus: self.milvus_gate.clone(),
            source: self.pg.clone(),
            replica: self.milvus_gate.clone(),
            outbox: self.outbox.clone(),
            state: self.state.clone(),
        }
    }

    fn converged(&self) -> bool {
        self.pg.snapshot() == self.milvus.snapshot()
    }
}

fn empty_stores() -> DualStores {
    let store = Arc::new(MemoryStore::new(StoreKind::Pgvector, dim(), Metric::Ip));
    DualStores {
        pgvector: store.clone(),
        milvus: store.clone(),
        source: store.clone(),
        replica: store,
        outbox: Arc::new(MemoryOutbox::new()),
        state: Arc::new(MemoryState::default()),
    }
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 5 s: {what}");
}

/// A failed batch of thousands is one warning of bounded length: the first ids and a count.
#[tokio::test]
async fn a_failed_large_batch_is_logged_with_its_first_ids_and_a_count() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let f = Fixture::new(manual());
    f.milvus_gate.fail(Call::Upsert, 1);
    let batch: Vec<VectorRecord> = (1..=1000).map(|id| rec(id, 7, 1, 0.1)).collect();
    f.dual.upsert_vectors(&batch).await.unwrap();
    f.dual.flush_background().await;
    let warnings = logs.lines_with("WARN");
    assert_eq!(warnings.len(), 1, "{}", logs.text());
    let line = &warnings[0];
    assert!(line.contains("rows=1000"), "{line}");
    assert!(line.contains("chunk_ids=1,2,3,"), "{line}");
    assert!(line.contains(",20,... (980 more)"), "{line}");
    assert!(!line.contains(",21,"), "{line}");
    assert!(line.len() < 1000, "{} bytes: {line}", line.len());
    assert_eq!(f.outbox.pending().len(), 1000, "every id is still recorded");
}

#[tokio::test]
async fn a_failing_milvus_leaves_the_caller_with_ok_one_warning_and_an_outbox_entry() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let f = Fixture::new(manual());
    f.milvus_gate.fail(Call::Upsert, 1);
    let written = f
        .dual
        .upsert_vectors(&[rec(101, 7, 1, 0.1), rec(102, 7, 2, 0.2)])
        .await
        .expect("pgvector committed, so the caller succeeds");
    assert_eq!(written, 2);
    f.dual.flush_background().await;

    let warnings = logs.lines_with("WARN");
    assert_eq!(warnings.len(), 1, "exactly one warning: {}", logs.text());
    for needle in [
        "store=\"milvus\"",
        "operation=\"upsert\"",
        "tenant=7",
        "chunk_ids=101,102",
        "injected failure",
    ] {
        assert!(
            warnings[0].contains(needle),
            "{needle} missing in {}",
            warnings[0]
        );
    }
    assert_eq!(f.outbox.pending(), vec![c(101), c(102)]);
    let stats = f.dual.outbox_stats().await.unwrap();
    assert_eq!((stats.depth, stats.failed), (2, 2));
    assert!(stats.last_error.unwrap().contains("injected failure"));
}

#[tokio::test]
async fn a_failing_pgvector_fails_the_call_and_the_relay_removes_what_milvus_got() {
    // Writes run in parallel, so Milvus may apply a write pgvector then refuses. The call
    // fails, the ids stay in the outbox, and the relay makes Milvus equal to pgvector.
    let f = Fixture::new(manual());
    f.pg_gate.fail(Call::Upsert, 1);
    let err = f
        .dual
        .upsert_vectors(&[rec(5, 1, 1, 0.5)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GatewayError::Unavailable {
                store: StoreKind::Pgvector,
                ..
            }
        ),
        "{err}"
    );
    f.dual.flush_background().await;
    assert_eq!(f.milvus.snapshot().len(), 1, "Milvus applied it");
    assert_eq!(f.outbox.pending(), vec![c(5)]);
    let report = f.dual.sync().await.unwrap();
    assert!(
        f.milvus.snapshot().is_empty(),
        "Milvus holds nothing pgvector lacks"
    );
    assert_eq!((report.entries_replayed, report.deleted), (1, 1));
    assert_eq!(report.remaining, 0);
}

#[tokio::test]
async fn an_outbox_failure_fails_the_call_before_either_store_is_touched() {
    let f = Fixture::new(manual());
    f.outbox.set_unavailable(true);
    let err = f
        .dual
        .upsert_vectors(&[rec(1, 1, 1, 0.1)])
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let err = f
        .dual
        .delete_vectors(&DeleteRequest::tenant(t(1)))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert_eq!(f.pg.write_calls() + f.milvus.write_calls(), 0);
}

#[tokio::test]
async fn a_move_to_another_tenant_is_refused_before_milvus_is_written() {
    let pg = MemoryStore::new(StoreKind::Pgvector, dim(), Metric::Ip).refusing_tenant_moves();
    let f = Fixture::over(pg, manual());
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.1)]).await.unwrap();
    f.dual.flush_background().await;
    assert!(f.outbox.pending().is_empty());
    let milvus_writes = f.milvus.write_calls();
    let err = f
        .dual
        .upsert_vectors(&[rec(2, 2, 1, 0.2), rec(1, 2, 1, 0.3)])
        .await
        .unwrap_err();
    let expected = [vectorgate_domain::TenantConflict {
        chunk_id: c(1),
        owner: t(1),
        requested: t(2),
    }];
    assert!(
        matches!(err, GatewayError::TenantConflict { ref conflicts } if conflicts[..] == expected),
        "{err}"
    );
    assert_eq!(f.milvus.write_calls(), milvus_writes, "Milvus untouched");
    assert!(f.outbox.pending().is_empty());
    assert_eq!(f.pg.snapshot(), vec![rec(1, 1, 1, 0.1)], "nothing written");
    assert!(f.converged());
}

#[tokio::test]
async fn bad_input_is_rejected_before_the_outbox() {
    let f = Fixture::new(manual());
    let wrong_dim = VectorRecord::new(
        c(1),
        t(1),
        ProjectId::new(1).unwrap(),
        Embedding::new(vec![1.0, 2.0]).unwrap(),
    );
    let err = f.dual.upsert_vectors(&[wrong_dim]).await.unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(f.outbox.pending().is_empty());
    assert_eq!(f.pg.write_calls() + f.milvus.write_calls(), 0);
}

#[tokio::test]
async fn successful_writes_leave_both_stores_equal_and_the_outbox_empty() {
    let f = Fixture::new(manual());
    f.dual
        .upsert_vectors(&[rec(1, 1, 1, 0.1), rec(2, 1, 2, 0.2), rec(3, 2, 1, 0.3)])
        .await
        .unwrap();
    // Each write settles (off the caller's path) before the next names the same ids; a
    // write that overlaps an unsettled one leaves its ids to the relay instead (below).
    f.dual.flush_background().await;
    let deleted = f
        .dual
        .delete_vectors(&DeleteRequest::chunks(t(1), [c(2), c(2)]))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    f.dual.flush_background().await;
    assert_eq!(
        f.dual
            .delete_vectors(&DeleteRequest::project(t(2), ProjectId::new(1).unwrap()))
            .await
            .unwrap(),
        1
    );
    f.dual.flush_background().await;
    assert!(f.converged());
    assert_eq!(f.pg.snapshot().len(), 1);
    assert!(f.outbox.pending().is_empty(), "{:?}", f.outbox.pending());
}

#[tokio::test]
async fn a_rewrite_before_the_previous_write_settled_is_left_to_the_relay() {
    let f = Fixture::new(manual());
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.1)]).await.unwrap();
    f.dual.upsert_vectors(&[rec(1, 1, 1, 0.2)]).await.unwrap();
    f.dual.flush_background().await;
    // Both writes were unsettled together: the stores may have applied them in different
    // orders, so the id stays for the relay.
    assert_eq!(f.outbox.pending(), vec![c(1)]);
    f.dual.sync().await.unwrap();
    assert!(f.converged() && f.outbox.pending().is_empty());
}

#[tokio::test]
async fn sync_converges_after_milvus_missed_upserts_deletes_moves_and_scope_deletes() {
    let f = Fixture::new(manual());
    let records: Vec<_> = (1..=6).map(|i| rec(i, 1, i % 2, 0.1 * i as f32)).collect();
    f.dual.upsert_vectors(&records).await.unwrap();
    f.dual
        .upsert_vectors(&[rec(20, 2, 1, 0.9), rec(21, 2, 2, 0.8)])
        .await
        .unwrap();
    f.dual.flush_background().await;

    f.milvus.set_down(true);
    // New rows, a changed vector, a chunk moved to tenant 3, a chunk delete and a project
    // delete, all while Milvus is down: every call succeeds.
    f.dual
        .upsert_vectors(&[rec(7, 1, 1, 0.7), rec(1, 1, 1, -0.5)])
        .await
        .unwrap();
    f.dual.upsert_vectors(&[rec(2, 3, 9, 0.2)]).await.unwrap();
    f.dual
        .delete_vectors(&DeleteRequest::chunks(t(1), [c(3)]))
        .await
        .unwrap();
    f.dual
        .delete_vectors(&DeleteRequest::project(t(2), ProjectId::new(1).unwrap()))
        .await
        .unwrap();
    f.dual.flush_background().await;
    assert_eq!(f.outbox.pending(), vec![c(1), c(2), c(3), c(7), c(20)]);
    assert!(!f.converged());

    // A sync while Milvus is still down repairs nothing and keeps everything.
    let report = f.dual.sync().await.unwrap();
    assert_eq!(report.entries_replayed, 0);
    assert!(report.entries_failed >= 1);
    assert_eq!(report.remaining, 5);

    f.milvus.set_down(false);
    let report = f.dual.sync().await.unwrap();
    assert_eq!(report.entries_replayed, 5, "{report:?}");
    assert_eq!(report.remaining, 0);
    assert!(f.converged());
    assert_eq!(report.deleted, 2, "chunks 3 and 20 removed: {report:?}");
}

#[tokio::test]
async fn searches_read_pgvector_by_default_and_milvus_when_configured() {
    let query = SearchRequest::new(
        SearchScope::tenant(t(1)),
        Embedding::new(vec![1.0, 0.0, 0.0, 0.0]).unwrap(),
        TopK::new(3).unwrap(),
    );
    for (read_from, expected) in [(ReadFrom::Pgvector, 11), (ReadFrom::Milvus, 12)] {
        let f = Fixture::new(DualSettings {
            read_from,
            ..manual()
        });
        // Different rows behind each store's back tell which one answered.
        f.pg.put_raw(rec(11, 1, 1, 1.0));
        f.milvus.put_raw(rec(12, 1, 1, 1.0));
        let hits = f.dual.search(&query).await.unwrap();
        assert_eq!(
            hits.iter().map(|h| h.chunk_id.get()).collect::<Vec<_>>(),
            vec![expected]
        );
    }
}

#[tokio::test]
async fn shadow_reads_query_the_other_store_in_the_background() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let pg = Arc::new(MemoryStore::new(StoreKind::Pgvector, dim(), Metric::Ip));
    pg.put_raw(rec(1, 1, 1, 1.0));
    pg.put_raw(rec(2, 1, 1, 0.5));
    let mut milvus = MockVectorStoreGateway::new();
    milvus.expect_search().times(1).returning(|_| {
        Ok(vec![SearchHit {
            chunk_id: ChunkId::new(1).unwrap(),
            project_id: ProjectId::new(1).unwrap(),
            score: 1.0,
        }])
    });
    let dual = DualGateway::new(
        DualStores {
            pgvector: pg.clone(),
            milvus: Arc::new(milvus),
            source: pg.clone(),
            replica: pg,
            outbox: Arc::new(MemoryOutbox::new()),
            state: Arc::new(MemoryState::default()),
        },
        DualSettings {
            shadow_read_rate: 1.0,
            ..manual()
        },
    );
    let query = SearchRequest::new(
        SearchScope::tenant(t(1)),
        Embedding::new(vec![1.0, 0.0, 0.0, 0.0]).unwrap(),
        TopK::new(2).unwrap(),
    );
    assert_eq!(dual.search(&query).await.unwrap().len(), 2);
    eventually("a shadow read is logged", || {
        !logs.lines_with("shadow read").is_empty()
    })
    .await;
    let lines = logs.lines_with("shadow read");
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert!(lines[0].contains("overlap=0.5"), "{}", lines[0]);
}

#[test]
fn overlap_is_the_share_of_primary_ids_found() {
    use super::shadow::top_k_overlap;
    let hit = |id| SearchHit {
        chunk_id: c(id),
        project_id: ProjectId::new(1).unwrap(),
        score: 0.0,
    };
    assert_eq!(top_k_overlap(&[c(1), c(2)], &[hit(2), hit(3)]), 0.5);
    assert_eq!(top_k_overlap(&[], &[]), 1.0);
    assert_eq!(top_k_overlap(&[], &[hit(1)]), 0.0);
}

#[tokio::test]
async fn health_reports_a_down_milvus_without_failing() {
    let f = Fixture::new(manual());
    f.milvus.set_down(true);
    let health = f.dual.health().await.unwrap();
    assert_eq!(health.stores.len(), 2);
    assert!(!health.is_healthy());
    let milvus = health
        .stores
        .iter()
        .find(|s| s.store == StoreKind::Milvus)
        .unwrap();
    assert!(!milvus.reachable);
    assert!(milvus.problem.as_deref().unwrap().contains("down"));
}
