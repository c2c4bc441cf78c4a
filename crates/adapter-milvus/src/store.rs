//! [`MilvusStore`]: the port implemented on Milvus.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use vectorgate_domain::{
    validate_records, ChunkId, DeleteRequest, Dimension, Embedding, GatewayError, HealthStatus,
    Metric, ProjectId, ScanFilter, SearchHit, SearchRequest, StoreHealth, StoreKind, TenantId,
    VectorRecord, VectorStoreGateway,
};

use crate::client::{Column, ColumnBatch, MilvusApi, QueryCall, Rows, SdkMilvusApi, SearchCall};
use crate::config::{bytes_per_row, MilvusConfig, MAX_REPLY_BYTES};
use crate::queries;
use crate::schema::{
    validate_collection_name, MilvusSchemaManager, FIELD_CHUNK_ID, FIELD_EMBEDDING,
    FIELD_PROJECT_ID, FIELD_TENANT_ID,
};

const STORE: StoreKind = StoreKind::Milvus;

/// Milvus's largest query reply (`offset + limit`, `quotaAndLimits...maxQueryResultWindow`).
pub const MAX_QUERY_ROWS: u64 = 16_384;

/// Ids per delete/fetch expression: keeps expressions far below Milvus's size limits.
const IDS_PER_EXPRESSION: usize = 4096;

/// One row read back by an operator scan or fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct MilvusRow {
    pub chunk_id: ChunkId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    /// Present when the scan asked for vectors.
    pub embedding: Option<Embedding>,
}

impl MilvusRow {
    /// The row as a record, when it carries its vector.
    pub fn into_record(self) -> Option<VectorRecord> {
        let embedding = self.embedding?;
        Some(VectorRecord::new(
            self.chunk_id,
            self.tenant_id,
            self.project_id,
            embedding,
        ))
    }
}

/// The port on Milvus. Cheap to clone (shares one connection).
///
/// Construction does no I/O; the first call connects (see
/// [`crate::client::LazyClient`]). Call [`MilvusStore::ensure_schema`] once at
/// start-up to create or verify the collection.
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
    /// A store over milvus-sdk-rust. Validates the settings; does no I/O.
    pub fn new(config: MilvusConfig) -> Result<Self, GatewayError> {
        let api = Arc::new(SdkMilvusApi::new(&config));
        Self::with_client(config, api)
    }

    /// A store over any [`MilvusApi`] (a mock in unit tests).
    pub fn with_client(
        config: MilvusConfig,
        client: Arc<dyn MilvusApi>,
    ) -> Result<Self, GatewayError> {
        validate_collection_name(&config.collection)?;
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

    /// Seals growing segments so that Milvus builds the collection's index on them (until
    /// then Milvus 2.3 searches new rows with its interim index or by brute force).
    pub async fn flush(&self) -> Result<(), GatewayError> {
        self.check_open()?;
        self.inner.api.flush(self.collection()).await
    }

    /// `(rows searched through the collection's index, rows in the collection)`.
    ///
    /// Milvus builds the index only on sealed segments; rows in growing segments (recent
    /// writes, until the segment fills up, idles or is flushed) and in sealed segments whose
    /// index is still building are searched without it (Milvus 2.3: brute force or its
    /// interim index, whose own nlist/nprobe ignore ours). Query nodes list sealed segments
    /// only, so the total is a strong `count(*)`.
    pub async fn index_coverage(&self) -> Result<(u64, u64), GatewayError> {
        self.check_open()?;
        let segments = self.inner.api.loaded_segments(self.collection()).await?;
        let indexed = segments
            .iter()
            .filter(|s| !s.growing && !s.index_name.is_empty())
            .map(|s| s.rows)
            .sum();
        let total = self
            .inner
            .api
            .count(
                self.collection(),
                &queries::every_row(),
                crate::config::Consistency::Strong,
            )
            .await?;
        Ok((indexed, total))
    }

    /// Flushes, then waits until every row is searched through the index (or `timeout`
    /// passes); returns the final `(indexed, total)`.
    pub async fn flush_and_wait_indexed(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(u64, u64), GatewayError> {
        self.flush().await?;
        let started = Instant::now();
        loop {
            let (indexed, total) = self.index_coverage().await?;
            if indexed >= total || started.elapsed() >= timeout {
                return Ok((indexed, total));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Every row with `from <= chunk_id <= to` matching `filter`, ordered by chunk id.
    ///
    /// Milvus returns at most 16,384 rows per query (and tonic at most 4 MB per reply), so
    /// the range is counted first and halved until each piece fits one reply.
    pub async fn scan_range(
        &self,
        filter: ScanFilter,
        from: ChunkId,
        to: ChunkId,
        with_vectors: bool,
    ) -> Result<Vec<MilvusRow>, GatewayError> {
        self.check_open()?;
        if from > to {
            return Err(GatewayError::invalid(format!(
                "scan range is empty: from {from} > to {to}"
            )));
        }
        let limit = self.rows_per_reply(with_vectors);
        let mut pending = vec![(from.get(), to.get())];
        let mut out = Vec::new();
        while let Some((lo, hi)) = pending.pop() {
            let expr = queries::id_range(filter, ChunkId::new(lo)?, ChunkId::new(hi)?);
            let n = self
                .inner
                .api
                .count(self.collection(), &expr, self.config().consistency)
                .await?;
            if n == 0 {
                continue;
            }
            if n >= limit && lo < hi {
                split(&mut pending, lo, hi);
                continue;
            }
            let rows = self.query_rows(expr, Some(limit), with_vectors).await?;
            if rows.len() as u64 >= limit && lo < hi {
                // Rows arrived between count and query; split and read again.
                split(&mut pending, lo, hi);
                continue;
            }
            out.extend(rows);
        }
        out.sort_by_key(|r| r.chunk_id);
        Ok(out)
    }

    /// The records with these ids, whatever their tenant, ordered by chunk id; missing ids
    /// are absent from the result.
    pub async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        self.check_open()?;
        let per_call = (self.rows_per_reply(true) as usize).min(IDS_PER_EXPRESSION);
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(per_call) {
            let rows = self
                .query_rows(queries::chunk_ids(chunk), None, true)
                .await?;
            out.extend(rows.into_iter().filter_map(MilvusRow::into_record));
        }
        out.sort_by_key(|r| r.chunk_id);
        Ok(out)
    }

    /// Rows matching the filter (`count(*)` at the configured consistency).
    pub async fn count(&self, filter: ScanFilter) -> Result<u64, GatewayError> {
        self.check_open()?;
        let mut expr = queries::scan_filter(filter);
        if expr.is_empty() {
            expr = queries::every_row();
        }
        self.inner
            .api
            .count(self.collection(), &expr, self.config().consistency)
            .await
    }

    fn collection(&self) -> &str {
        &self.inner.config.collection
    }

    fn rows_per_reply(&self, with_vectors: bool) -> u64 {
        if with_vectors {
            let by_bytes = (MAX_REPLY_BYTES / bytes_per_row(self.config().dimension)) as u64;
            by_bytes.clamp(1, MAX_QUERY_ROWS)
        } else {
            MAX_QUERY_ROWS
        }
    }

    async fn query_rows(
        &self,
        expr: String,
        limit: Option<u64>,
        with_vectors: bool,
    ) -> Result<Vec<MilvusRow>, GatewayError> {
        let mut output_fields = vec![
            FIELD_CHUNK_ID.to_string(),
            FIELD_TENANT_ID.to_string(),
            FIELD_PROJECT_ID.to_string(),
        ];
        if with_vectors {
            output_fields.push(FIELD_EMBEDDING.to_string());
        }
        let rows = self
            .inner
            .api
            .query(&QueryCall {
                collection: self.collection().to_string(),
                expr,
                output_fields,
                limit,
                consistency: self.config().consistency,
            })
            .await?;
        rows_to_milvus_rows(rows, with_vectors)
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

fn split(pending: &mut Vec<(i64, i64)>, lo: i64, hi: i64) {
    let mid = lo + (hi - lo) / 2;
    pending.push((mid + 1, hi));
    pending.push((lo, mid));
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

fn int_column<'a>(rows: &'a Rows, name: &str) -> Result<&'a [i64], GatewayError> {
    match rows.columns.get(name) {
        Some(Column::Int64(values)) => Ok(values),
        _ => Err(malformed("query", format!("no Int64 column {name}"))),
    }
}

fn rows_to_milvus_rows(rows: Rows, with_vectors: bool) -> Result<Vec<MilvusRow>, GatewayError> {
    if rows.columns.is_empty() {
        return Ok(Vec::new());
    }
    let ids = int_column(&rows, FIELD_CHUNK_ID)?;
    let tenants = int_column(&rows, FIELD_TENANT_ID)?;
    let projects = int_column(&rows, FIELD_PROJECT_ID)?;
    if tenants.len() != ids.len() || projects.len() != ids.len() {
        return Err(malformed("query", "columns of different lengths"));
    }
    let vectors = if with_vectors {
        match rows.columns.get(FIELD_EMBEDDING) {
            Some(Column::FloatVector { dim, values })
                if *dim > 0 && values.len() == ids.len() * *dim as usize =>
            {
                Some((*dim as usize, values))
            }
            _ => return Err(malformed("query", "no embedding column of the row count")),
        }
    } else {
        None
    };
    let mut out = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        let embedding = match vectors {
            Some((dim, values)) => Some(
                Embedding::new(values[i * dim..(i + 1) * dim].to_vec())
                    .map_err(|e| malformed("query", e))?,
            ),
            None => None,
        };
        out.push(MilvusRow {
            chunk_id: ChunkId::new(ids[i]).map_err(|e| malformed("query", e))?,
            tenant_id: TenantId::new(tenants[i]).map_err(|e| malformed("query", e))?,
            project_id: ProjectId::new(projects[i]).map_err(|e| malformed("query", e))?,
            embedding,
        });
    }
    Ok(out)
}

#[async_trait]
impl VectorStoreGateway for MilvusStore {
    fn store_kind(&self) -> StoreKind {
        STORE
    }

    fn dimension(&self) -> Dimension {
        self.inner.config.dimension
    }

    /// Validates the whole call first (nothing is sent when a record is bad), then sends
    /// native upserts of at most `rows_per_request()` rows, up to `upsert_concurrency` in
    /// flight. Upsert is idempotent, so when a request fails part of the call may be
    /// written and retrying the same call is safe.
    async fn upsert_vectors(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        self.check_open()?;
        let config = &self.inner.config;
        validate_records(records, config.dimension)?;
        if records.is_empty() {
            return Ok(0);
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
        request.validate(config.dimension)?;
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
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.chunk_id.cmp(&b.chunk_id))
        });
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
        let status = match self.inner.schema.status().await {
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
                "collection {} does not exist (ensure_schema creates it)",
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

    use super::*;
    use crate::client::{MockMilvusApi, RawHit};
    use crate::config::Consistency;
    use vectorgate_domain::{SearchScope, TopK};
    use vectorgate_testkit::{chunk, project, tenant};

    fn config() -> MilvusConfig {
        let mut config = MilvusConfig::new("milvus.test", 19530, Dimension::new(4).unwrap());
        config.index_nlist = Some(64);
        config
    }

    fn store(config: MilvusConfig, api: MockMilvusApi) -> MilvusStore {
        MilvusStore::with_client(config, Arc::new(api)).unwrap()
    }

    fn emb(x: f32) -> Embedding {
        Embedding::new(vec![x, 0.0, 0.0, 1.0]).unwrap()
    }

    fn rec(id: i64) -> VectorRecord {
        VectorRecord::new(chunk(id), tenant(1), project(2), emb(id as f32))
    }

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
            .withf(|call| {
                call.metric == Metric::Ip && call.nprobe == crate::config::derive_nprobe(64)
            })
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
    async fn configured_consistency_is_sent_with_reads() {
        let mut config = config();
        config.consistency = Consistency::Eventually;
        let mut api = MockMilvusApi::new();
        api.expect_count()
            .withf(|collection, expr, consistency| {
                collection == "knowledge_chunks"
                    && expr == "chunk_id >= 0"
                    && *consistency == Consistency::Eventually
            })
            .times(1)
            .returning(|_, _, _| Ok(5));
        api.expect_count()
            .withf(|_, expr, _| expr == "tenant_id == 3")
            .times(1)
            .returning(|_, _, _| Ok(2));
        let store = store(config, api);
        assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 5);
        assert_eq!(store.count(ScanFilter::tenant(tenant(3))).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn upsert_sends_column_batches_of_at_most_batch_size_rows() {
        let mut config = config();
        config.batch_size = 2;
        config.upsert_concurrency = 1;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let seen = sent.clone();
        let mut api = MockMilvusApi::new();
        api.expect_upsert()
            .withf(|collection, _| collection == "knowledge_chunks")
            .times(3)
            .returning(move |_, batch| {
                let rows = batch.len() as u64;
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
        let store = store(config(), api);
        let err = store.upsert_vectors(&[rec(1)]).await.unwrap_err();
        assert!(matches!(
            err,
            GatewayError::Backend {
                operation: "upsert",
                ..
            }
        ));
    }

    #[test]
    fn requests_stay_under_the_request_size_budget() {
        let mut config = config();
        assert_eq!(config.rows_per_request(), 1000);
        config.dimension = Dimension::new(16_000).unwrap();
        let rows = config.rows_per_request();
        assert!(rows < 1000);
        assert!(rows * bytes_per_row(config.dimension) <= crate::config::MAX_REQUEST_BYTES);
        assert!((rows + 1) * bytes_per_row(config.dimension) > crate::config::MAX_REQUEST_BYTES);
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

    fn rows(ids: &[i64]) -> Rows {
        Rows {
            columns: BTreeMap::from([
                (FIELD_CHUNK_ID.to_string(), Column::Int64(ids.to_vec())),
                (
                    FIELD_TENANT_ID.to_string(),
                    Column::Int64(vec![1; ids.len()]),
                ),
                (
                    FIELD_PROJECT_ID.to_string(),
                    Column::Int64(vec![2; ids.len()]),
                ),
                (
                    FIELD_EMBEDDING.to_string(),
                    Column::FloatVector {
                        dim: 4,
                        values: ids
                            .iter()
                            .flat_map(|&id| [id as f32, 0.0, 0.0, 1.0])
                            .collect(),
                    },
                ),
            ]),
        }
    }

    #[tokio::test]
    async fn scan_range_halves_ranges_that_would_overflow_one_reply() {
        let mut api = MockMilvusApi::new();
        api.expect_count().returning(|_, expr, _| match expr {
            "chunk_id >= 0 && chunk_id <= 3 && tenant_id == 1" => Ok(MAX_QUERY_ROWS),
            "chunk_id >= 0 && chunk_id <= 1 && tenant_id == 1" => Ok(2),
            "chunk_id >= 2 && chunk_id <= 3 && tenant_id == 1" => Ok(1),
            other => panic!("unexpected count {other}"),
        });
        api.expect_query()
            .withf(|call| {
                call.output_fields == ["chunk_id", "tenant_id", "project_id", "embedding"]
                    && call.limit == Some(MAX_QUERY_ROWS)
                    && call.consistency == Consistency::Session
            })
            .times(2)
            .returning(|call| match call.expr.as_str() {
                "chunk_id >= 0 && chunk_id <= 1 && tenant_id == 1" => Ok(rows(&[1, 0])),
                "chunk_id >= 2 && chunk_id <= 3 && tenant_id == 1" => Ok(rows(&[3])),
                other => panic!("unexpected query {other}"),
            });
        let store = store(config(), api);
        let scanned = store
            .scan_range(ScanFilter::tenant(tenant(1)), chunk(0), chunk(3), true)
            .await
            .unwrap();
        let ids: Vec<_> = scanned.iter().map(|r| r.chunk_id.get()).collect();
        assert_eq!(ids, vec![0, 1, 3]);
        assert_eq!(scanned[2].embedding, Some(emb(3.0)));
        assert!(store
            .scan_range(ScanFilter::all(), chunk(5), chunk(4), false)
            .await
            .unwrap_err()
            .is_invalid_input());
    }

    #[tokio::test]
    async fn fetch_queries_ids_of_any_tenant_with_all_fields() {
        let mut api = MockMilvusApi::new();
        api.expect_query()
            .withf(|call| {
                call.collection == "knowledge_chunks"
                    && call.expr == "chunk_id in [5, 3]"
                    && call.output_fields.len() == 4
                    && call.limit.is_none()
            })
            .times(1)
            .returning(|_| Ok(rows(&[5, 3])));
        let store = store(config(), api);
        let records = store.fetch(&[chunk(5), chunk(3)]).await.unwrap();
        assert_eq!(
            records,
            vec![
                VectorRecord::new(chunk(3), tenant(1), project(2), emb(3.0)),
                VectorRecord::new(chunk(5), tenant(1), project(2), emb(5.0)),
            ]
        );
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
