//! The seam between the store and milvus-sdk-rust.
//!
//! [`MilvusApi`] is a small trait of our own over exactly the Milvus calls the store and
//! the schema manager make, speaking only our own types. [`SdkMilvusApi`] implements it with
//! the SDK's v1 `milvus::client::Client` (the v2 `ClientV2` cannot read search rows from
//! Milvus 2.3, see `shared/notes/milvus-sdk.md`); moving to another SDK API touches this
//! file only. The store is unit-tested with a mockall mock of the trait.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use milvus::client::{Client, ConsistencyLevel};
use milvus::data::FieldColumn;
use milvus::index::{IndexParams, IndexType, MetricType};
use milvus::mutate::DeleteOptions;
use milvus::options::CreateCollectionOptions;
use milvus::proto::common::LoadState;
use milvus::query::{QueryOptions, SearchOptions};
use milvus::schema::{CollectionSchemaBuilder, FieldSchema};
use milvus::value::{Value, ValueVec};
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;
use tonic::Code;
use vectorgate_domain::{GatewayError, Metric, StoreKind};

use crate::config::{Consistency, MilvusConfig};

const STORE: StoreKind = StoreKind::Milvus;

/// The type of a collection field, as far as the adapter cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    Int64,
    FloatVector {
        dim: u32,
    },
    /// Any other Milvus type, by its name (e.g. `VarChar`).
    Other(String),
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldKind::Int64 => f.write_str("Int64"),
            FieldKind::FloatVector { dim } => write!(f, "FloatVector(dim={dim})"),
            FieldKind::Other(name) => f.write_str(name),
        }
    }
}

/// One field of a collection (to create, or as described by the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub kind: FieldKind,
    pub primary: bool,
    pub auto_id: bool,
}

/// An index to create, or as described by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub index_name: String,
    pub field_name: String,
    /// e.g. `IVF_FLAT`.
    pub index_type: String,
    /// e.g. `IP`.
    pub metric_type: String,
    /// e.g. `nlist -> 1024`.
    pub params: BTreeMap<String, String>,
    /// Described indexes only: whether the build has finished.
    pub finished: bool,
}

/// Whether a collection is loaded into memory (searchable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStatus {
    NotExist,
    NotLoaded,
    Loading,
    Loaded,
}

/// A segment loaded for search, as the query nodes report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub rows: u64,
    /// Growing segments take new rows and are searched without the collection's index
    /// (Milvus 2.3: brute force or its interim index); sealed ones get the index.
    pub growing: bool,
    /// Name of the index loaded for the segment; empty when searched without it.
    pub index_name: String,
}

/// Rows to upsert, column-wise; `embeddings` is row-major `rows x dim`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnBatch {
    pub chunk_ids: Vec<i64>,
    pub tenant_ids: Vec<i64>,
    pub project_ids: Vec<i64>,
    pub dim: u32,
    pub embeddings: Vec<f32>,
}

impl ColumnBatch {
    pub fn len(&self) -> usize {
        self.chunk_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunk_ids.is_empty()
    }
}

/// One vector search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchCall {
    pub collection: String,
    pub vector_field: String,
    pub vector: Vec<f32>,
    pub filter: String,
    pub limit: u32,
    pub metric: Metric,
    pub nprobe: u32,
    pub consistency: Consistency,
    pub output_fields: Vec<String>,
}

/// One hit as Milvus reports it: the primary key, Milvus's native distance, and the
/// requested Int64 output fields.
#[derive(Debug, Clone, PartialEq)]
pub struct RawHit {
    pub id: i64,
    pub distance: f32,
    pub fields: BTreeMap<String, i64>,
}

/// One scalar query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryCall {
    pub collection: String,
    pub expr: String,
    pub output_fields: Vec<String>,
    pub limit: Option<u64>,
    pub consistency: Consistency,
}

/// A column of a query reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Int64(Vec<i64>),
    /// Row-major `rows x dim`.
    FloatVector {
        dim: u32,
        values: Vec<f32>,
    },
}

/// A query reply, by field name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    pub columns: BTreeMap<String, Column>,
}

/// Exactly the Milvus calls the adapter makes. Errors are already mapped to the port's
/// [`GatewayError`], naming the operation.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait MilvusApi: Send + Sync {
    async fn server_version(&self) -> Result<String, GatewayError>;
    async fn has_collection(&self, collection: &str) -> Result<bool, GatewayError>;
    async fn describe_collection(&self, collection: &str) -> Result<Vec<FieldSpec>, GatewayError>;
    async fn create_collection(
        &self,
        collection: &str,
        fields: &[FieldSpec],
    ) -> Result<(), GatewayError>;
    async fn drop_collection(&self, collection: &str) -> Result<(), GatewayError>;
    /// Indexes on a field; empty when there is none.
    async fn describe_index(
        &self,
        collection: &str,
        field: &str,
    ) -> Result<Vec<IndexSpec>, GatewayError>;
    /// Creates the index and waits until it is built.
    async fn create_index(&self, collection: &str, index: &IndexSpec) -> Result<(), GatewayError>;
    /// Loads the collection and waits until it is loaded.
    async fn load_collection(&self, collection: &str) -> Result<(), GatewayError>;
    async fn load_status(&self, collection: &str) -> Result<LoadStatus, GatewayError>;
    async fn release_collection(&self, collection: &str) -> Result<(), GatewayError>;
    /// Seals the growing segments so that they get the collection's index.
    async fn flush(&self, collection: &str) -> Result<(), GatewayError>;
    /// The segments loaded for search.
    async fn loaded_segments(&self, collection: &str) -> Result<Vec<SegmentInfo>, GatewayError>;
    /// Native upsert; returns the rows written.
    async fn upsert(&self, collection: &str, batch: ColumnBatch) -> Result<u64, GatewayError>;
    /// Delete by expression; returns the rows deleted as Milvus counts them.
    async fn delete(&self, collection: &str, expr: &str) -> Result<u64, GatewayError>;
    async fn search(&self, call: &SearchCall) -> Result<Vec<RawHit>, GatewayError>;
    async fn query(&self, call: &QueryCall) -> Result<Rows, GatewayError>;
    async fn count(
        &self,
        collection: &str,
        expr: &str,
        consistency: Consistency,
    ) -> Result<u64, GatewayError>;
    async fn create_partition(&self, collection: &str, partition: &str)
        -> Result<(), GatewayError>;
    async fn has_partition(&self, collection: &str, partition: &str) -> Result<bool, GatewayError>;
    async fn release_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError>;
    async fn drop_partition(&self, collection: &str, partition: &str) -> Result<(), GatewayError>;
    async fn list_partitions(&self, collection: &str) -> Result<Vec<String>, GatewayError>;
}

type ConnectFuture<T> = Pin<Box<dyn Future<Output = Result<T, GatewayError>> + Send>>;
type Connector<T> = Box<dyn Fn() -> ConnectFuture<T> + Send + Sync>;

/// A connection made on first use and then shared. Concurrent first uses wait for one
/// attempt; a failed attempt is not cached, so the next call tries again.
pub struct LazyConnection<T> {
    cell: OnceCell<T>,
    connector: Connector<T>,
    attempts: AtomicUsize,
}

impl<T> fmt::Debug for LazyConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyConnection")
            .field("connected", &self.cell.initialized())
            .field("attempts", &self.attempts.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T: Send + Sync> LazyConnection<T> {
    pub fn new<F, Fut>(connector: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, GatewayError>> + Send + 'static,
    {
        Self {
            cell: OnceCell::new(),
            connector: Box::new(move || Box::pin(connector())),
            attempts: AtomicUsize::new(0),
        }
    }

    /// The connection, connecting first if needed.
    pub async fn get(&self) -> Result<&T, GatewayError> {
        self.cell
            .get_or_try_init(|| {
                self.attempts.fetch_add(1, Ordering::Relaxed);
                (self.connector)()
            })
            .await
    }

    pub fn is_connected(&self) -> bool {
        self.cell.initialized()
    }

    /// How many connection attempts were made (for tests and diagnostics).
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::Relaxed)
    }
}

/// Builds the SDK client lazily: nothing touches the network until the first call, then
/// one connection is made and shared (tonic multiplexes calls over it).
#[derive(Debug)]
pub struct MilvusClientFactory {
    endpoint: String,
    connection: LazyConnection<Client>,
}

impl MilvusClientFactory {
    pub fn new(config: &MilvusConfig) -> Self {
        let config = config.clone();
        Self {
            endpoint: config.endpoint(),
            connection: LazyConnection::new(move || {
                let config = config.clone();
                async move { connect(&config).await }
            }),
        }
    }

    /// The connected SDK client (connecting on first use). Exposed for the benchmark's
    /// raw-SDK baseline; the store itself goes through [`MilvusApi`].
    pub async fn client(&self) -> Result<&Client, GatewayError> {
        self.connection.get().await
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn is_connected(&self) -> bool {
        self.connection.is_connected()
    }
}

async fn connect(config: &MilvusConfig) -> Result<Client, GatewayError> {
    let endpoint = config.endpoint();
    let (username, password) = credentials(config)?;
    let url = format!("http://{endpoint}");
    let attempt = Client::with_timeout(url, config.call_timeout, username, password);
    let mut client = match tokio::time::timeout(config.connect_timeout, attempt).await {
        Err(_) => {
            return Err(GatewayError::unavailable(
                STORE,
                format!(
                    "cannot reach {endpoint}: no connection within {:?}",
                    config.connect_timeout
                ),
            ))
        }
        Ok(Err(err)) => {
            return Err(GatewayError::unavailable(
                STORE,
                format!("cannot reach {endpoint}: {}", error_chain(&err)),
            ))
        }
        Ok(Ok(client)) => client,
    };
    if let Some(database) = &config.database {
        client
            .using_database(database.clone())
            .await
            .map_err(|err| map_error("use database", &endpoint, err))?;
    }
    tracing::info!(endpoint = %endpoint, "connected to Milvus");
    Ok(client)
}

/// The v1 client authenticates with a user/password pair only; a `user:password` token is
/// the same thing, anything else cannot be sent by it.
fn credentials(config: &MilvusConfig) -> Result<(Option<String>, Option<String>), GatewayError> {
    if let Some(token) = &config.token {
        return match token.expose_secret().split_once(':') {
            Some((user, password)) => Ok((Some(user.to_string()), Some(password.to_string()))),
            None => Err(GatewayError::configuration(
                "MILVUS_TOKEN",
                "<redacted>",
                "a user:password token (milvus-sdk-rust's v1 client cannot send API keys)",
            )),
        };
    }
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => Ok((
            Some(user.clone()),
            Some(password.expose_secret().to_string()),
        )),
        (None, None) => Ok((None, None)),
        _ => Err(GatewayError::configuration(
            "MILVUS_USERNAME/MILVUS_PASSWORD",
            "<only one set>",
            "both a username and a password, or neither",
        )),
    }
}

/// The error and its sources, joined: tonic's top-level messages alone ("transport error")
/// do not say why.
fn error_chain(err: &dyn std::error::Error) -> String {
    // The SDK's own Display of a transport error is a Debug dump of tonic's error
    // (`tonic::transport::Error(Transport, ConnectError(...))`); the deepest cause is the
    // readable part ("Connection refused (os error 111)"), so an operator sees that alone.
    let mut deepest = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        deepest = cause.to_string();
        source = cause.source();
    }
    deepest
}

/// Maps an SDK error to the port's error: a transport failure or an unreachable/timed-out
/// server becomes `Unavailable` naming host:port, anything else `Backend` naming the
/// operation.
pub fn map_error(
    operation: &'static str,
    endpoint: &str,
    err: milvus::error::Error,
) -> GatewayError {
    use milvus::error::Error as E;
    match &err {
        E::Communication(_) => GatewayError::unavailable(
            STORE,
            format!("cannot reach {endpoint}: {}", error_chain(&err)),
        ),
        E::Grpc(status)
            if matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            ) =>
        {
            GatewayError::unavailable(
                STORE,
                format!(
                    "cannot reach {endpoint}: {operation}: {:?}: {}",
                    status.code(),
                    status.message()
                ),
            )
        }
        E::Grpc(status) => GatewayError::backend(
            STORE,
            operation,
            format!("{:?}: {}", status.code(), status.message()),
        ),
        E::Server(code, reason) => {
            GatewayError::backend(STORE, operation, format!("{code:?}: {reason}"))
        }
        _ => GatewayError::backend(STORE, operation, error_chain(&err)),
    }
}

/// [`MilvusApi`] over milvus-sdk-rust's v1 client.
#[derive(Debug)]
pub struct SdkMilvusApi {
    factory: MilvusClientFactory,
    fence: SessionFence,
    /// Bound on calls the SDK polls internally without a deadline of its own (index build,
    /// load).
    wait_timeout: Duration,
}

impl SdkMilvusApi {
    pub fn new(config: &MilvusConfig) -> Self {
        Self {
            factory: MilvusClientFactory::new(config),
            fence: SessionFence::default(),
            wait_timeout: Duration::from_secs(600).max(config.call_timeout),
        }
    }

    pub fn factory(&self) -> &MilvusClientFactory {
        &self.factory
    }

    async fn client(&self) -> Result<&Client, GatewayError> {
        self.factory.client().await
    }

    fn err(&self, operation: &'static str) -> impl Fn(milvus::error::Error) -> GatewayError + '_ {
        move |err| map_error(operation, self.factory.endpoint(), err)
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, milvus::error::Error>>,
    ) -> Result<T, GatewayError> {
        match tokio::time::timeout(self.wait_timeout, fut).await {
            Ok(result) => result.map_err(self.err(operation)),
            Err(_) => Err(GatewayError::backend(
                STORE,
                operation,
                format!("not finished within {:?}", self.wait_timeout),
            )),
        }
    }
}

/// Makes `Session` reads see this client's own deletes.
///
/// milvus-sdk-rust's v1 client implements `Session` by remembering the timestamp of each
/// write reply per collection and sending it as the read's `guarantee_timestamp`. Milvus
/// 2.3.5 answers deletes by expression with timestamp 0, so a delete leaves no timestamp
/// behind and a `Session` read right after it may still see the deleted rows (measured).
/// The fence counts deletes per collection; a `Session` read that starts after an
/// unfenced delete is sent as `Strong` (the server then waits for everything acknowledged
/// before the read, the delete included). A later timestamped upsert or a completed strong
/// read covers the deletes before it and lowers the fence again.
#[derive(Debug, Default)]
pub struct SessionFence {
    /// collection -> (deletes done, deletes already covered by a later timestamp).
    state: std::sync::Mutex<HashMap<String, (u64, u64)>>,
}

impl SessionFence {
    fn with<T>(&self, collection: &str, f: impl FnOnce(&mut (u64, u64)) -> T) -> T {
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(collection.to_string()).or_default())
    }

    /// Deletes completed so far (noted when a write or read starts).
    pub fn generation(&self, collection: &str) -> u64 {
        self.with(collection, |(done, _)| *done)
    }

    pub fn delete_done(&self, collection: &str) {
        self.with(collection, |(done, _)| *done += 1);
    }

    /// A write started at `generation` got a server timestamp: it covers those deletes.
    pub fn write_timestamped(&self, collection: &str, generation: u64) {
        self.with(collection, |(_, covered)| {
            *covered = (*covered).max(generation)
        });
    }

    /// The level to send, and the generation to report back to `read_done`.
    pub fn read_level(&self, collection: &str, wanted: Consistency) -> (Consistency, u64) {
        self.with(collection, |(done, covered)| {
            if wanted == Consistency::Session && *done > *covered {
                (Consistency::Strong, *done)
            } else {
                (wanted, 0)
            }
        })
    }

    /// A read escalated at `generation` succeeded: deletes up to it are now visible.
    pub fn read_done(&self, collection: &str, generation: u64) {
        if generation > 0 {
            self.with(collection, |(_, covered)| {
                *covered = (*covered).max(generation)
            });
        }
    }
}

fn consistency_level(consistency: Consistency) -> i32 {
    let level = match consistency {
        Consistency::Strong => ConsistencyLevel::Strong,
        Consistency::Session => ConsistencyLevel::Session,
        Consistency::Bounded => ConsistencyLevel::Bounded,
        Consistency::Eventually => ConsistencyLevel::Eventually,
    };
    level as i32
}

fn sdk_field(spec: &FieldSpec) -> Result<FieldSchema, GatewayError> {
    Ok(match (&spec.kind, spec.primary) {
        (FieldKind::Int64, true) => FieldSchema::new_primary_int64(&spec.name, "", spec.auto_id),
        (FieldKind::Int64, false) => FieldSchema::new_int64(&spec.name, ""),
        (FieldKind::FloatVector { dim }, false) => {
            FieldSchema::new_float_vector(&spec.name, "", i64::from(*dim))
        }
        (kind, primary) => {
            return Err(GatewayError::backend(
                STORE,
                "create collection",
                format!(
                    "unsupported field {} {kind} (primary: {primary})",
                    spec.name
                ),
            ))
        }
    })
}

fn int_column(name: &str, values: Vec<i64>) -> FieldColumn {
    FieldColumn::new(&FieldSchema::new_int64(name, ""), ValueVec::Long(values))
}

fn value_to_i64(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Long(v) => Some(*v),
        Value::Int32(v) => Some(i64::from(*v)),
        _ => None,
    }
}

#[async_trait]
impl MilvusApi for SdkMilvusApi {
    async fn server_version(&self) -> Result<String, GatewayError> {
        let client = self.client().await?;
        let version = client
            .get_server_version()
            .await
            .map_err(self.err("server version"))?;
        Ok(version.version)
    }

    async fn has_collection(&self, collection: &str) -> Result<bool, GatewayError> {
        self.client()
            .await?
            .has_collection(collection)
            .await
            .map_err(self.err("has collection"))
    }

    async fn describe_collection(&self, collection: &str) -> Result<Vec<FieldSpec>, GatewayError> {
        let described = self
            .client()
            .await?
            .describe_collection(collection)
            .await
            .map_err(self.err("describe collection"))?;
        Ok(described
            .schema
            .fields
            .into_iter()
            .map(|proto| {
                let field = FieldSchema::from(proto);
                let kind = match field.dtype {
                    milvus::proto::schema::DataType::Int64 => FieldKind::Int64,
                    milvus::proto::schema::DataType::FloatVector => FieldKind::FloatVector {
                        dim: u32::try_from(field.dim).unwrap_or(0),
                    },
                    other => FieldKind::Other(other.as_str_name().to_string()),
                };
                FieldSpec {
                    name: field.name,
                    kind,
                    primary: field.is_primary,
                    auto_id: field.auto_id,
                }
            })
            .collect())
    }

    async fn create_collection(
        &self,
        collection: &str,
        fields: &[FieldSpec],
    ) -> Result<(), GatewayError> {
        let mut builder = CollectionSchemaBuilder::new(collection, "vectorgate embeddings");
        for field in fields {
            builder.add_field(sdk_field(field)?);
        }
        let schema = builder.build().map_err(self.err("create collection"))?;
        // The collection's own default only matters to clients that send no level; ours
        // always send one. Session is the least surprising default for other clients too.
        let options = CreateCollectionOptions::with_consistency_level(ConsistencyLevel::Session);
        self.client()
            .await?
            .create_collection(schema, Some(options))
            .await
            .map_err(self.err("create collection"))
    }

    async fn drop_collection(&self, collection: &str) -> Result<(), GatewayError> {
        self.client()
            .await?
            .drop_collection(collection)
            .await
            .map_err(self.err("drop collection"))
    }

    async fn describe_index(
        &self,
        collection: &str,
        field: &str,
    ) -> Result<Vec<IndexSpec>, GatewayError> {
        let result = self.client().await?.describe_index(collection, field).await;
        let infos = match result {
            Ok(infos) => infos,
            // 2.3 answers "index not found" (IndexNotExist) for a field without index.
            Err(milvus::error::Error::Server(code, reason))
                if format!("{code:?}") == "IndexNotExist"
                    || reason.contains("index not found")
                    || reason.contains("index doesn't exist") =>
            {
                return Ok(Vec::new())
            }
            Err(err) => return Err(self.err("describe index")(err)),
        };
        Ok(infos
            .into_iter()
            .map(|info| IndexSpec {
                index_name: info.index_name().to_string(),
                field_name: info.field_name().to_string(),
                index_type: info.params().index_type().to_string(),
                metric_type: info.params().metric_type().to_string(),
                params: info
                    .params()
                    .params()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                finished: matches!(info.state(), milvus::proto::common::IndexState::Finished),
            })
            .collect())
    }

    async fn create_index(&self, collection: &str, index: &IndexSpec) -> Result<(), GatewayError> {
        let index_type: IndexType = index.index_type.parse().map_err(|_| {
            GatewayError::backend(
                STORE,
                "create index",
                format!("unknown index type {}", index.index_type),
            )
        })?;
        let metric: MetricType = index.metric_type.parse().map_err(|_| {
            GatewayError::backend(
                STORE,
                "create index",
                format!("unknown metric {}", index.metric_type),
            )
        })?;
        let params = IndexParams::new(
            index.index_name.clone(),
            index_type,
            metric,
            index.params.clone().into_iter().collect::<HashMap<_, _>>(),
        );
        let client = self.client().await?;
        self.bounded(
            "create index",
            client.create_index(collection, index.field_name.clone(), params),
        )
        .await
    }

    async fn load_collection(&self, collection: &str) -> Result<(), GatewayError> {
        let client = self.client().await?;
        self.bounded("load collection", client.load_collection(collection, None))
            .await
    }

    async fn load_status(&self, collection: &str) -> Result<LoadStatus, GatewayError> {
        let state = self
            .client()
            .await?
            .get_load_state(collection, None)
            .await
            .map_err(self.err("load state"))?;
        Ok(match state {
            LoadState::Loaded => LoadStatus::Loaded,
            LoadState::Loading => LoadStatus::Loading,
            LoadState::NotLoad => LoadStatus::NotLoaded,
            LoadState::NotExist => LoadStatus::NotExist,
        })
    }

    async fn release_collection(&self, collection: &str) -> Result<(), GatewayError> {
        self.client()
            .await?
            .release_collection(collection)
            .await
            .map_err(self.err("release collection"))
    }

    async fn flush(&self, collection: &str) -> Result<(), GatewayError> {
        let client = self.client().await?;
        self.bounded("flush", client.flush(collection)).await
    }

    async fn loaded_segments(&self, collection: &str) -> Result<Vec<SegmentInfo>, GatewayError> {
        let segments = self
            .client()
            .await?
            .list_loaded_segments(collection)
            .await
            .map_err(self.err("list loaded segments"))?;
        Ok(segments
            .into_iter()
            .map(|s| SegmentInfo {
                rows: u64::try_from(s.num_rows).unwrap_or(0),
                growing: matches!(s.state, milvus::proto::common::SegmentState::Growing),
                index_name: s.index_name,
            })
            .collect())
    }

    async fn upsert(&self, collection: &str, batch: ColumnBatch) -> Result<u64, GatewayError> {
        let rows = batch.len() as u64;
        let generation = self.fence.generation(collection);
        let vector_schema =
            FieldSchema::new_float_vector(crate::schema::FIELD_EMBEDDING, "", i64::from(batch.dim));
        let columns = vec![
            int_column(crate::schema::FIELD_CHUNK_ID, batch.chunk_ids),
            int_column(crate::schema::FIELD_TENANT_ID, batch.tenant_ids),
            int_column(crate::schema::FIELD_PROJECT_ID, batch.project_ids),
            FieldColumn::new(&vector_schema, ValueVec::Float(batch.embeddings)),
        ];
        let result = self
            .client()
            .await?
            .upsert(collection, columns, None::<milvus::mutate::UpsertOptions>)
            .await
            .map_err(self.err("upsert"))?;
        if result.timestamp != 0 {
            self.fence.write_timestamped(collection, generation);
        }
        // 2.3 reports upsert_cnt; fall back to the rows sent when a server leaves it 0.
        Ok(match result.upsert_cnt {
            n if n > 0 => n as u64,
            _ => rows,
        })
    }

    async fn delete(&self, collection: &str, expr: &str) -> Result<u64, GatewayError> {
        let result = self
            .client()
            .await?
            .delete(collection, &DeleteOptions::with_filter(expr.to_string()))
            .await
            .map_err(self.err("delete"))?;
        if result.timestamp == 0 {
            self.fence.delete_done(collection);
        }
        Ok(u64::try_from(result.delete_cnt).unwrap_or(0))
    }

    async fn search(&self, call: &SearchCall) -> Result<Vec<RawHit>, GatewayError> {
        let (level, generation) = self.fence.read_level(&call.collection, call.consistency);
        let options = SearchOptions::new()
            .filter(call.filter.clone())
            .limit(call.limit as usize)
            .output_fields(call.output_fields.clone())
            .anns_field(vec![call.vector_field.clone()])
            .add_param("metric_type", call.metric.as_str())
            .add_param("nprobe", call.nprobe.to_string())
            .consistency_level(consistency_level(level));
        let client = self.client().await?;
        let results = client
            .search(
                call.collection.clone(),
                vec![Value::from(call.vector.clone())],
                Some(options),
            )
            .await
            .map_err(self.err("search"))?;
        self.fence.read_done(&call.collection, generation);
        let Some(result) = results.into_iter().next() else {
            return Ok(Vec::new());
        };
        let mut hits = Vec::with_capacity(result.id.len());
        for (row, (id, distance)) in result.id.iter().zip(&result.score).enumerate() {
            let id = value_to_i64(id).ok_or_else(|| {
                GatewayError::backend(STORE, "search", "a hit has a non-integer primary key")
            })?;
            let mut fields = BTreeMap::new();
            for column in &result.field {
                if let Some(v) = column.get(row).as_ref().and_then(value_to_i64) {
                    fields.insert(column.name.clone(), v);
                }
            }
            hits.push(RawHit {
                id,
                distance: *distance,
                fields,
            });
        }
        Ok(hits)
    }

    async fn query(&self, call: &QueryCall) -> Result<Rows, GatewayError> {
        let (level, generation) = self.fence.read_level(&call.collection, call.consistency);
        let mut options = QueryOptions::new()
            .output_fields(call.output_fields.clone())
            .consistency_level(consistency_level(level));
        if let Some(limit) = call.limit {
            options = options.limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let columns = self
            .client()
            .await?
            .query(call.collection.clone(), &call.expr, &options)
            .await
            .map_err(self.err("query"))?;
        self.fence.read_done(&call.collection, generation);
        let mut rows = Rows::default();
        for column in columns {
            let value = match column.value {
                ValueVec::Long(values) => Column::Int64(values),
                ValueVec::Int(values) => Column::Int64(values.into_iter().map(i64::from).collect()),
                ValueVec::Float(values) => Column::FloatVector {
                    dim: u32::try_from(column.dim).unwrap_or(0),
                    values,
                },
                _ => continue,
            };
            rows.columns.insert(column.name, value);
        }
        Ok(rows)
    }

    async fn count(
        &self,
        collection: &str,
        expr: &str,
        consistency: Consistency,
    ) -> Result<u64, GatewayError> {
        let (level, generation) = self.fence.read_level(collection, consistency);
        let options = QueryOptions::new().consistency_level(consistency_level(level));
        let n = self
            .client()
            .await?
            .count_with_expr(collection, expr, &options)
            .await
            .map_err(self.err("count"))?;
        self.fence.read_done(collection, generation);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError> {
        self.client()
            .await?
            .create_partition(collection.to_string(), partition.to_string())
            .await
            .map_err(self.err("create partition"))
    }

    async fn has_partition(&self, collection: &str, partition: &str) -> Result<bool, GatewayError> {
        self.client()
            .await?
            .has_partition(collection.to_string(), partition.to_string())
            .await
            .map_err(self.err("has partition"))
    }

    async fn release_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError> {
        self.client()
            .await?
            .release_partitions(collection.to_string(), [partition.to_string()])
            .await
            .map_err(self.err("release partition"))
    }

    async fn drop_partition(&self, collection: &str, partition: &str) -> Result<(), GatewayError> {
        self.client()
            .await?
            .drop_partition(collection.to_string(), partition.to_string())
            .await
            .map_err(self.err("drop partition"))
    }

    async fn list_partitions(&self, collection: &str) -> Result<Vec<String>, GatewayError> {
        self.client()
            .await?
            .list_partitions(collection.to_string())
            .await
            .map_err(self.err("list partitions"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use vectorgate_domain::Dimension;

    #[tokio::test]
    async fn lazy_connection_connects_once_for_many_concurrent_callers() {
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = connects.clone();
        let lazy = Arc::new(LazyConnection::new(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, GatewayError>(42u32)
            }
        }));
        assert!(!lazy.is_connected(), "nothing connects before first use");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let lazy = lazy.clone();
                tokio::spawn(async move { *lazy.get().await.unwrap() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 42);
        }
        assert_eq!(*lazy.get().await.unwrap(), 42);
        assert_eq!(connects.load(Ordering::SeqCst), 1);
        assert_eq!(lazy.attempts(), 1);
    }

    #[tokio::test]
    async fn lazy_connection_retries_after_a_failed_attempt() {
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = connects.clone();
        let lazy = LazyConnection::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(GatewayError::unavailable(
                        STORE,
                        "cannot reach h:1: refused",
                    ))
                } else {
                    Ok(7u8)
                }
            }
        });
        assert!(lazy.get().await.unwrap_err().is_unavailable());
        assert_eq!(*lazy.get().await.unwrap(), 7);
        assert_eq!(*lazy.get().await.unwrap(), 7);
        assert_eq!(connects.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unreachable_server_error_names_host_port_and_cause() {
        // Port 9 (discard) on localhost is closed on these machines: connection refused.
        let mut config = MilvusConfig::new("127.0.0.1", 9, Dimension::new(4).unwrap());
        config.connect_timeout = Duration::from_secs(3);
        let api = SdkMilvusApi::new(&config);
        assert!(!api.factory().is_connected(), "construction does no I/O");
        let err = api.server_version().await.unwrap_err();
        match err {
            GatewayError::Unavailable { store, reason } => {
                assert_eq!(store, StoreKind::Milvus);
                assert!(reason.starts_with("cannot reach 127.0.0.1:9: "), "{reason}");
                assert!(
                    reason.len() > "cannot reach 127.0.0.1:9: ".len(),
                    "{reason}"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn sdk_errors_map_to_port_errors_naming_the_operation() {
        let err = map_error(
            "search",
            "h:1",
            milvus::error::Error::Server(
                milvus::proto::common::ErrorCode::IllegalArgument,
                "bad expr".into(),
            ),
        );
        assert_eq!(
            err,
            GatewayError::Backend {
                store: StoreKind::Milvus,
                operation: "search",
                cause: "IllegalArgument: bad expr".into()
            }
        );
        let err = map_error(
            "upsert",
            "h:1",
            milvus::error::Error::Grpc(tonic::Status::unavailable("connection reset")),
        );
        assert!(err.is_unavailable(), "{err:?}");
        assert!(err.to_string().contains("cannot reach h:1"), "{err}");
        let err = map_error(
            "query",
            "h:1",
            milvus::error::Error::Grpc(tonic::Status::invalid_argument("limit too big")),
        );
        assert!(
            matches!(&err, GatewayError::Backend { operation: "query", cause, .. } if cause.contains("limit too big")),
            "{err:?}"
        );
    }

    #[test]
    fn session_reads_after_a_delete_are_sent_strong_until_covered() {
        let fence = SessionFence::default();
        assert_eq!(
            fence.read_level("c", Consistency::Session),
            (Consistency::Session, 0)
        );
        fence.delete_done("c");
        let (level, generation) = fence.read_level("c", Consistency::Session);
        assert_eq!(level, Consistency::Strong);
        // Other collections and other levels are unaffected.
        assert_eq!(
            fence.read_level("d", Consistency::Session).0,
            Consistency::Session
        );
        assert_eq!(
            fence.read_level("c", Consistency::Bounded).0,
            Consistency::Bounded
        );
        // A second delete while the strong read is in flight keeps the fence up.
        fence.delete_done("c");
        fence.read_done("c", generation);
        assert_eq!(
            fence.read_level("c", Consistency::Session).0,
            Consistency::Strong
        );
        // A timestamped upsert that started after both deletes covers them.
        let g = fence.generation("c");
        fence.write_timestamped("c", g);
        assert_eq!(
            fence.read_level("c", Consistency::Session).0,
            Consistency::Session
        );
    }

    #[test]
    fn credentials_accept_user_password_tokens_only() {
        let mut config = MilvusConfig::new("h", 1, Dimension::new(4).unwrap());
        assert_eq!(credentials(&config).unwrap(), (None, None));
        config.token = Some("root:Milvus".to_string().into());
        assert_eq!(
            credentials(&config).unwrap(),
            (Some("root".into()), Some("Milvus".into()))
        );
        config.token = Some("apikey123".to_string().into());
        let err = credentials(&config).unwrap_err();
        assert!(
            !err.to_string().contains("apikey123"),
            "never echo a secret"
        );
        config.token = None;
        config.username = Some("u".into());
        assert!(credentials(&config).is_err(), "username without password");
    }
}
