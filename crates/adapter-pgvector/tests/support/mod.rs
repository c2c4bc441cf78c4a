//! What the pgvector integration tests share: a store on a table of their own, dropped
//! afterwards, and a pool of the test's own to look at the database directly.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use vectorgate_adapter_pgvector::{PgVectorConfig, PgVectorStore};
use vectorgate_domain::{Dimension, Embedding, ScanFilter, TopK, VectorRecord};
use vectorgate_testkit::{chunk, project, tenant, unique_name, ServicesEnv};

pub fn config(dim: u32) -> PgVectorConfig {
    let mut config = PgVectorConfig::for_url(
        &ServicesEnv::load().database_url(),
        Dimension::new(dim).unwrap(),
    )
    .unwrap();
    config.table = unique_name("pgv_test");
    config.max_connections = 4;
    config
}

/// Bootstraps a store on a fresh table, runs `body`, and drops the table whatever the
/// outcome (a failed assertion is re-raised after the cleanup).
pub async fn with_store<F, Fut>(config: PgVectorConfig, body: F)
where
    F: FnOnce(PgVectorStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = PgVectorStore::new(config).unwrap();
    store.bootstrap().await.expect("bootstrap");
    let outcome = AssertUnwindSafe(body(store.clone())).catch_unwind().await;
    drop_table(&store).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Drops the table and, for a partitioned one, its chunk-id registry.
pub async fn drop_table(store: &PgVectorStore) {
    // Quoted: tests use reserved words (`user`) as table names too.
    let table = store.config().table.replace('"', "\"\"");
    sqlx_exec(
        store,
        &format!("DROP TABLE IF EXISTS \"{table}\", \"{table}_chunk_ids\""),
    )
    .await;
}

pub async fn sqlx_exec(_store: &PgVectorStore, sql: &str) {
    use sqlx::Executor;
    test_pool().await.execute(sql).await.expect(sql);
}

/// A connection pool of the test's own: the tests look at the database directly, not
/// through the store they check.
pub async fn test_pool() -> sqlx::PgPool {
    sqlx::PgPool::connect(&ServicesEnv::load().database_url())
        .await
        .expect("connect to the test database")
}

pub fn record(id: i64, tenant_id: i64, project_id: i64, values: Vec<f32>) -> VectorRecord {
    VectorRecord::new(
        chunk(id),
        tenant(tenant_id),
        project(project_id),
        Embedding::new(values).unwrap(),
    )
}

pub fn basis(dim: usize, hot: usize, weight: f32) -> Vec<f32> {
    let mut v = vec![0.01; dim];
    v[hot] = weight;
    v
}

pub fn k(n: u32) -> TopK {
    TopK::new(n).unwrap()
}

pub async fn all_rows(store: &PgVectorStore) -> Vec<VectorRecord> {
    store.scan(ScanFilter::all(), None, 100_000).await.unwrap()
}
