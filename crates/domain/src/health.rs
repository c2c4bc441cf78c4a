use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Metric, StoreKind};

/// What `health()` reports: one entry per store the gateway uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthStatus {
    pub stores: Vec<StoreHealth>,
}

impl HealthStatus {
    pub fn single(store: StoreHealth) -> Self {
        Self {
            stores: vec![store],
        }
    }

    /// True when every store is reachable and its table/collection matches the settings.
    pub fn is_healthy(&self) -> bool {
        self.stores.iter().all(StoreHealth::is_healthy)
    }
}

/// Health of one store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreHealth {
    pub store: StoreKind,
    pub reachable: bool,
    /// Server version (PostgreSQL + pgvector extension version, or Milvus's version).
    pub server_version: Option<String>,
    pub collection: Option<CollectionStatus>,
    /// Why the store is unhealthy, when it is.
    pub problem: Option<String>,
    /// What an operator should act on although the store works (e.g. a server version with
    /// known bugs); it does not make the store unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl StoreHealth {
    pub fn is_healthy(&self) -> bool {
        self.reachable
            && self.problem.is_none()
            && self.collection.as_ref().is_some_and(|c| c.exists)
    }
}

/// State of the table (pgvector) or collection (Milvus) holding the embeddings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CollectionStatus {
    pub name: String,
    pub exists: bool,
    pub dimension: Option<u32>,
    pub metric: Option<Metric>,
    /// e.g. `hnsw`, `ivfflat`, `IVF_FLAT`.
    pub index_type: Option<String>,
    pub index_params: BTreeMap<String, String>,
    /// Milvus only: whether the collection is loaded into memory.
    pub loaded: Option<bool>,
    /// Exact or estimated row count (see `row_count_estimated`).
    pub row_count: Option<u64>,
    pub row_count_estimated: bool,
    /// Milvus only: rows its search reaches through the collection's index (sealed,
    /// indexed segments); the rest are searched without it until their segment seals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_rows: Option<u64>,
    /// How rows are spread over partitions (e.g. `partition key tenant_id, 64 partitions`,
    /// `one table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
}
