//! Shared set-up of the guarded Milvus integration suite.
#![allow(dead_code)]

use std::sync::Arc;

use vectorgate_adapter_milvus::{Consistency, MilvusConfig, MilvusStore, PartitionKey};
use vectorgate_domain::{Dimension, Embedding, VectorRecord};
use vectorgate_testkit::{chunk, project, tenant, unique_name, ServicesEnv};

pub const DIM: u32 = 8;

/// Settings for a fresh, test-owned collection on the dev server.
pub fn config(prefix: &str) -> MilvusConfig {
    let env = ServicesEnv::load();
    let mut config = MilvusConfig::new(
        env.milvus_host(),
        env.milvus_port(),
        Dimension::new(DIM).unwrap(),
    );
    config.collection = unique_name(prefix);
    config.expected_rows = 1_000;
    config.consistency = Consistency::Session;
    config
}

/// Drops the test's collection when the test ends, even when it panics.
pub struct Cleanup(pub MilvusStore);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let store = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // A fresh store: the test's runtime (and its connection) may be gone.
            let fresh = MilvusStore::new(store.config().clone()).unwrap();
            if let Err(err) = rt.block_on(fresh.schema().drop_collection()) {
                eprintln!("cleanup of {} failed: {err}", store.config().collection);
            }
        })
        .join();
    }
}

/// A store with its collection created, and the guard that drops it.
pub async fn fresh_store(prefix: &str) -> (MilvusStore, Cleanup) {
    let store = MilvusStore::new(config(prefix)).unwrap();
    let guard = Cleanup(store.clone());
    store.ensure_schema().await.unwrap();
    (store, guard)
}

/// A store whose collection is created without a partition key, whatever the server.
pub async fn unkeyed_store(prefix: &str) -> (MilvusStore, Cleanup) {
    let mut unkeyed = config(prefix);
    unkeyed.partition_key = Some(PartitionKey::None);
    let (store, guard) = store_with(unkeyed);
    store.ensure_schema().await.unwrap();
    (store, guard)
}

pub fn store_with(config: MilvusConfig) -> (MilvusStore, Cleanup) {
    let store = MilvusStore::new(config).unwrap();
    (store.clone(), Cleanup(store))
}

/// A one-hot-ish vector: `axis` dominant, so searches for `axis(k)` rank it first.
pub fn axis(k: usize) -> Embedding {
    let mut v = vec![0.01f32; DIM as usize];
    v[k % DIM as usize] = 1.0;
    Embedding::new(v).unwrap()
}

pub fn record(id: i64, t: i64, p: i64, embedding: Embedding) -> VectorRecord {
    VectorRecord::new(chunk(id), tenant(t), project(p), embedding)
}

pub type Shared<T> = Arc<T>;
