//! What the store's unit tests share: a store over a mock client, and small records.

use std::sync::Arc;

use vectorgate_domain::{Dimension, Embedding, VectorRecord};
use vectorgate_testkit::{chunk, project, tenant};

use super::MilvusStore;
use crate::client::MockMilvusApi;
use crate::config::MilvusConfig;

pub(super) fn config() -> MilvusConfig {
    let mut config = MilvusConfig::new("milvus.test", 19530, Dimension::new(4).unwrap());
    config.index_nlist = Some(64);
    config
}

pub(super) fn store(config: MilvusConfig, api: MockMilvusApi) -> MilvusStore {
    MilvusStore::with_client(config, Arc::new(api)).unwrap()
}

pub(super) fn emb(x: f32) -> Embedding {
    Embedding::new(vec![x, 0.0, 0.0, 1.0]).unwrap()
}

pub(super) fn rec(id: i64) -> VectorRecord {
    VectorRecord::new(chunk(id), tenant(1), project(2), emb(id as f32))
}
