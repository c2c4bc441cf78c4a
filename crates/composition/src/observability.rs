//! Spans and metrics around every gateway call, and the Prometheus text rendering the CLI
//! prints.
//!
//! Metric names (through the `metrics` facade, so any recorder works):
//! - `vector_store_operations_total{store,operation,outcome}` (counter; outcome `ok` or the
//!   error kind: `invalid_input`, `unavailable`, `schema_mismatch`, `backend`, `configuration`)
//! - `vector_store_operation_seconds{store,operation}` (histogram)
//! - `vector_store_dual_failures_total{operation}` (counter; a Milvus write failed in dual mode)
//! - `vector_store_outbox_depth` (gauge; outbox entries: chunk ids Milvus may lack)
//! - `vector_store_relay_lag_seconds` (gauge; age of the oldest outbox entry)
//! - `vector_store_relay_replayed_rows_total{action}` (counter; `upsert` or `delete`)
//! - `vector_store_relay_failures_total` (counter; relay passes that failed)
//! - `vector_store_drift_rows_total` (counter; rows the periodic reconcile found differing)
//! - `vector_store_shadow_read_overlap` (histogram; top-k overlap of shadow reads, 0..1)

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;
use vectorgate_domain::{
    DeleteRequest, Dimension, GatewayError, HealthStatus, Metric, SearchHit, SearchRequest,
    StoreKind, TenantConflict, VectorRecord, VectorStoreGateway,
};

pub const OPERATIONS_TOTAL: &str = "vector_store_operations_total";
pub const OPERATION_SECONDS: &str = "vector_store_operation_seconds";
pub const DUAL_FAILURES_TOTAL: &str = "vector_store_dual_failures_total";
pub const OUTBOX_DEPTH: &str = "vector_store_outbox_depth";
pub const RELAY_LAG_SECONDS: &str = "vector_store_relay_lag_seconds";
pub const RELAY_REPLAYED_ROWS_TOTAL: &str = "vector_store_relay_replayed_rows_total";
pub const RELAY_FAILURES_TOTAL: &str = "vector_store_relay_failures_total";
pub const DRIFT_ROWS_TOTAL: &str = "vector_store_drift_rows_total";
pub const SHADOW_READ_OVERLAP: &str = "vector_store_shadow_read_overlap";

/// The `outcome` label of an error.
pub fn outcome_of(err: &GatewayError) -> &'static str {
    match err {
        GatewayError::InvalidInput(_)
        | GatewayError::DimensionMismatch { .. }
        | GatewayError::TenantConflict { .. } => "invalid_input",
        GatewayError::Timeout { .. } => "timeout",
        GatewayError::Unavailable { .. } => "unavailable",
        GatewayError::SchemaMismatch { .. } => "schema_mismatch",
        GatewayError::Backend { .. } => "backend",
        GatewayError::Configuration { .. } => "configuration",
        GatewayError::Misuse(_) => "misuse",
        _ => "error",
    }
}

/// Installs a Prometheus recorder as the global `metrics` recorder and returns the handle
/// whose `render()` gives the text format. Call once per process (the CLI's `--metrics`);
/// a second call returns an error naming the cause.
pub fn install_prometheus_recorder() -> Result<PrometheusHandle, GatewayError> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|err| {
        GatewayError::misuse(format!(
            "a metrics recorder is already installed ({err}): install_prometheus_recorder \
             may be called once per process"
        ))
    })?;
    Ok(handle)
}

/// Wraps a gateway with one span per call (store, operation, tenant, records, outcome) and
/// the operation counter and latency histogram. The factory wraps every store it builds.
#[derive(Clone)]
pub struct Instrumented {
    inner: Arc<dyn VectorStoreGateway>,
    store: &'static str,
}

impl std::fmt::Debug for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Instrumented {
    pub fn new(inner: Arc<dyn VectorStoreGateway>) -> Self {
        let store = inner.store_kind().as_str();
        Self { inner, store }
    }

    pub fn wrap(inner: Arc<dyn VectorStoreGateway>) -> Arc<dyn VectorStoreGateway> {
        Arc::new(Self::new(inner))
    }

    async fn observe<T, F>(
        &self,
        operation: &'static str,
        tenant: Option<i64>,
        records: usize,
        fut: F,
    ) -> Result<T, GatewayError>
    where
        F: Future<Output = Result<T, GatewayError>>,
    {
        let span = tracing::info_span!(
            "vector_store",
            store = self.store,
            operation,
            tenant = tenant,
            records,
            outcome = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = fut.instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) => outcome_of(err),
        };
        span.record("outcome", outcome);
        metrics::counter!(OPERATIONS_TOTAL, "store" => self.store, "operation" => operation, "outcome" => outcome)
            .increment(1);
        metrics::histogram!(OPERATION_SECONDS, "store" => self.store, "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// The tenant of a batch when it has exactly one (the usual case), for span fields.
fn single_tenant(records: &[VectorRecord]) -> Option<i64> {
    let first = records.first()?.tenant_id;
    records
        .iter()
        .all(|r| r.tenant_id == first)
        .then_some(first.get())
}

#[async_trait]
impl VectorStoreGateway for Instrumented {
    fn store_kind(&self) -> StoreKind {
        self.inner.store_kind()
    }

    fn dimension(&self) -> Dimension {
        self.inner.dimension()
    }

    fn metric(&self) -> Metric {
        self.inner.metric()
    }

    async fn tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        self.inner.tenant_conflicts(records).await
    }

    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.observe(
            "upsert",
            single_tenant(records),
            records.len(),
            self.inner.upsert_vectors(records),
        )
        .await
    }

    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        let count = match request {
            DeleteRequest::Chunks { chunk_ids, .. } => chunk_ids.len(),
            _ => 0,
        };
        self.observe(
            "delete",
            Some(request.tenant_id().get()),
            count,
            self.inner.delete_vectors(request),
        )
        .await
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError> {
        self.observe(
            "search",
            Some(request.scope.tenant_id().get()),
            request.top_k.get() as usize,
            self.inner.search(request),
        )
        .await
    }

    async fn health(&self) -> Result<HealthStatus, GatewayError> {
        self.observe("health", None, 0, self.inner.health()).await
    }

    async fn close(&self) -> Result<(), GatewayError> {
        self.observe("close", None, 0, self.inner.close()).await
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use vectorgate_domain::{ChunkId, Embedding, MockVectorStoreGateway, ProjectId, TenantId};

    use super::*;
    use crate::test_support::CapturedLogs;

    fn record(tenant: i64) -> VectorRecord {
        VectorRecord::new(
            ChunkId::new(1).unwrap(),
            TenantId::new(tenant).unwrap(),
            ProjectId::new(1).unwrap(),
            Embedding::new(vec![1.0, 0.0]).unwrap(),
        )
    }

    #[test]
    fn every_call_gets_a_span_a_counter_and_a_latency_sample() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let logs = CapturedLogs::default();
        let _guard = logs.install_with_spans();
        let mut inner = MockVectorStoreGateway::new();
        inner.expect_store_kind().return_const(StoreKind::Milvus);
        inner
            .expect_dimension()
            .return_const(Dimension::new(2).unwrap());
        let mut calls = 0;
        inner.expect_upsert_vectors().times(2).returning(move |_| {
            calls += 1;
            if calls == 1 {
                Ok(1)
            } else {
                Err(GatewayError::unavailable(StoreKind::Milvus, "refused"))
            }
        });
        let gateway = Instrumented::new(Arc::new(inner));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                gateway.upsert_vectors(&[record(7)]).await.unwrap();
                gateway.upsert_vectors(&[record(7)]).await.unwrap_err();
            })
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let counter = |outcome: &str| {
            snapshot.iter().find_map(|(key, _, _, value)| {
                let k = key.key();
                let labels: Vec<(String, String)> = k
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect();
                (k.name() == OPERATIONS_TOTAL
                    && labels.contains(&("outcome".into(), outcome.into()))
                    && labels.contains(&("store".into(), "milvus".into()))
                    && labels.contains(&("operation".into(), "upsert".into())))
                .then_some(value)
            })
        };
        assert_eq!(counter("ok"), Some(&DebugValue::Counter(1)));
        assert_eq!(counter("unavailable"), Some(&DebugValue::Counter(1)));
        let latency = snapshot
            .iter()
            .find(|(key, _, _, _)| key.key().name() == OPERATION_SECONDS)
            .map(|(_, _, _, value)| value);
        assert!(
            matches!(latency, Some(DebugValue::Histogram(ref samples)) if samples.len() == 2),
            "{latency:?}"
        );
        // One span per call, carrying store, operation, tenant, record count and outcome.
        let spans = logs.lines_with("vector_store{");
        assert_eq!(spans.len(), 2, "{}", logs.text());
        for (line, outcome) in spans.iter().zip(["ok", "unavailable"]) {
            for needle in [
                "store=\"milvus\"",
                "operation=\"upsert\"",
                "tenant=7",
                "records=1",
                &format!("outcome=\"{outcome}\""),
            ] {
                assert!(line.contains(needle), "{needle} missing in {line}");
            }
        }
    }
}
