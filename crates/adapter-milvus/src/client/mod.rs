//! The seam between the store and milvus-sdk-rust.
//!
//! [`MilvusApi`] is a small trait of our own over exactly the Milvus calls the store and
//! the schema manager make, speaking only our own types. [`SdkMilvusApi`] implements it with
//! the SDK's generated gRPC client (see `sdk` for why not its v1 or v2 clients). Every SDK
//! call is in this module, so moving to another SDK API touches nothing else. The store is
//! unit-tested with a mockall mock of the trait.
//!
//! - `connect`: the lazy connection and the headers every call carries (credential,
//!   database).
//! - `error`: SDK errors as [`GatewayError`].
//! - `fence`: [`fence::SessionFence`], read-your-writes and -deletes under `Session`.
//! - `sdk`: [`SdkMilvusApi`], the calls themselves.
//! - `wire`: what every call shares: reply statuses as errors, consistency levels,
//!   conversions to and from the SDK's types.

mod connect;
mod error;
mod fence;
mod sdk;
mod wire;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use vectorgate_domain::{GatewayError, Metric, StoreKind};

use crate::config::Consistency;

pub use sdk::SdkMilvusApi;

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
    /// Milvus's partition key: rows are hashed into the collection's partitions by it.
    pub partition_key: bool,
}

/// A collection as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionDescription {
    pub fields: Vec<FieldSpec>,
    /// Partitions as the server reports them; a count only with a partition key
    /// ([`crate::CollectionLayout::of`] reads it so).
    pub num_partitions: u32,
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
    /// Rows in the batch. Named so rather than `len`, which would want an `is_empty` that
    /// nothing calls.
    pub fn row_count(&self) -> usize {
        self.chunk_ids.len()
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
    async fn describe_collection(
        &self,
        collection: &str,
    ) -> Result<CollectionDescription, GatewayError>;
    /// Creates the collection; `num_partitions` counts only when a field is the partition
    /// key.
    async fn create_collection(
        &self,
        collection: &str,
        fields: &[FieldSpec],
        num_partitions: u32,
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
