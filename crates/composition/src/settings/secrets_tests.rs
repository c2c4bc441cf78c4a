//! Secrets in settings: never shown by `Debug`, `Display` or an error, and read from files.

use super::tests::{env, URL};
use super::*;

#[test]
fn secrets_never_appear_in_debug_display_or_errors() {
    let s = Settings::from_vars(env(&[
        ("VECTOR_STORE_MODE", "dual"),
        ("EMBEDDING_DIM", "8"),
        (
            "DATABASE_URL",
            "postgres://app:s3cr3t-pw@db:5432/v?password=s3cr3t-pw",
        ),
        ("MILVUS_USERNAME", "root"),
        ("MILVUS_PASSWORD", "milvus-s3cr3t"),
        ("MILVUS_TOKEN", "root:token-s3cr3t"),
    ]))
    .unwrap();
    let printed = [
        format!("{s:?}"),
        format!("{s:#?}"),
        s.to_string(),
        format!("{:?}", s.milvus()),
        format!("{:?}", s.pgvector()),
    ];
    for text in &printed {
        for secret in ["s3cr3t-pw", "milvus-s3cr3t", "token-s3cr3t"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
    assert!(
        printed[0].contains("postgres://app:***@db:5432/v"),
        "{}",
        printed[0]
    );
    assert!(printed[2].contains("mode=dual"), "{}", printed[2]);
    // A bad URL's error names the variable without its password.
    let err = Settings::from_vars(env(&[
        ("EMBEDDING_DIM", "8"),
        ("DATABASE_URL", "mysql://app:s3cr3t-pw@db/x"),
    ]))
    .unwrap_err();
    assert!(!err.to_string().contains("s3cr3t-pw"), "{err}");
    let err = Settings::from_vars(env(&[
        ("EMBEDDING_DIM", "8"),
        ("VECTOR_STORE_MODE", "milvus"),
        ("MILVUS_TOKEN", "just-a-s3cr3t\u{7}"),
    ]))
    .unwrap_err();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    let builder = Settings::builder().set(&vars::MILVUS_PASSWORD, "builder-s3cr3t");
    assert!(!format!("{builder:?}").contains("s3cr3t"));
}

#[test]
fn secrets_are_read_from_files() {
    let dir = std::env::temp_dir().join(format!("vg_settings_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url_file = dir.join("database_url");
    std::fs::write(&url_file, format!("{URL}\n")).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "root:file-s3cr3t\n").unwrap();
    let s = Settings::from_vars(env(&[
        ("EMBEDDING_DIM", "8"),
        ("DATABASE_URL_FILE", url_file.to_str().unwrap()),
        ("MILVUS_TOKEN_FILE", token_file.to_str().unwrap()),
    ]))
    .unwrap();
    assert_eq!(s.database_url().unwrap().endpoint(), "db.internal:5432");
    use secrecy::ExposeSecret;
    assert_eq!(
        s.milvus().token.as_ref().unwrap().expose_secret(),
        "root:file-s3cr3t"
    );
    // Both the variable and its file: refused, naming both.
    let err = Settings::from_vars(env(&[
        ("EMBEDDING_DIM", "8"),
        ("DATABASE_URL", URL),
        ("DATABASE_URL_FILE", url_file.to_str().unwrap()),
    ]))
    .unwrap_err();
    assert!(
        matches!(&err, GatewayError::Configuration { variable, accepted, .. }
            if variable == "DATABASE_URL_FILE" && accepted.contains("DATABASE_URL")),
        "{err}"
    );
    // A file that cannot be read names the file variable and the path.
    let err = Settings::from_vars(env(&[
        ("EMBEDDING_DIM", "8"),
        ("VECTOR_STORE_MODE", "milvus"),
        ("MILVUS_PASSWORD_FILE", "/nonexistent/secret"),
    ]))
    .unwrap_err();
    assert!(
        matches!(&err, GatewayError::Configuration { variable, value, .. }
            if variable == "MILVUS_PASSWORD_FILE" && value == "/nonexistent/secret"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}
