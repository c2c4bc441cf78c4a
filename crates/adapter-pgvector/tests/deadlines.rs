//! Statement deadlines against the real PostgreSQL: a statement blocked on a row lock held
//! by another connection ends as `Timeout` naming the operation, and writes nothing.

use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection, Row};
use vectorgate_adapter_pgvector::{PgVectorConfig, PgVectorStore};
use vectorgate_domain::{
    DeleteRequest, Dimension, Embedding, GatewayError, StoreKind, VectorRecord, VectorStoreGateway,
};
use vectorgate_testkit::{chunk, project, tenant, unique_name, ServicesEnv};

const DIM: u32 = 4;
/// Far above any deadline used here: reached only if a statement was never cancelled.
const HUNG: Duration = Duration::from_secs(60);

fn record(id: i64, tenant_id: i64, value: f32) -> VectorRecord {
    VectorRecord::new(
        chunk(id),
        tenant(tenant_id),
        project(1),
        Embedding::new(vec![value; DIM as usize]).unwrap(),
    )
}

fn config(statement_ms: u64, build_ms: u64) -> PgVectorConfig {
    let mut config = PgVectorConfig::for_url(
        &ServicesEnv::load().database_url(),
        Dimension::new(DIM).unwrap(),
    )
    .unwrap();
    config.table = unique_name("pgv_deadline");
    config.max_connections = 2;
    config.upsert_concurrency = 1;
    config.statement_timeout = Duration::from_millis(statement_ms);
    config.index_build_timeout = Duration::from_millis(build_ms);
    config
}

async fn own_connection() -> PgConnection {
    PgConnection::connect(&ServicesEnv::load().database_url())
        .await
        .expect("connect to the test database")
}

/// The stored (tenant, first component) of chunk `id`, read outside the store.
async fn stored(table: &str, id: i64) -> Option<(i64, f32)> {
    let mut conn = own_connection().await;
    // The table name is a validated identifier from unique_name.
    let sql = format!("SELECT tenant_id, embedding::real[] AS v FROM {table} WHERE chunk_id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut conn)
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get::<Vec<f32>, _>(1)[0]))
}

async fn drop_table(table: &str) {
    let mut conn = own_connection().await;
    conn.execute(format!("DROP TABLE IF EXISTS {table}, {table}_chunk_ids").as_str())
        .await
        .unwrap();
}

fn assert_timeout(err: &GatewayError, operation: &str, deadline: Duration) {
    match err {
        GatewayError::Timeout {
            store,
            operation: op,
            after,
            ..
        } => {
            assert_eq!(*store, StoreKind::Pgvector);
            assert_eq!(*op, operation, "{err}");
            assert_eq!(*after, deadline, "{err}");
        }
        other => panic!("expected a Timeout of {operation}, got: {other}"),
    }
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(
        text.contains(operation) && text.contains("timed out"),
        "{text}"
    );
    let source = std::error::Error::source(err).expect("the sqlx error is kept");
    let code = match source.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    assert_eq!(code.as_deref(), Some("57014"), "{source}");
}

#[tokio::test]
async fn a_write_blocked_on_a_row_lock_times_out_naming_the_operation_and_writes_nothing() {
    let deadline = Duration::from_millis(700);
    let config = config(700, 60_000);
    let table = config.table.clone();
    let store = PgVectorStore::new(config).unwrap();
    store.bootstrap().await.unwrap();
    store.upsert_vectors(&[record(1, 1, 0.5)]).await.unwrap();

    // Another session holds chunk 1's row lock until it rolls back.
    let mut holder = own_connection().await;
    let mut lock = holder.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT 1 FROM {table} WHERE chunk_id = 1 FOR UPDATE"
    ))
    .execute(&mut *lock)
    .await
    .unwrap();

    let write = [record(1, 1, 0.9), record(2, 1, 0.9)];
    let err = tokio::time::timeout(HUNG, store.upsert_vectors(&write))
        .await
        .expect("the upsert was never cancelled")
        .unwrap_err();
    assert_timeout(&err, "upsert", deadline);

    let delete = DeleteRequest::Tenant {
        tenant_id: tenant(1),
    };
    let err = tokio::time::timeout(HUNG, store.delete_vectors(&delete))
        .await
        .expect("the delete was never cancelled")
        .unwrap_err();
    assert_timeout(&err, "delete", deadline);

    lock.rollback().await.unwrap();
    // Nothing of either call was written: chunk 1 keeps its value, chunk 2 does not exist.
    assert_eq!(stored(&table, 1).await, Some((1, 0.5)));
    assert_eq!(stored(&table, 2).await, None);
    // The store works again once the lock is gone.
    store.upsert_vectors(&write).await.unwrap();
    assert_eq!(stored(&table, 2).await, Some((1, 0.9)));
    store.close().await.unwrap();
    drop_table(&table).await;
}

#[tokio::test]
async fn a_bulk_load_runs_under_its_own_larger_deadline() {
    let statement = Duration::from_millis(300);
    let build = Duration::from_millis(2_000);
    let config = config(300, 2_000);
    let table = config.table.clone();
    let store = PgVectorStore::new(config).unwrap();
    store.bootstrap().await.unwrap();

    // An uncommitted insert of chunk 7 makes COPY of chunk 7 wait on its unique index entry.
    let mut holder = own_connection().await;
    let mut lock = holder.begin().await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO {table} (chunk_id, tenant_id, project_id, embedding) \
         VALUES (7, 1, 1, '[1,1,1,1]')"
    ))
    .execute(&mut *lock)
    .await
    .unwrap();

    let started = Instant::now();
    let err = tokio::time::timeout(
        HUNG,
        store.bulk_load(&[record(6, 1, 0.1), record(7, 1, 0.1)], true),
    )
    .await
    .expect("the bulk load was never cancelled")
    .unwrap_err();
    // The server cancels no earlier than the deadline in effect: the bulk one, not the
    // statement deadline of every other call.
    assert!(started.elapsed() >= build, "{:?}", started.elapsed());
    assert!(build > statement);
    assert_timeout(&err, "bulk_load", build);

    lock.rollback().await.unwrap();
    assert_eq!(stored(&table, 6).await, None);
    assert_eq!(stored(&table, 7).await, None);
    store.close().await.unwrap();
    drop_table(&table).await;
}
