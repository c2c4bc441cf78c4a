//! Runs the built `vectorgate` binary against the real servers, each test with its own
//! table, collection and outbox (dropped at the end).

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

use vectorgate_adapter_milvus::{Consistency, MilvusConfig, MilvusStore};
use vectorgate_adapter_pgvector::{PgVectorConfig, PgVectorStore};
use vectorgate_domain::{Dimension, VectorRecord};
use vectorgate_testkit::{unique_name, ServicesEnv};

pub const DIM: u32 = 8;

pub struct Fixture {
    pub name: String,
    pub services: ServicesEnv,
    pub runtime: tokio::runtime::Runtime,
    uses_milvus: bool,
    dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(prefix: &str, uses_milvus: bool) -> Self {
        let services = ServicesEnv::load();
        // Fail (not skip) when PostgreSQL is not configured.
        services.database_url();
        Self {
            name: unique_name(prefix),
            services,
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            uses_milvus,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn outbox(&self) -> String {
        format!("{}_outbox", self.name)
    }

    /// The binary with this test's settings; `mode` sets VECTOR_STORE_MODE.
    pub fn command(&self, mode: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vectorgate"));
        cmd.args(args)
            .env("VECTOR_STORE_MODE", mode)
            .env("EMBEDDING_DIM", DIM.to_string())
            .env("DATABASE_URL", self.services.database_url())
            .env("MILVUS_HOST", self.services.milvus_host())
            .env("MILVUS_PORT", self.services.milvus_port().to_string())
            .env("PGVECTOR_TABLE", &self.name)
            .env("MILVUS_COLLECTION", &self.name)
            .env("DUAL_OUTBOX_TABLE", self.outbox())
            .env("MILVUS_CONNECT_TIMEOUT_MS", "3000")
            .env_remove("DUAL_READ_FROM")
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn run(&self, mode: &str, args: &[&str]) -> Run {
        self.run_with(mode, args, &[])
    }

    pub fn run_with(&self, mode: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(mode, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("the vectorgate binary runs"), args)
    }

    /// Writes `text` to a file of this test's own; returns its path.
    pub fn dir_file(&self, file: &str, text: &str) -> String {
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// Writes records as JSON lines (the import format) and returns the path.
    pub fn jsonl(&self, file: &str, records: &[VectorRecord]) -> PathBuf {
        let path = self.dir.path().join(file);
        let mut out = std::fs::File::create(&path).unwrap();
        for record in records {
            writeln!(out, "{}", serde_json::to_string(record).unwrap()).unwrap();
        }
        path
    }

    /// Loads records into pgvector with `import --bulk` (COPY).
    pub fn load_pgvector(&self, records: &[VectorRecord]) {
        let path = self.jsonl("load.jsonl", records);
        self.run(
            "pgvector",
            &["import", "--bulk", "--file", path.to_str().unwrap()],
        )
        .success();
    }

    /// A Milvus store on this test's collection reading at Strong consistency, to look
    /// behind the CLI's back.
    pub fn milvus(&self) -> MilvusStore {
        let mut config = MilvusConfig::new(
            self.services.milvus_host(),
            self.services.milvus_port(),
            Dimension::new(DIM).unwrap(),
        );
        config.collection = self.name.clone();
        config.consistency = Consistency::Strong;
        let _runtime = self.runtime.enter();
        MilvusStore::new(config).unwrap()
    }

    pub fn pgvector(&self) -> PgVectorStore {
        let mut config =
            PgVectorConfig::for_url(&self.services.database_url(), Dimension::new(DIM).unwrap())
                .unwrap();
        config.table = self.name.clone();
        // The pool is created on (and bound to) the fixture's runtime.
        let _runtime = self.runtime.enter();
        PgVectorStore::new(config).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let name = self.name.clone();
        let outbox = self.outbox();
        let url = self.services.database_url();
        let milvus = self.uses_milvus.then(|| self.milvus());
        self.runtime.block_on(async move {
            // The test's own connection: cleanup does not go through the code under test.
            let Ok(pool) = sqlx::PgPool::connect(&url).await else {
                return;
            };
            let pool = &pool;
            // Identifiers come from unique_name (lowercase, digits, `_`).
            for table in [&name, &outbox] {
                let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {table}, {table}_chunk_ids"))
                    .execute(pool)
                    .await;
            }
            let _ =
                sqlx::query("DELETE FROM vectorgate_backfill_checkpoint WHERE source_table = $1")
                    .bind(&name)
                    .execute(pool)
                    .await;
            pool.close().await;
            if let Some(milvus) = milvus {
                let _ = milvus.schema().drop_collection().await;
            }
        });
    }
}

/// What one run printed.
#[derive(Debug)]
pub struct Run {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output, args: &[&str]) -> Self {
        Self {
            command: format!("vectorgate {}", args.join(" ")),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self
    }

    #[track_caller]
    pub fn exit(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self
    }

    /// The last line of stderr, which must be the one `error: ...` line.
    #[track_caller]
    pub fn error_line(&self) -> &str {
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{self:#?}");
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("stack backtrace"),
            "{self:#?}"
        );
        last
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }
}
