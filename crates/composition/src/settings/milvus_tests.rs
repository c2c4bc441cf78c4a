//! The Milvus connection settings: `MILVUS_URI` against the host/port shorthand, TLS files
//! and tokens checked before any connection.

use std::path::Path;

use super::tests::{env, URL};
use super::*;

/// Settings in milvus mode from these variables.
fn milvus(pairs: &[(&str, &str)]) -> Result<Settings, GatewayError> {
    let mut all = vec![("VECTOR_STORE_MODE", "milvus"), ("EMBEDDING_DIM", "8")];
    all.extend_from_slice(pairs);
    Settings::from_vars(env(&all))
}

#[test]
fn milvus_uri_names_the_server_and_refuses_host_and_port_beside_it() {
    let s = milvus(&[("MILVUS_URI", "https://milvus.example.com:19531")]).unwrap();
    assert!(s.milvus().use_tls);
    assert_eq!(s.milvus().host, "milvus.example.com");
    assert_eq!(s.milvus().port, 19531);
    assert_eq!(s.milvus().endpoint(), "https://milvus.example.com:19531");
    assert!(format!("{s:?}").contains("https://milvus.example.com:19531"));
    // The shorthand stays plain text.
    let s = milvus(&[("MILVUS_HOST", "m.internal"), ("MILVUS_PORT", "1")]).unwrap();
    assert_eq!(s.milvus().endpoint(), "http://m.internal:1");
    assert!(!s.milvus().use_tls);

    for other in ["MILVUS_HOST", "MILVUS_PORT"] {
        let value = if other == "MILVUS_PORT" { "19530" } else { "h" };
        let err = milvus(&[("MILVUS_URI", "http://h:19530"), (other, value)]).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, GatewayError::Configuration { .. })
                && text.contains("MILVUS_URI")
                && text.contains(other),
            "{text}"
        );
    }
    let err = milvus(&[("MILVUS_URI", "grpc://h:19530")]).unwrap_err();
    assert!(
        matches!(&err, GatewayError::Configuration { variable, .. } if variable == "MILVUS_URI"),
        "{err:?}"
    );
    assert!(err.to_string().contains("unknown scheme"), "{err}");
}

#[test]
fn tls_files_and_tokens_are_checked_before_any_connection() {
    let dir = std::env::temp_dir().join(format!("vg-settings-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let ca_text = ca.display().to_string();
    let ca = ca_text.as_str();
    let milvus = |pairs: &[(&str, &str)]| {
        let mut all = vec![
            ("VECTOR_STORE_MODE", "milvus"),
            ("EMBEDDING_DIM", "8"),
            ("MILVUS_URI", "https://m:443"),
        ];
        all.extend_from_slice(pairs);
        Settings::from_vars(env(&all))
    };
    let s = milvus(&[
        ("MILVUS_TLS_CA_FILE", ca),
        ("MILVUS_TLS_SERVER_NAME", "milvus.internal"),
    ])
    .unwrap();
    assert_eq!(s.milvus().tls.ca_file.as_deref(), Some(Path::new(ca)));
    assert_eq!(
        s.milvus().tls.server_name.as_deref(),
        Some("milvus.internal")
    );

    let named = |err: GatewayError, name: &str| {
        assert!(
            matches!(&err, GatewayError::Configuration { variable, .. } if variable.contains(name)),
            "{name}: {err:?}"
        );
    };
    named(
        milvus(&[("MILVUS_TLS_CA_FILE", "/nonexistent/ca.pem")]).unwrap_err(),
        "MILVUS_TLS_CA_FILE",
    );
    named(
        milvus(&[("MILVUS_TLS_CLIENT_CERT_FILE", ca)]).unwrap_err(),
        "MILVUS_TLS_CLIENT_KEY_FILE",
    );
    // TLS files without TLS.
    named(
        milvus(&[("MILVUS_URI", "http://m:1"), ("MILVUS_TLS_CA_FILE", ca)]).unwrap_err(),
        "MILVUS_TLS_CA_FILE",
    );
    // A token with a line break inside; never echoed.
    let err = milvus(&[("MILVUS_TOKEN", "root:s3cr\nt-tok")]).unwrap_err();
    assert!(!err.to_string().contains("s3cr"), "{err}");
    named(err, "MILVUS_TOKEN");
    // An API key (Zilliz Cloud's have no colon) is a token like any other.
    let s = milvus(&[("MILVUS_TOKEN", "db-4f1c2a9e7b-s3cr3t")]).unwrap();
    assert!(s.milvus().token.is_some());
    assert!(!format!("{s:?}").contains("s3cr3t"), "{s:?}");
    // Not used in pgvector mode: not read.
    Settings::from_vars(env(&[
        ("EMBEDDING_DIM", "8"),
        ("DATABASE_URL", URL),
        ("MILVUS_URI", "https://m:443"),
        ("MILVUS_TLS_CA_FILE", "/nonexistent/ca.pem"),
    ]))
    .unwrap();
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_partition_layout_is_read_and_bad_values_name_the_variable() {
    let unset = milvus(&[]).unwrap();
    assert_eq!(
        unset.milvus().partition_key,
        None,
        "an existing layout is kept"
    );
    assert_eq!(unset.milvus().num_partitions, 64);
    let keyed = milvus(&[
        ("MILVUS_PARTITION_KEY", "Tenant"),
        ("MILVUS_NUM_PARTITIONS", "16"),
    ])
    .unwrap();
    assert_eq!(
        keyed.milvus().partition_key,
        Some(vectorgate_adapter_milvus::PartitionKey::Tenant)
    );
    assert_eq!(keyed.milvus().num_partitions, 16);
    for (name, value, accepted) in [
        ("MILVUS_PARTITION_KEY", "project", "tenant or none"),
        ("MILVUS_NUM_PARTITIONS", "0", "1..=4096"),
        ("MILVUS_NUM_PARTITIONS", "5000", "1..=4096"),
    ] {
        let err = milvus(&[(name, value)]).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains(value) && err.contains(accepted),
            "{err}"
        );
    }
}
