use std::collections::HashMap;
use std::time::Duration;

use vectorgate_adapter_milvus::Consistency;
use vectorgate_adapter_pgvector::{IndexKind, PgIndex, PgVectorConfig};

use super::*;

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) const URL: &str = "postgres://app:s3cr3t-pw@db.internal:5432/vectors";

#[test]
fn unset_variables_keep_the_adapters_own_defaults() {
    let s = Settings::from_vars(env(&[("EMBEDDING_DIM", "8"), ("DATABASE_URL", URL)])).unwrap();
    let mut theirs = PgVectorConfig::new(Dimension::new(8).unwrap());
    theirs.database_url = s.pgvector().database_url.clone();
    assert_eq!(format!("{:?}", s.pgvector()), format!("{theirs:?}"));
    let mut theirs = MilvusConfig::new("localhost", 19530, Dimension::new(8).unwrap());
    theirs.batch_size = 1000;
    assert_eq!(format!("{:?}", s.milvus()), format!("{theirs:?}"));
}

#[test]
fn defaults() {
    let s = Settings::from_vars(env(&[("EMBEDDING_DIM", "768"), ("DATABASE_URL", URL)])).unwrap();
    assert_eq!(s.mode(), VectorStoreMode::Pgvector);
    assert_eq!(s.dimension().get(), 768);
    assert_eq!(s.metric(), Metric::Ip);
    assert_eq!(s.pgvector().table, "knowledge_chunks");
    assert_eq!(s.milvus().host, "localhost");
    assert_eq!(s.milvus().port, 19530);
    assert_eq!(s.milvus().collection, "knowledge_chunks");
    assert_eq!(s.dual().read_from, ReadFrom::Pgvector);
    assert_eq!(s.dual().shadow_read_rate, 0.0);
    assert_eq!(s.pgvector().batch_size, 1000);
    assert_eq!(s.milvus().dimension.get(), 768);
}

#[test]
fn good_environments_parse() {
    type Check = Box<dyn Fn(&Settings)>;
    let cases: Vec<(Vec<(&str, &str)>, Check)> = vec![
        (
            vec![("VECTOR_STORE_MODE", "milvus"), ("EMBEDDING_DIM", "8")],
            Box::new(|s| {
                assert_eq!(s.mode(), VectorStoreMode::Milvus);
                assert!(
                    s.database_url().is_none(),
                    "milvus mode needs no PostgreSQL"
                );
            }),
        ),
        (
            vec![
                ("VECTOR_STORE_MODE", " Dual "),
                ("EMBEDDING_DIM", "1536"),
                ("DATABASE_URL", URL),
                ("MILVUS_HOST", "milvus.internal"),
                ("MILVUS_PORT", "29530"),
                ("MILVUS_METRIC", "cosine"),
                ("MILVUS_INDEX_NLIST", "256"),
                ("MILVUS_SEARCH_NPROBE", "256"),
                ("MILVUS_CONSISTENCY", "Strong"),
                ("DUAL_READ_FROM", "milvus"),
                ("DUAL_SHADOW_READ_RATE", "0.25"),
                ("PGVECTOR_INDEX", "ivfflat"),
                ("PGVECTOR_IVFFLAT_LISTS", "50"),
                ("PGVECTOR_ACQUIRE_TIMEOUT_MS", "2500"),
                ("MILVUS_CALL_TIMEOUT_MS", "1500"),
                ("UPSERT_BATCH_SIZE", "250"),
            ],
            Box::new(|s| {
                assert_eq!(s.mode(), VectorStoreMode::Dual);
                assert_eq!(s.metric(), Metric::Cosine);
                assert_eq!(s.milvus().port, 29530);
                assert_eq!(s.milvus().index_nlist, Some(256));
                assert_eq!(s.milvus().consistency, Consistency::Strong);
                assert_eq!(s.dual().read_from, ReadFrom::Milvus);
                assert_eq!(s.dual().shadow_read_rate, 0.25);
                assert_eq!(s.pgvector().vector_index(), PgIndex::IvfFlat { lists: 50 });
                assert_eq!(s.pgvector().acquire_timeout, Duration::from_millis(2500));
                assert_eq!(s.pgvector().metric, Metric::Cosine);
                assert_eq!(s.pgvector().batch_size, 250);
                assert_eq!(s.milvus().metric, Metric::Cosine);
                assert_eq!(s.milvus().batch_size, 250);
                assert_eq!(s.milvus().call_timeout, Duration::from_millis(1500));
                assert_eq!(s.milvus().effective_nprobe(), 256);
            }),
        ),
        (
            vec![
                ("EMBEDDING_DIM", "4"),
                ("DATABASE_URL", URL),
                ("VECTOR_METRIC", "L2"),
                ("MILVUS_METRIC", "l2"),
                ("MILVUS_PASSWORD", ""),
                ("PGVECTOR_HNSW_M", "8"),
                ("PGVECTOR_HNSW_EF_CONSTRUCTION", "16"),
                ("UNRELATED_VARIABLE", "ignored"),
            ],
            Box::new(|s| {
                assert_eq!(s.metric(), Metric::L2);
                assert!(s.milvus().password.is_none(), "empty counts as unset");
                assert_eq!(s.pgvector().index, IndexKind::Hnsw);
                assert_eq!(
                    s.pgvector().vector_index(),
                    PgIndex::Hnsw {
                        m: 8,
                        ef_construction: 16
                    }
                );
            }),
        ),
    ];
    for (vars, check) in cases {
        let settings = Settings::from_vars(env(&vars))
            .unwrap_or_else(|e| panic!("{vars:?} should parse: {e}"));
        check(&settings);
    }
}

#[test]
fn bad_environments_name_the_variable_the_value_and_what_is_accepted() {
    let base = [("EMBEDDING_DIM", "8"), ("DATABASE_URL", URL)];
    // (overrides, variable named, value named, text the accepted values contain)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("VECTOR_STORE_MODE", "both")],
            "VECTOR_STORE_MODE",
            "both",
            "pgvector, milvus or dual",
        ),
        (&[("EMBEDDING_DIM", "0")], "EMBEDDING_DIM", "0", "1..=16000"),
        (
            &[("EMBEDDING_DIM", "abc")],
            "EMBEDDING_DIM",
            "abc",
            "integer",
        ),
        (
            &[("EMBEDDING_DIM", "16001")],
            "EMBEDDING_DIM",
            "16001",
            "1..=16000",
        ),
        (
            &[("VECTOR_METRIC", "dot")],
            "VECTOR_METRIC",
            "dot",
            "IP, COSINE or L2",
        ),
        (
            &[("VECTOR_METRIC", "IP"), ("MILVUS_METRIC", "L2")],
            "MILVUS_METRIC",
            "L2",
            "same value as VECTOR_METRIC",
        ),
        (
            &[("DATABASE_URL", "mysql://h/db")],
            "DATABASE_URL",
            "mysql://h/db",
            "postgres://",
        ),
        (
            &[("PGVECTOR_TABLE", "chunks; drop table x")],
            "PGVECTOR_TABLE",
            "chunks; drop table x",
            "^[a-z_]",
        ),
        (
            &[("PGVECTOR_INDEX", "flat")],
            "PGVECTOR_INDEX",
            "flat",
            "hnsw or ivfflat",
        ),
        (
            &[("PGVECTOR_HNSW_M", "1")],
            "PGVECTOR_HNSW_M",
            "1",
            "2..=100",
        ),
        (
            &[("PGVECTOR_HNSW_EF_CONSTRUCTION", "10")],
            "PGVECTOR_HNSW_EF_CONSTRUCTION",
            "10",
            "2*m",
        ),
        (
            &[("PGVECTOR_HNSW_EF_SEARCH", "5000")],
            "PGVECTOR_HNSW_EF_SEARCH",
            "5000",
            "1..=1000",
        ),
        (
            &[
                ("PGVECTOR_INDEX", "ivfflat"),
                ("PGVECTOR_IVFFLAT_LISTS", "-3"),
            ],
            "PGVECTOR_IVFFLAT_LISTS",
            "-3",
            "1..=32768",
        ),
        (
            &[("PGVECTOR_MAX_CONNECTIONS", "0")],
            "PGVECTOR_MAX_CONNECTIONS",
            "0",
            "1..=10000",
        ),
        (
            &[("PGVECTOR_ACQUIRE_TIMEOUT_MS", "1s")],
            "PGVECTOR_ACQUIRE_TIMEOUT_MS",
            "1s",
            "milliseconds",
        ),
        (
            &[("UPSERT_BATCH_SIZE", "0")],
            "UPSERT_BATCH_SIZE",
            "0",
            "1..=100000",
        ),
        (
            &[("MILVUS_PORT", "70000")],
            "MILVUS_PORT",
            "70000",
            "1..=65535",
        ),
        (&[("MILVUS_PORT", "0")], "MILVUS_PORT", "0", "1..=65535"),
        (
            &[("MILVUS_HOST", "http://milvus:19530")],
            "MILVUS_HOST",
            "http://milvus:19530",
            "without scheme",
        ),
        (
            &[("MILVUS_COLLECTION", "my-chunks")],
            "MILVUS_COLLECTION",
            "my-chunks",
            "A-Za-z",
        ),
        (
            &[("MILVUS_INDEX_NLIST", "0")],
            "MILVUS_INDEX_NLIST",
            "0",
            "1..=65536",
        ),
        (
            &[
                ("MILVUS_INDEX_NLIST", "64"),
                ("MILVUS_SEARCH_NPROBE", "128"),
            ],
            "MILVUS_SEARCH_NPROBE",
            "128",
            "MILVUS_INDEX_NLIST (64)",
        ),
        (
            &[("MILVUS_CONSISTENCY", "linearizable")],
            "MILVUS_CONSISTENCY",
            "linearizable",
            "Strong, Session",
        ),
        (
            &[("MILVUS_CALL_TIMEOUT_MS", "0")],
            "MILVUS_CALL_TIMEOUT_MS",
            "0",
            ">= 1",
        ),
        (
            &[("DUAL_READ_FROM", "both")],
            "DUAL_READ_FROM",
            "both",
            "pgvector or milvus",
        ),
        (
            &[("DUAL_SHADOW_READ_RATE", "1.5")],
            "DUAL_SHADOW_READ_RATE",
            "1.5",
            "0..=1",
        ),
        (
            &[("DUAL_SHADOW_READ_RATE", "NaN")],
            "DUAL_SHADOW_READ_RATE",
            "NaN",
            "0..=1",
        ),
        (
            &[("DUAL_OUTBOX_TABLE", "Outbox")],
            "DUAL_OUTBOX_TABLE",
            "Outbox",
            "^[a-z_]",
        ),
        (
            &[("DUAL_INTENT_LEASE_MS", "10")],
            "DUAL_INTENT_LEASE_MS",
            "10",
            ">= 1000",
        ),
    ];
    for (overrides, variable, value, accepted) in cases {
        let mut vars: HashMap<&str, &str> = base.iter().copied().collect();
        vars.extend(overrides.iter().copied());
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let err = Settings::from_vars(vars).expect_err(&format!("{overrides:?} must fail"));
        match &err {
            GatewayError::Configuration {
                variable: v,
                value: got,
                accepted: acc,
            } => {
                assert_eq!(v, variable, "{overrides:?}: {err}");
                assert_eq!(got, value, "{overrides:?}: {err}");
                assert!(
                    acc.contains(accepted),
                    "{overrides:?}: accepted {acc:?} lacks {accepted:?}"
                );
            }
            other => panic!("{overrides:?}: expected a configuration error, got {other}"),
        }
    }
}

#[test]
fn upper_bounds_are_what_the_documentation_says() {
    // The README once said ">= 1" for variables the parser bounded above; now both come
    // from one declaration, so the documented bound is the enforced one.
    for variable in VARIABLES {
        let accepted = variable.accepted();
        if let Some(range) = accepted
            .strip_prefix("an integer in ")
            .and_then(|rest| rest.split([' ', ';']).next())
        {
            let (_, max) = range.split_once("..=").expect("a range");
            let above = (max.parse::<i128>().unwrap() + 1).to_string();
            let mut vars = env(&[("EMBEDDING_DIM", "8"), ("DATABASE_URL", URL)]);
            vars.push((variable.name().to_string(), above.clone()));
            let err = Settings::from_vars(vars).expect_err(variable.name());
            assert!(
                matches!(&err, GatewayError::Configuration { variable: v, .. } if v == variable.name()),
                "{} = {above}: {err}",
                variable.name()
            );
        }
    }
}

#[test]
fn required_variables_are_named_when_missing() {
    let err = Settings::from_vars(env(&[("DATABASE_URL", URL)])).unwrap_err();
    assert!(
        matches!(&err, GatewayError::Configuration { variable, .. } if variable == "EMBEDDING_DIM"),
        "{err}"
    );
    for mode in ["pgvector", "dual"] {
        let err = Settings::from_vars(env(&[("EMBEDDING_DIM", "8"), ("VECTOR_STORE_MODE", mode)]))
            .unwrap_err();
        match &err {
            GatewayError::Configuration {
                variable, accepted, ..
            } => {
                assert_eq!(variable, "DATABASE_URL");
                assert!(accepted.contains(mode), "{accepted}");
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn the_builder_checks_what_the_environment_parser_checks() {
    let s = Settings::builder()
        .set(&vars::EMBEDDING_DIM, 8)
        .set(&vars::VECTOR_STORE_MODE, VectorStoreMode::Dual)
        .set(&vars::DATABASE_URL, URL)
        .set(&vars::MILVUS_HOST, "127.0.0.1")
        .set(&vars::MILVUS_PORT, 29530)
        .set(&vars::MILVUS_COLLECTION, "chunks_test")
        .set(&vars::DUAL_READ_FROM, ReadFrom::Milvus)
        .set(&vars::DUAL_SHADOW_READ_RATE, 0.1)
        .build()
        .unwrap();
    assert_eq!(s.milvus().endpoint(), "http://127.0.0.1:29530");
    assert_eq!(s.dual().read_from, ReadFrom::Milvus);
    let err = Settings::builder()
        .set(&vars::EMBEDDING_DIM, 8)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::Configuration { ref variable, .. } if variable == "DATABASE_URL")
    );
    let err = Settings::builder()
        .set(&vars::EMBEDDING_DIM, 8)
        .set(&vars::VECTOR_STORE_MODE, VectorStoreMode::Milvus)
        .set(&vars::PGVECTOR_TABLE, "Bad Name")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::Configuration { ref variable, .. } if variable == "PGVECTOR_TABLE")
    );
    // Every variable can be set through the builder: it reads what the environment reads.
    let mut builder = Settings::builder();
    for variable in VARIABLES {
        builder
            .values
            .insert(variable.name(), (false, String::new()));
    }
    let s = builder
        .set(&vars::EMBEDDING_DIM, 8)
        .set(&vars::VECTOR_STORE_MODE, VectorStoreMode::Milvus)
        .build()
        .unwrap();
    assert_eq!(s.mode(), VectorStoreMode::Milvus);
}

#[test]
fn every_variable_is_listed_once() {
    let mut seen = std::collections::HashSet::new();
    for variable in VARIABLES {
        assert!(
            seen.insert(variable.name()),
            "{} listed twice",
            variable.name()
        );
        if let Some(alias) = variable.alias() {
            assert!(seen.insert(alias), "{alias} listed twice");
        }
    }
}

#[test]
fn the_readme_settings_table_is_the_generated_one() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let begin = "<!-- settings table: generated by `cargo xtask docs` -->\n";
    let end = "<!-- end of settings table -->";
    let start = readme
        .find(begin)
        .expect("README.md has the settings table markers")
        + begin.len();
    let stop = start + readme[start..].find(end).expect("end marker");
    assert_eq!(
        &readme[start..stop],
        markdown_table(),
        "README.md's settings table differs from the declarations: run `cargo xtask docs`"
    );
}

#[test]
fn dimensions_above_pgvector_index_limits_are_refused_before_any_connection() {
    let s = Settings::from_vars(env(&[("EMBEDDING_DIM", "3072"), ("DATABASE_URL", URL)])).unwrap();
    assert!(s.pgvector().half_precision_index());
    for mode in ["pgvector", "dual"] {
        let err = Settings::from_vars(env(&[
            ("EMBEDDING_DIM", "4001"),
            ("DATABASE_URL", URL),
            ("VECTOR_STORE_MODE", mode),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("EMBEDDING_DIM") && text.contains("at most 4000"),
            "{mode}: {text}"
        );
    }
    // Milvus alone has no such limit.
    let s = Settings::from_vars(env(&[
        ("EMBEDDING_DIM", "4096"),
        ("VECTOR_STORE_MODE", "milvus"),
    ]))
    .unwrap();
    assert_eq!(s.dimension().get(), 4096);
    let err = Settings::from_vars(env(&[
        ("EMBEDDING_DIM", "3072"),
        ("DATABASE_URL", URL),
        ("PGVECTOR_INDEX_PRECISION", "single"),
    ]))
    .unwrap_err();
    assert!(
        err.to_string().contains("PGVECTOR_INDEX_PRECISION"),
        "{err}"
    );
}

#[test]
fn tenant_moves_are_refused_unless_allowed() {
    let s = Settings::from_vars(env(&[("EMBEDDING_DIM", "8"), ("DATABASE_URL", URL)])).unwrap();
    assert!(!s.pgvector().allow_tenant_move && !s.milvus().allow_tenant_move);
    let s = Settings::from_vars(env(&[
        ("EMBEDDING_DIM", "8"),
        ("DATABASE_URL", URL),
        ("ALLOW_TENANT_MOVE", "true"),
    ]))
    .unwrap();
    assert!(s.pgvector().allow_tenant_move && s.milvus().allow_tenant_move);
}

#[test]
fn statement_deadlines_are_read_bounded_and_kept_under_the_dual_lease() {
    let base = [("EMBEDDING_DIM", "8"), ("DATABASE_URL", URL)];
    let s = Settings::from_vars(env(&base)).unwrap();
    assert_eq!(s.pgvector().statement_timeout, Duration::from_secs(30));
    assert!(s.pgvector().statement_timeout < s.dual().intent_lease);
    assert!(s.pgvector().index_build_timeout > s.pgvector().statement_timeout);

    let with = |extra: &[(&str, &str)]| {
        let mut vars = env(&base);
        vars.extend(env(extra));
        Settings::from_vars(vars)
    };
    let s = with(&[
        ("PGVECTOR_STATEMENT_TIMEOUT_MS", "1500"),
        ("PGVECTOR_INDEX_BUILD_TIMEOUT_MS", "600000"),
    ])
    .unwrap();
    assert_eq!(s.pgvector().statement_timeout, Duration::from_millis(1500));
    assert_eq!(s.pgvector().index_build_timeout, Duration::from_secs(600));

    let refused = |extra: &[(&str, &str)], variable: &str| {
        let err = with(extra).unwrap_err();
        assert!(
            matches!(&err, GatewayError::Configuration { variable: v, .. } if v == variable),
            "{err}"
        );
        err.to_string()
    };
    refused(
        &[("PGVECTOR_STATEMENT_TIMEOUT_MS", "0")],
        "PGVECTOR_STATEMENT_TIMEOUT_MS",
    );
    refused(
        &[("PGVECTOR_INDEX_BUILD_TIMEOUT_MS", "2147483648")],
        "PGVECTOR_INDEX_BUILD_TIMEOUT_MS",
    );
    // Dual mode: a statement may not outlive the lease that reserves its ids.
    let text = refused(
        &[
            ("VECTOR_STORE_MODE", "dual"),
            ("PGVECTOR_STATEMENT_TIMEOUT_MS", "120000"),
        ],
        "PGVECTOR_STATEMENT_TIMEOUT_MS",
    );
    assert!(text.contains("DUAL_INTENT_LEASE_MS (120000)"), "{text}");
    assert!(with(&[
        ("VECTOR_STORE_MODE", "dual"),
        ("PGVECTOR_STATEMENT_TIMEOUT_MS", "120000"),
        ("DUAL_INTENT_LEASE_MS", "300000"),
    ])
    .is_ok());
}

#[test]
fn the_documented_partitions_default_is_the_adapters() {
    use super::var::Variable;
    let documented = super::table::PGVECTOR_PARTITIONS.default_text();
    let default = vectorgate_adapter_pgvector::DEFAULT_TENANT_PARTITIONS;
    assert!(
        documented.starts_with(&format!("{default} ")),
        "{documented}"
    );
}
