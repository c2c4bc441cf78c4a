//! The servers the whole test suite runs against are real: this asks PostgreSQL itself
//! which pgvector it has and makes it compute a distance. (Milvus's version is checked
//! through milvus-sdk-rust by the Milvus adapter's suite.) Needs the services:
//! `cargo xtask test` starts them; a missing server fails this test, never skips it.

use vectorgate_testkit::ServicesEnv;

#[tokio::test]
async fn postgres_has_pgvector_0_8_or_newer() {
    let url = ServicesEnv::load().database_url();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));

    let version: String =
        sqlx::query_scalar("select extversion from pg_extension where extname = 'vector'")
            .fetch_one(&pool)
            .await
            .expect("the vector extension is installed in the database");
    let parts: Vec<u32> = version
        .split('.')
        .map(|p| p.parse().expect("numeric version parts"))
        .collect();
    assert!(parts >= vec![0, 8], "pgvector {version} is older than 0.8");

    // L2 distance between [1,2,3] and [1,2,5] is 2: the extension's operators really work.
    let distance: f64 = sqlx::query_scalar("select $1::text::vector <-> $2::text::vector")
        .bind("[1,2,3]")
        .bind("[1,2,5]")
        .fetch_one(&pool)
        .await
        .expect("vector distance query");
    assert_eq!(distance, 2.0);
    pool.close().await;
}
