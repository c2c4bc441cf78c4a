//! docker-compose.yml cannot be run on machines without Docker; this keeps it honest: it
//! parses, and it describes the services, ports, volumes and healthchecks the README and
//! `cargo xtask test --external` rely on, with pinned images.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml"))
        .expect("docker-compose.yml at the workspace root");
    serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["services"]
        .get(name)
        .unwrap_or_else(|| panic!("service {name} missing from docker-compose.yml"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|v| v.as_str().expect("a string entry").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Published ports as (host port, container port); "127.0.0.1:19530:19530" or "5432:5432".
fn published(svc: &Value) -> BTreeSet<(u16, u16)> {
    strings(&svc["ports"])
        .iter()
        .map(|p| {
            let parts: Vec<&str> = p.split(':').collect();
            let n = parts.len();
            assert!(n >= 2, "port mapping {p} names no host port");
            (parts[n - 2].parse().unwrap(), parts[n - 1].parse().unwrap())
        })
        .collect()
}

#[test]
fn has_exactly_the_four_services() {
    let doc = compose();
    let names: BTreeSet<&str> = doc["services"]
        .as_mapping()
        .expect("a services mapping")
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "milvus-etcd",
            "milvus-minio",
            "milvus-standalone",
            "postgres"
        ])
    );
}

#[test]
fn images_are_pinned_to_the_expected_servers() {
    let doc = compose();
    let expected = [
        ("milvus-standalone", "milvusdb/milvus:v2."),
        ("milvus-etcd", "quay.io/coreos/etcd:v3.5."),
        ("milvus-minio", "minio/minio:RELEASE."),
        ("postgres", "pgvector/pgvector:"),
    ];
    for (name, prefix) in expected {
        let image = service(&doc, name)["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no image"));
        assert!(
            image.starts_with(prefix),
            "{name}: image {image} is not {prefix}*"
        );
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{name}: image {image} is not pinned to a tag"
        );
    }
    let milvus = service(&doc, "milvus-standalone")["image"]
        .as_str()
        .unwrap();
    assert!(
        milvus.starts_with("milvusdb/milvus:v2.5.") || milvus.starts_with("milvusdb/milvus:v2.6."),
        "Milvus should be a current 2.5/2.6 release, got {milvus}"
    );
    let pg = service(&doc, "postgres")["image"].as_str().unwrap();
    let pgvector: Vec<u32> = pg
        .trim_start_matches("pgvector/pgvector:")
        .split('-')
        .next()
        .unwrap()
        .split('.')
        .map(|n| {
            n.parse()
                .expect("pgvector tag starts with its version, e.g. 0.8.0-pg17")
        })
        .collect();
    assert!(pgvector >= vec![0, 8], "pgvector >= 0.8 expected, got {pg}");
}

#[test]
fn every_service_has_a_healthcheck() {
    let doc = compose();
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        let test = strings(&svc["healthcheck"]["test"]);
        assert!(
            test.len() >= 2 && (test[0] == "CMD" || test[0] == "CMD-SHELL"),
            "{name:?} has no usable healthcheck: {test:?}"
        );
    }
    let milvus = strings(&service(&doc, "milvus-standalone")["healthcheck"]["test"]);
    assert!(
        milvus.iter().any(|a| a.contains(":9091/healthz")),
        "{milvus:?}"
    );
    let pg = strings(&service(&doc, "postgres")["healthcheck"]["test"]);
    assert!(pg.iter().any(|a| a.contains("pg_isready")), "{pg:?}");
}

#[test]
fn ports_match_the_settings_users_export() {
    let doc = compose();
    let milvus = published(service(&doc, "milvus-standalone"));
    assert!(
        milvus.contains(&(19530, 19530)),
        "gRPC 19530 not published: {milvus:?}"
    );
    assert!(
        milvus.contains(&(9091, 9091)),
        "health 9091 not published: {milvus:?}"
    );
    let pg = published(service(&doc, "postgres"));
    assert!(
        pg.contains(&(5432, 5432)),
        "PostgreSQL 5432 not published: {pg:?}"
    );
    let env = &service(&doc, "postgres")["environment"];
    assert_eq!(env["POSTGRES_DB"].as_str(), Some("vectorgate"));
    assert_eq!(env["POSTGRES_USER"].as_str(), Some("postgres"));
}

#[test]
fn data_lives_in_the_volumes_folder() {
    let doc = compose();
    for (name, host_dir) in [
        ("milvus-standalone", "./volumes/milvus"),
        ("milvus-etcd", "./volumes/etcd"),
        ("milvus-minio", "./volumes/minio"),
        ("postgres", "./volumes/postgres"),
    ] {
        let volumes = strings(&service(&doc, name)["volumes"]);
        assert!(
            volumes
                .iter()
                .any(|v| v.split(':').next() == Some(host_dir)),
            "{name} does not keep its data in {host_dir}: {volumes:?}"
        );
    }
}

#[test]
fn milvus_waits_for_and_points_at_its_etcd_and_minio() {
    let doc = compose();
    let milvus = service(&doc, "milvus-standalone");
    for dep in ["milvus-etcd", "milvus-minio"] {
        assert_eq!(
            milvus["depends_on"][dep]["condition"].as_str(),
            Some("service_healthy"),
            "milvus-standalone must wait for a healthy {dep}"
        );
    }
    assert_eq!(
        milvus["environment"]["ETCD_ENDPOINTS"].as_str(),
        Some("milvus-etcd:2379")
    );
    assert_eq!(
        milvus["environment"]["MINIO_ADDRESS"].as_str(),
        Some("milvus-minio:9000")
    );
}

#[test]
fn postgres_init_script_creates_the_vector_extension() {
    let doc = compose();
    let volumes = strings(&service(&doc, "postgres")["volumes"]);
    let init = volumes
        .iter()
        .find(|v| v.contains("/docker-entrypoint-initdb.d"))
        .expect("an init script folder mounted for the postgres image");
    let host_dir = init.split(':').next().unwrap();
    let dir = root().join(host_dir.trim_start_matches("./"));
    let sql: String = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        sql.to_lowercase()
            .contains("create extension if not exists vector"),
        "no CREATE EXTENSION vector in {}",
        dir.display()
    );
}
