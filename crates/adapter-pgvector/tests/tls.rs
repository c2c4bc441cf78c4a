//! TLS to PostgreSQL with `sslmode=verify-full`: a PostgreSQL of the test's own (`ssl=on`,
//! with pgvector) serves a certificate for `localhost` from a throwaway CA. With that CA the
//! gateway creates its table, writes, searches and deletes; with another CA, or reached under
//! a name the certificate does not hold, it refuses with one `Unavailable` line naming
//! host:port and the TLS cause.

use sqlx::{Connection, PgConnection, Row};
use vectorgate_adapter_pgvector::{PgVectorConfig, PgVectorStore};
use vectorgate_domain::{
    DeleteRequest, Dimension, Embedding, GatewayError, SearchRequest, SearchScope, StoreKind, TopK,
    VectorRecord, VectorStoreGateway,
};
use vectorgate_testkit::TestPki;
use vectorgate_testkit::{chunk, project, tenant, unique_name, OwnPostgres};

const DIM: u32 = 3;

fn verify_full(server: &OwnPostgres, host: &str, ca: &std::path::Path) -> String {
    server.database_url(
        host,
        &format!("?sslmode=verify-full&sslrootcert={}", ca.display()),
    )
}

fn store(url: &str) -> PgVectorStore {
    let mut config = PgVectorConfig::for_url(url, Dimension::new(DIM).unwrap()).unwrap();
    config.table = unique_name("pgv_tls");
    config.max_connections = 2;
    PgVectorStore::new(config).unwrap()
}

/// The error of connecting through `url`: one `Unavailable` line naming `endpoint` and
/// holding `cause`.
async fn refused(url: &str, endpoint: &str, cause: &str) -> String {
    let store = store(url);
    let err = store
        .bootstrap()
        .await
        .expect_err("the connection must be refused");
    let line = err.to_string();
    eprintln!("{line}");
    assert!(
        matches!(
            &err,
            GatewayError::Unavailable {
                store: StoreKind::Pgvector,
                ..
            }
        ),
        "{line}"
    );
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.contains(endpoint), "names {endpoint}: {line}");
    assert!(line.contains("TLS"), "says TLS: {line}");
    assert!(line.contains(cause), "names the cause {cause}: {line}");
    assert!(
        !line.contains("Custom {") && !line.contains("kind:"),
        "no Debug dump: {line}"
    );
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_full_round_trip_and_refusals() {
    let mut server = OwnPostgres::new(25_700);
    let files = server.start_tls(&["localhost"]);
    let port = server.port();

    // 1. The CA that issued the certificate, the name the certificate holds: the gateway
    // bootstraps its table and index, writes, searches and deletes over TLS.
    let url = verify_full(&server, "localhost", &files.ca_pem);
    let gateway = store(&url);
    gateway.bootstrap().await.unwrap();
    let records: Vec<VectorRecord> = (0..3)
        .map(|i| {
            let mut v = vec![0.0; DIM as usize];
            v[i] = 1.0;
            let id = i64::try_from(i).unwrap() + 1;
            VectorRecord::new(chunk(id), tenant(7), project(1), Embedding::new(v).unwrap())
        })
        .collect();
    assert_eq!(gateway.upsert_vectors(&records).await.unwrap(), 3);
    let hits = gateway
        .search(&SearchRequest::new(
            SearchScope::tenant(tenant(7)),
            records[1].embedding.clone(),
            TopK::new(3).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(hits[0].chunk_id, chunk(2), "{hits:?}");
    let deleted = gateway
        .delete_vectors(&DeleteRequest::chunks(tenant(7), [chunk(1)]))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let health = gateway.health().await.unwrap();
    let report = &health.stores[0];
    assert!(report.reachable, "{report:?}");
    let version = report.server_version.as_deref().unwrap_or_default();
    assert!(version.starts_with("PostgreSQL "), "{report:?}");
    eprintln!("verify-full with the CA: bootstrap, upsert, search, delete over TLS; {version}");
    gateway.close().await.unwrap();
    // The same URL really is encrypted and verified (the server's view of the session).
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let ssl: bool = sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the session is not encrypted");
    conn.close().await.unwrap();
    // Without TLS the server still answers, so the checks above are about TLS.
    let plain = store(&server.database_url("localhost", "?sslmode=disable"));
    assert!(plain.health().await.unwrap().stores[0].reachable);
    plain.close().await.unwrap();

    // 2. Another CA: the server's certificate is not trusted.
    let stranger = TestPki::for_names(&server.dir().join("other-ca"), "another CA", &["localhost"]);
    refused(
        &verify_full(&server, "localhost", &stranger.ca_pem),
        &format!("localhost:{port}"),
        "UnknownIssuer",
    )
    .await;

    // 3. The right CA, but reached as 127.0.0.1, a name the certificate does not hold.
    refused(
        &verify_full(&server, "127.0.0.1", &files.ca_pem),
        &format!("127.0.0.1:{port}"),
        "certificate not valid for name \"127.0.0.1\"",
    )
    .await;

    server.stop();
}
