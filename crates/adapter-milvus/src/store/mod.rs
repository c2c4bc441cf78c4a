//! [`MilvusStore`]: the port implemented on Milvus.
//!
//! - this file: the store, its construction and the [`VectorStoreGateway`] calls;
//! - `scan`: operator reads (range scans, fetch by id, counts) and decoding their replies;
//! - `index`: flushing and how much of the collection the index covers.

mod index;
mod scan;
#[cfg(test)]
mod test_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use vectorgate_domain::{
    validate_records, ChunkId, DeleteRequest, Dimension, GatewayError, HealthStatus, Metric,
    ProjectId, SearchHit, SearchRequest, StoreHealth, StoreKind, TenantConflict, VectorRecord,
    VectorStoreGateway,
};

use crate::client::{ColumnBatch, MilvusApi, SdkMilvusApi, SearchCall};
use crate::config::MilvusConfig;
use crate::queries;
use crate::schema::{
    validate_collection_name, MilvusSchemaManager, FIELD_EMBEDDING, FIELD_PROJECT_ID,
};

pub use scan::MilvusRow;

const STORE: StoreKind = StoreKind::Milvus;

/// Ids per delete/fetch expression: keeps expressions far below Milvus's size limits.
const IDS_PER_EXPRESSION: usize = 4096;

/// The port on Milvus. Cheap to clone (shares one connection).
///
/// Construction does no I/O; the first call connects (the client's `LazyClient`). Call
/// [`MilvusStore::ensure_schema`] once at start-up to create or verify the collection.
///
/// The store records no spans or metrics of its own: the composition root wraps every
/// gateway it builds in one instrumentation layer, and a second one here counted each
/// Milvus call twice.
#[derive(Clone)]
pub struct MilvusStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<MilvusConfig>,
    api: Arc<dyn MilvusApi>,
    schema: MilvusSchemaManager,
    closed: AtomicBool,
}

impl std::fmt::Debug for MilvusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilvusStore")
            .field("config", &self.inner.config)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl MilvusStore {
    /// A store over milvus-sdk-rust. Validates the settings (reading the TLS files); does
    /// no network I/O.
    pub fn new(config: MilvusConfig) -> Result<Self, GatewayError> {
        let api = Arc::new(SdkMilvusApi::new(&config));
        Self::over(config, api)
    }

    /// A store over any [`MilvusApi`] (a mock in unit tests). Only with the `mock`
    /// feature: outside tests the store always talks to Milvus through the SDK.
    #[cfg(any(test, feature = "mock"))]
    pub fn with_client(
        config: MilvusConfig,
        client: Arc<dyn MilvusApi>,
    ) -> Result<Self, GatewayError> {
        Self::over(config, client)
    }

    fn over(config: MilvusConfig, client: Arc<dyn MilvusApi>) -> Result<Self, GatewayError> {
        validate_collection_name(&config.collection)?;
        config.validate_connection()?;
        if config.batch_size == 0 {
            return Err(GatewayError::configuration(
                "MILVUS_BATCH_SIZE",
                "0",
                "a positive number of rows",
            ));
        }
        let config = Arc::new(config);
        Ok(Self {
            inner: Arc::new(Inner {
                schema: MilvusSchemaManager::new(client.clone(), config.clone()),
                config,
                api: client,
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Creates or verifies the collection, its index and load state.
    pub async fn ensure_schema(&self) -> Result<(), GatewayError> {
        self.check_open()?;
        self.inner.schema.ensure_collection().await
    }

    pub fn schema(&self) -> &MilvusSchemaManager {
        &self.inner.schema
    }

    pub fn config(&self) -> &MilvusConfig {
        &self.inner.config
    }

    pub async fn server_version(&self) -> Result<String, GatewayError> {
        self.check_open()?;
        self.inner.api.server_version().await
    }

    fn collection(&self) -> &str {
        &self.inner.config.collection
    }

    fn check_open(&self) -> Result<(), GatewayError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(GatewayError::unavailable(
                STORE,
                format!(
                    "the Milvus store for {} was closed",
                    self.inner.config.endpoint()
                ),
            ));
        }
        Ok(())
    }
}

fn to_batch(records: &[VectorRecord], dim: Dimension) -> ColumnBatch {
    let mut batch = ColumnBatch {
        chunk_ids: Vec::with_capacity(records.len()),
        tenant_ids: Vec::with_capacity(records.len()),
        project_ids: Vec::with_capacity(records.len()),
        dim: dim.get(),
        embeddings: Vec::with_capacity(records.len() * dim.as_usize()),
    };
    for r in records {
        batch.chunk_ids.push(r.chunk_id.get());
        batch.tenant_ids.push(r.tenant_id.get());
        batch.project_ids.push(r.project_id.get());
        batch.embeddings.extend_from_slice(r.embedding.as_slice());
    }
    batch
}

/// Milvus's native distance to the port's score (higher is more similar): IP returns the
/// inner product and COSINE the cosine similarity as they are; L2 returns the SQUARED
/// Euclidean distance, so the score is `-sqrt(d)`.
pub fn port_score(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::Ip | Metric::Cosine => distance,
        Metric::L2 => -distance.max(0.0).sqrt(),
    }
}

fn malformed(operation: &'static str, what: impl std::fmt::Display) -> GatewayError {
    GatewayError::backend(STORE, operation, format!("malformed reply: {what}"))
}

#[async_trait]
impl VectorStoreGateway for MilvusStore {
    fn store_kind(&self) -> StoreKind {
        STORE
    }

    fn dimension(&self) -> Dimension {
        self.inner.config.dimension
    }

    fn metric(&self) -> Metric {
        self.inner.config.metric
    }

    /// Validates the whole call first (nothing is sent when a record is bad), then sends
    /// native upserts of at most `rows_per_request()` rows, up to `upsert_concurrency` in
    /// flight. Upsert is idempotent, so when a request fails part of the call may be
    /// written and retrying the same call is safe.
    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.check_open()?;
        let config = &self.inner.config;
        validate_records(records, config.dimension, config.metric)?;
        if records.is_empty() {
            return Ok(0);
        }
        let conflicts = self.stored_tenant_conflicts(records).await?;
        if !conflicts.is_empty() {
            return Err(GatewayError::TenantConflict { conflicts });
        }
        let collection = config.collection.as_str();
        let api = &self.inner.api;
        // Batches are built only when a slot is free, so memory stays at
        // `upsert_concurrency` batches whatever the call's size.
        let mut chunks = records.chunks(config.rows_per_request());
        let mut in_flight = FuturesUnordered::new();
        let mut written = 0u64;
        loop {
            while in_flight.len() < config.upsert_concurrency.max(1) {
                match chunks.next() {
                    Some(chunk) => {
                        in_flight.push(api.upsert(collection, to_batch(chunk, config.dimension)))
                    }
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(result) => written += result?,
                None => return Ok(written),
            }
        }
    }

    async fn tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        self.check_open()?;
        self.stored_tenant_conflicts(records).await
    }

    /// Deletes by an expression always bounded by the tenant (ids of another tenant never
    /// match). Returns the rows Milvus reports deleted.
    async fn delete_vectors(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        self.check_open()?;
        request.validate()?;
        let collection = self.collection();
        let api = &self.inner.api;
        match request {
            DeleteRequest::Chunks {
                tenant_id,
                projects,
                chunk_ids,
            } => {
                let mut deleted = 0;
                for ids in chunk_ids.chunks(IDS_PER_EXPRESSION) {
                    let expr = queries::chunks_in_scope(*tenant_id, projects, ids);
                    deleted += api.delete(collection, &expr).await?;
                }
                Ok(deleted)
            }
            DeleteRequest::Project {
                tenant_id,
                project_id,
            } => {
                api.delete(collection, &queries::project_scope(*tenant_id, *project_id))
                    .await
            }
            DeleteRequest::Tenant { tenant_id } => {
                api.delete(collection, &queries::tenant_scope(*tenant_id))
                    .await
            }
        }
    }

    /// Filtered IVF_FLAT search: scope expression, `limit = top_k`, the configured metric,
    /// nprobe and consistency level; `project_id` as output field.
    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, GatewayError> {
        self.check_open()?;
        let config = &self.inner.config;
        request.validate(config.dimension, config.metric)?;
        let call = SearchCall {
            collection: config.collection.clone(),
            vector_field: FIELD_EMBEDDING.to_string(),
            vector: request.embedding.as_slice().to_vec(),
            filter: queries::scope_filter(&request.scope),
            limit: request.top_k.get(),
            metric: config.metric,
            nprobe: config.effective_nprobe(),
            consistency: config.consistency,
            output_fields: vec![FIELD_PROJECT_ID.to_string()],
        };
        let raw = self.inner.api.search(&call).await?;
        let mut hits = Vec::with_capacity(raw.len());
        for hit in raw {
            let project = hit
                .fields
                .get(FIELD_PROJECT_ID)
                .copied()
                .ok_or_else(|| malformed("search", "a hit lacks project_id"))?;
            let score = port_score(config.metric, hit.distance);
            if request.min_score.is_some_and(|min| score < min) {
                continue;
            }
            hits.push(SearchHit {
                chunk_id: ChunkId::new(hit.id).map_err(|e| malformed("search", e))?,
                project_id: ProjectId::new(project).map_err(|e| malformed("search", e))?,
                score,
            });
        }
        SearchHit::rank(&mut hits);
        hits.truncate(request.top_k.get() as usize);
        Ok(hits)
    }

    /// Never fails for an unreachable server or a missing/mismatched collection: those are
    /// reported in the returned status.
    async fn health(&self) -> Result<HealthStatus, GatewayError> {
        self.check_open()?;
        let mut health = StoreHealth {
            store: STORE,
            reachable: false,
            server_version: None,
            collection: None,
            problem: None,
            warnings: Vec::new(),
        };
        match self.inner.api.server_version().await {
            Ok(version) => {
                health.reachable = true;
                health.server_version = Some(version);
            }
            Err(err) => {
                health.problem = Some(err.to_string());
                return Ok(HealthStatus::single(health));
            }
        }
        let mut status = match self.inner.schema.status().await {
            Ok(status) => status,
            Err(err) => {
                health.problem = Some(err.to_string());
                return Ok(HealthStatus::single(health));
            }
        };
        let config = &self.inner.config;
        let mut problems = Vec::new();
        if !status.exists {
            problems.push(format!(
                "collection {} does not exist (run `vectorgate init` to create it, or start the service once)",
                status.name
            ));
        } else {
            if let Some(mismatch) = self.inner.schema.mismatch().await? {
                problems.push(format!("schema mismatch: {mismatch}"));
            }
            if status.metric.is_some_and(|m| m != config.metric) {
                problems.push(format!(
                    "index metric is {:?}, settings say {}",
                    status.metric, config.metric
                ));
            }
            if status.index_type.is_none() {
                problems.push("no index on embedding".to_string());
            }
            if status.loaded != Some(true) {
                problems.push("collection is not loaded (not searchable)".to_string());
            } else {
                let (indexed, total) = self.index_coverage().await?;
                status.indexed_rows = Some(indexed);
                status.row_count = Some(total);
                status.row_count_estimated = false;
            }
        }
        if !problems.is_empty() {
            health.problem = Some(problems.join("; "));
        }
        health.collection = Some(status);
        Ok(HealthStatus::single(health))
    }

    /// Marks the store closed: later calls fail with `Unavailable`. The gRPC channel is
    /// released when the last clone of the store is dropped.
    async fn close(&self) -> Result<(), GatewayError> {
        self.inner.closed.store(true, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use vectorgate_domain::{Embedding, ScanFilter, SearchScope, TopK};
    use vectorgate_testkit::{chunk, project, tenant};

    use super::test_support::{config, emb, rec, store};
    use super::*;
    use crate::client::{MockMilvusApi, RawHit};
    use crate::config::Consistency;

    fn hit(id: i64, distance: f32, project_id: i64) -> RawHit {
        RawHit {
            id,
            distance,
            fields: BTreeMap::from([(FIELD_PROJECT_ID.to_string(), project_id)]),
        }
    }

    #[tokio::test]
    async fn search_sends_scope_limit_metric_nprobe_consistency_and_output_fields() {
        let mut config = config();
        config.metric = Metric::L2;
        config.search_nprobe = Some(48);
        let mut api = MockMilvusApi::new();
        api.expect_search()
            .withf(|call| {
                call.collection == "knowledge_chunks"
                    && call.vector_field == "embedding"
                    && call.vector == vec![0.5, 0.0, 0.0, 1.0]
                    && call.filter == "tenant_id == 7 && project_id in [1, 2]"
                    && call.limit == 3
                    && call.metric == Metric::L2
                    && call.nprobe == 48
                    && call.consistency == Consistency::Session
                    && call.output_fields == vec!["project_id".to_string()]
            })
            .times(1)
            // L2 distances are squared: 4 -> score -2, 1 -> -1, 9 -> -3.
            .returning(|_| Ok(vec![hit(10, 4.0, 1), hit(11, 1.0, 2), hit(12, 9.0, 1)]));
        let store = store(config, api);
        let scope = SearchScope::projects(tenant(7), [project(2), project(1)]).unwrap();
        let request = SearchRequest::new(scope, emb(0.5), TopK::new(3).unwrap());
        let hits = store.search(&request).await.unwrap();
        assert_eq!(
            hits,
            vec![
                SearchHit {
                    chunk_id: chunk(11),
                    project_id: project(2),
                    score: -1.0
                },
                SearchHit {
                    chunk_id: chunk(10),
                    project_id: project(1),
                    score: -2.0
                },
                SearchHit {
                    chunk_id: chunk(12),
                    project_id: project(1),
                    score: -3.0
                },
            ]
        );
    }

    #[tokio::test]
    async fn min_score_drops_weaker_hits_and_ip_scores_pass_through() {
        let mut api = MockMilvusApi::new();
        api.expect_search()
            .withf(|call| call.metric == Metric::Ip && call.nprobe == config().effective_nprobe())
            .returning(|_| Ok(vec![hit(1, 0.9, 2), hit(2, 0.5, 2), hit(3, 0.7, 2)]));
        let store = store(config(), api);
        let request = SearchRequest::new(
            SearchScope::tenant(tenant(1)),
            emb(1.0),
            TopK::new(10).unwrap(),
        )
        .with_min_score(0.6);
        let hits = store.search(&request).await.unwrap();
        let ids: Vec<_> = hits.iter().map(|h| (h.chunk_id.get(), h.score)).collect();
        assert_eq!(ids, vec![(1, 0.9), (3, 0.7)]);
    }

    #[tokio::test]
    async fn upsert_sends_column_batches_of_at_most_batch_size_rows() {
        let mut config = config();
        config.batch_size = 2;
        config.upsert_concurrency = 1;
        // Only the upserts are under test (the tenant check is tested against a real Milvus).
        config.allow_tenant_move = true;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let seen = sent.clone();
        let mut api = MockMilvusApi::new();
        api.expect_upsert()
            .withf(|collection, _| collection == "knowledge_chunks")
            .times(3)
            .returning(move |_, batch| {
                let rows = batch.row_count() as u64;
                seen.lock().unwrap().push(batch);
                Ok(rows)
            });
        let store = store(config, api);
        let records: Vec<_> = (1..=5).map(rec).collect();
        assert_eq!(store.upsert_vectors(&records).await.unwrap(), 5);
        let sent = sent.lock().unwrap();
        let ids: Vec<Vec<i64>> = sent.iter().map(|b| b.chunk_ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2], vec![3, 4], vec![5]]);
        assert_eq!(sent[0].tenant_ids, vec![1, 1]);
        assert_eq!(sent[0].project_ids, vec![2, 2]);
        assert_eq!(sent[0].dim, 4);
        assert_eq!(
            sent[0].embeddings,
            vec![1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0]
        );
    }

    #[tokio::test]
    async fn invalid_upserts_send_nothing() {
        // No expectations: any call to the mock fails the test.
        let store = store(config(), MockMilvusApi::new());
        let wrong_dim = VectorRecord::new(
            chunk(2),
            tenant(1),
            project(1),
            Embedding::new(vec![1.0; 3]).unwrap(),
        );
        let err = store
            .upsert_vectors(&[rec(1), wrong_dim])
            .await
            .unwrap_err();
        assert_eq!(
            err,
            GatewayError::DimensionMismatch {
                expected: 4,
                got: 3
            }
        );
        let err = store.upsert_vectors(&[rec(1), rec(1)]).await.unwrap_err();
        assert!(err.is_invalid_input());
        assert_eq!(store.upsert_vectors(&[]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn upsert_failures_are_returned_as_they_were_mapped() {
        let mut api = MockMilvusApi::new();
        api.expect_upsert().returning(|_, _| {
            Err(GatewayError::backend(
                StoreKind::Milvus,
                "upsert",
                "IllegalArgument: x",
            ))
        });
        let mut config = config();
        config.allow_tenant_move = true;
        let store = store(config, api);
        let err = store.upsert_vectors(&[rec(1)]).await.unwrap_err();
        assert!(matches!(
            err,
            GatewayError::Backend {
                operation: "upsert",
                ..
            }
        ));
    }

    #[tokio::test]
    async fn deletes_are_bounded_by_the_tenant() {
        let mut api = MockMilvusApi::new();
        for expected in [
            "tenant_id == 4 && chunk_id in [1, 2]",
            "tenant_id == 4 && project_id in [9] && chunk_id in [3]",
            "tenant_id == 4 && project_id == 9",
            "tenant_id == 4",
        ] {
            api.expect_delete()
                .withf(move |collection, expr| collection == "knowledge_chunks" && expr == expected)
                .times(1)
                .returning(|_, _| Ok(1));
        }
        let store = store(config(), api);
        for request in [
            DeleteRequest::chunks(tenant(4), [chunk(1), chunk(2)]),
            DeleteRequest::chunks_in_projects(tenant(4), [project(9)], [chunk(3)]).unwrap(),
            DeleteRequest::project(tenant(4), project(9)),
            DeleteRequest::tenant(tenant(4)),
        ] {
            assert_eq!(store.delete_vectors(&request).await.unwrap(), 1);
        }
        // No ids: nothing sent.
        let none = DeleteRequest::chunks(tenant(4), std::iter::empty());
        assert_eq!(store.delete_vectors(&none).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn health_reports_an_unreachable_server_instead_of_failing() {
        let mut api = MockMilvusApi::new();
        api.expect_server_version().returning(|| {
            Err(GatewayError::unavailable(
                StoreKind::Milvus,
                "cannot reach milvus.test:19530: refused",
            ))
        });
        let store = store(config(), api);
        let health = store.health().await.unwrap();
        let s = &health.stores[0];
        assert!(!s.reachable);
        assert!(s.problem.as_deref().unwrap().contains("milvus.test:19530"));
        assert!(!health.is_healthy());
    }

    #[tokio::test]
    async fn a_closed_store_refuses_calls_without_touching_milvus() {
        let store = store(config(), MockMilvusApi::new());
        store.close().await.unwrap();
        let request = SearchRequest::new(
            SearchScope::tenant(tenant(1)),
            emb(1.0),
            TopK::new(1).unwrap(),
        );
        assert!(store.search(&request).await.unwrap_err().is_unavailable());
        assert!(store
            .upsert_vectors(&[rec(1)])
            .await
            .unwrap_err()
            .is_unavailable());
        assert!(store
            .count(ScanFilter::all())
            .await
            .unwrap_err()
            .is_unavailable());
    }

    #[test]
    fn construction_validates_the_collection_name_and_does_no_io() {
        let mut bad = config();
        bad.collection = "drop collection;".into();
        assert!(matches!(
            MilvusStore::with_client(bad, Arc::new(MockMilvusApi::new())),
            Err(GatewayError::Configuration { .. })
        ));
        let store = MilvusStore::new(config()).unwrap();
        assert_eq!(store.store_kind(), StoreKind::Milvus);
        assert_eq!(store.dimension().get(), 4);
    }

    #[test]
    fn l2_scores_are_negative_euclidean_distances() {
        assert_eq!(port_score(Metric::L2, 9.0), -3.0);
        assert_eq!(port_score(Metric::L2, -0.0001), -0.0);
        assert_eq!(port_score(Metric::Ip, 0.25), 0.25);
        assert_eq!(port_score(Metric::Cosine, -0.5), -0.5);
    }
}
