//! Where everything xtask creates lives: all of it under the workspace's `target/`, so a
//! fresh clone needs nothing installed by hand and `cargo clean` removes it.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub target: PathBuf,
    pub venv: PathBuf,
    /// Debian's PostgreSQL 15 with pgvector, unpacked for the TLS tests.
    pub tls_postgres: PathBuf,
    pub services: PathBuf,
    pub pg_dir: PathBuf,
    pub pg_data: PathBuf,
    pub pg_run: PathBuf,
    pub pg_log: PathBuf,
    pub milvus_dir: PathBuf,
    pub milvus_wrapper_log: PathBuf,
    pub milvus_etcd_config: PathBuf,
    pub state_file: PathBuf,
    pub env_file: PathBuf,
}

impl Layout {
    /// The layout of the workspace this xtask binary was built from.
    pub fn current() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives one level below the workspace root")
            .to_path_buf();
        Self::at(&root)
    }

    pub fn at(root: &Path) -> Self {
        Self::with_services(root, &root.join("target").join("services"))
    }

    /// This workspace's layout (its venv) with the servers' data, logs and state under
    /// `services`: a test's own server beside the shared ones.
    pub fn for_own_servers(services: &Path) -> Self {
        Self::with_services(&Self::current().root, services)
    }

    fn with_services(root: &Path, services: &Path) -> Self {
        let target = root.join("target");
        let services = services.to_path_buf();
        let pg_dir = services.join("pg");
        let milvus_dir = services.join("milvus");
        Self {
            root: root.to_path_buf(),
            venv: target.join("venv"),
            tls_postgres: target.join("tls-postgres"),
            pg_data: pg_dir.join("data"),
            pg_run: pg_dir.join("run"),
            pg_log: pg_dir.join("server.log"),
            milvus_wrapper_log: services.join("milvus-server.log"),
            milvus_etcd_config: services.join("milvus-etcd.yaml"),
            state_file: services.join("state.json"),
            env_file: target.join("services.env"),
            pg_dir,
            milvus_dir,
            services,
            target,
        }
    }
}
