//! Guarded TLS suite (`RUN_MILVUS_TESTS=1`; run by `cargo xtask test-milvus` and
//! `cargo xtask test`): each test starts a Milvus 2.3.5 of its own with TLS on
//! (`common.security.tlsMode` 1 or 2) and a throwaway CA, then runs every case against that
//! one server, since a start costs 30-60 s. Without the variable the tests print SKIPPED;
//! with it and no server wheels, they fail.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;
use vectorgate_adapter_milvus::{MilvusConfig, MilvusStore, MilvusUri};
use vectorgate_domain::{
    DeleteRequest, GatewayError, SearchRequest, SearchScope, TopK, VectorStoreGateway,
};
use vectorgate_testkit::{
    chunk, milvus_tests_enabled, tenant, unique_name, workspace_root, OwnMilvus, ServerSettings,
    ServerTls, ServicesEnv, TestPki,
};

/// A throwaway CA (and its certificates) under target/, removed when dropped.
struct Pki {
    dir: std::path::PathBuf,
    files: TestPki,
}

impl Pki {
    fn new(name: &str) -> Self {
        Self::with(name, TestPki::generate)
    }

    fn with(name: &str, generate: fn(&Path, &str) -> TestPki) -> Self {
        let dir = workspace_root()
            .join("target/test-milvus")
            .join(unique_name(name));
        let files = generate(&dir, name);
        Self { dir, files }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_server(from: u16, mode: u8, pki: &TestPki, authorization: bool) -> OwnMilvus {
    let mut server = OwnMilvus::new(from).with_settings(ServerSettings {
        tls: Some(ServerTls {
            mode,
            server_pem: pki.server_pem.clone(),
            server_key: pki.server_key.clone(),
            ca_pem: pki.ca_pem.clone(),
        }),
        authorization,
    });
    server.start(2);
    server
}

/// A client of `uri` trusting `ca` (short timeouts: the failures here are immediate).
fn client(uri: &str, ca: Option<&Path>) -> MilvusConfig {
    let mut config = config("vg_tls");
    config.set_uri(MilvusUri::parse(uri).unwrap());
    config.tls.ca_file = ca.map(Path::to_path_buf);
    config.connect_timeout = Duration::from_secs(10);
    config.call_timeout = Duration::from_secs(30);
    config
}

/// The first call's error: `Unavailable`, one line, naming the URI, a readable cause (one
/// of `causes`, case-insensitive) and no Debug dump of tonic's or the SDK's errors.
async fn refused(config: MilvusConfig, causes: &[&str]) -> String {
    let uri = config.endpoint();
    let store = MilvusStore::new(config).unwrap();
    let err: GatewayError = store
        .server_version()
        .await
        .expect_err("the connection must be refused");
    let line = err.to_string();
    println!("{uri}: {line}");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.contains(&uri), "names {uri}: {line}");
    let lower = line.to_ascii_lowercase();
    assert!(
        causes
            .iter()
            .any(|c| lower.contains(&c.to_ascii_lowercase())),
        "a cause among {causes:?}: {line}"
    );
    for dump in ["Error {", "Error(", "ConnectError", "Custom {", "kind:"] {
        assert!(!line.contains(dump), "no Debug dump ({dump}): {line}");
    }
    line
}

/// The seed suite's round trip in short: upsert, a tenant's search, delete, gone.
async fn round_trip(config: MilvusConfig) {
    let (store, _guard) = store_with(config);
    store.ensure_schema().await.unwrap();
    let records: Vec<_> = (0..6i64)
        .map(|i| record(10 + i, 1 + i % 2, 1, axis(i as usize)))
        .collect();
    assert_eq!(store.upsert_vectors(&records).await.unwrap(), 6);
    let search = SearchRequest::new(
        SearchScope::tenant(tenant(1)),
        axis(0),
        TopK::new(10).unwrap(),
    );
    let hits = store.search(&search).await.unwrap();
    assert_eq!(hits.len(), 3, "tenant 1 owns 3 rows: {hits:?}");
    assert_eq!(hits[0].chunk_id, chunk(10));
    let deleted = store
        .delete_vectors(&DeleteRequest::chunks(tenant(1), [chunk(10)]))
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let hits = store.search(&search).await.unwrap();
    assert!(hits.iter().all(|h| h.chunk_id != chunk(10)), "{hits:?}");
    assert_eq!(hits.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_round_trip_and_each_refusal_names_the_uri_and_cause() {
    if !milvus_tests_enabled("tls_server_round_trip_and_each_refusal_names_the_uri_and_cause") {
        return;
    }
    let pki = Pki::new("vg_tls");
    let other_ca = Pki::new("vg_tls_other");
    let server = tls_server(24_000, 1, &pki.files, false);
    let https = format!("https://127.0.0.1:{}", server.port());

    // The round trip over https:// trusting the throwaway CA; the name checked is the URI's
    // IP address, which the server certificate holds.
    round_trip(client(&https, Some(&pki.files.ca_pem))).await;
    // The same through the host name, and through an explicit server name.
    let mut named = client(&https, Some(&pki.files.ca_pem));
    named.tls.server_name = Some("localhost".into());
    MilvusStore::new(named)
        .unwrap()
        .server_version()
        .await
        .unwrap();

    // A CA the client does not trust (another CA; then the system roots).
    refused(
        client(&https, Some(&other_ca.files.ca_pem)),
        &["UnknownIssuer", "unknown issuer"],
    )
    .await;
    refused(client(&https, None), &["UnknownIssuer", "unknown issuer"]).await;
    // A name the certificate does not hold.
    let mut wrong_name = client(&https, Some(&pki.files.ca_pem));
    wrong_name.tls.server_name = Some("wrong.example".into());
    refused(wrong_name, &["NotValidForName", "not valid for name"]).await;
    // A plain-text client against the TLS server.
    let plain = client(&format!("http://127.0.0.1:{}", server.port()), None);
    refused(plain, &["https://"]).await;

    // A TLS client against the shared plain-text server.
    let env = ServicesEnv::load();
    let tls_to_plain = client(
        &format!("https://{}:{}", env.milvus_host(), env.milvus_port()),
        Some(&pki.files.ca_pem),
    );
    refused(tls_to_plain, &["does not speak TLS"]).await;
}

/// Mutual TLS with authentication on, as a managed Milvus runs: the round trip needs both
/// the client certificate and the credentials, which every call carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() {
    if !milvus_tests_enabled("mutual_tls_needs_the_client_certificate") {
        return;
    }
    let pki = Pki::new("vg_mtls");
    let server = tls_server(24_600, 2, &pki.files, true);
    let https = format!("https://127.0.0.1:{}", server.port());

    let mut with_cert = client(&https, Some(&pki.files.ca_pem));
    with_cert.tls.client_cert_file = Some(pki.files.client_pem.clone());
    with_cert.tls.client_key_file = Some(pki.files.client_key.clone());
    let mut wrong_password = with_cert.clone();
    wrong_password.token = Some("root:not-the-password".to_string().into());
    let err = MilvusStore::new(wrong_password)
        .unwrap()
        .ensure_schema()
        .await
        .expect_err("wrong credentials are refused");
    let line = err.to_string();
    println!("wrong password: {line}");
    assert!(!line.contains("not-the-password"), "never printed: {line}");
    assert!(line.to_ascii_lowercase().contains("auth"), "{line}");
    // An API key (no colon) is sent as is: open-source Milvus has no API keys and refuses
    // it as one ("please check api key"), which shows the key arrived as an API key.
    let mut api_key = with_cert.clone();
    api_key.token = Some("vg-apikey-s3cr3t".to_string().into());
    let err = MilvusStore::new(api_key)
        .unwrap()
        .ensure_schema()
        .await
        .expect_err("Milvus 2.3.5 knows no API keys");
    let line = err.to_string();
    println!("API key: {line}");
    assert!(!line.contains("s3cr3t"), "never printed: {line}");
    assert!(
        !format!("{err:?}").contains("s3cr3t"),
        "nor in Debug: {err:?}"
    );
    assert!(line.contains("api key"), "refused as an API key: {line}");
    with_cert.token = Some("root:Milvus".to_string().into());
    round_trip(with_cert).await;

    // Without one: the server's alert, or (TLS 1.3 refuses after the handshake) the
    // connection closing; either way the line points at the client certificate settings.
    let line = refused(
        client(&https, Some(&pki.files.ca_pem)),
        &[
            "certificate required",
            "CertificateRequired",
            "BadCertificate",
            "connection closed",
        ],
    )
    .await;
    assert!(line.contains("MILVUS_TLS_CLIENT_CERT_FILE"), "{line}");
}

/// A server certificate past its validity. Milvus cannot be made to serve one (it checks its
/// own), and the client refuses it during the TLS handshake, before any gRPC: a bare TLS
/// listener presenting it stands in for the server. Needs no Milvus, so it always runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_an_expired_server_certificate_is_refused_naming_the_uri_and_cause() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;

    let pki = Pki::with("vg_tls_expired", TestPki::expired);
    let certs = CertificateDer::pem_file_iter(&pki.files.server_pem)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.files.server_key).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            // The handshake fails on the client's side; nothing else is served.
            tokio::spawn(async move { acceptor.accept(tcp).await.ok() });
        }
    });
    let uri = format!("https://127.0.0.1:{port}");
    refused(client(&uri, Some(&pki.files.ca_pem)), &["expired"]).await;
    server.abort();
}
