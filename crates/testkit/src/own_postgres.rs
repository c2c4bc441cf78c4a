//! A PostgreSQL of a test's own (TLS, settings the shared server must not get), started
//! through xtask's code on a free port, its data under target/test-pg, stopped by pid
//! when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use xtask::layout::Layout;
use xtask::postgres::{self, PgState};
use xtask::process::{port_is_free, stop_pid};

use crate::pki::TestPki;
use crate::{unique_name, workspace_root};

fn wheels() -> xtask::venv::Venv {
    xtask::venv::existing(&Layout::current())
        .expect("the server wheels are installed (cargo xtask services up installs them)")
}

/// A test's own PostgreSQL.
#[derive(Debug)]
pub struct OwnPostgres {
    layout: Layout,
    port: u16,
    state: Option<PgState>,
}

impl OwnPostgres {
    /// Picks a free port at or above `from`; nothing is started yet.
    pub fn new(from: u16) -> Self {
        let port = crate::ports::free_block(from, 1, (0, 0), port_is_free)
            .expect("no free port for a test PostgreSQL");
        let dir = workspace_root()
            .join("target/test-pg")
            .join(unique_name("own"));
        Self {
            layout: Layout::for_own_servers(&dir),
            port,
            state: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its database, reached as `host` (`127.0.0.1` or `localhost`), with `query`
    /// appended (`?sslmode=...`).
    pub fn database_url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/{}{query}",
            self.port,
            postgres::DATABASE
        )
    }

    /// Starts it with `ssl=on` and a server certificate for `server_names` from a
    /// throwaway CA, and creates the database with `vector`; returns the files (the CA is
    /// what clients trust). The wheel's PostgreSQL is built without TLS ("SSL is not
    /// supported by this build"), so this runs Debian's PostgreSQL 15 with pgvector, which
    /// `cargo xtask services up` unpacks and builds under target/ (xtask's `tls_postgres`).
    pub fn start_tls(&mut self, server_names: &[&str]) -> TestPki {
        let layout = Layout::current();
        let bin_dir = xtask::tls_postgres::existing(&layout).unwrap_or_else(|| {
            panic!(
                "no PostgreSQL with TLS and pgvector: {}",
                xtask::tls_postgres::why_missing(&layout)
            )
        });
        // Under pg_dir, which start_with() hands to the service user: the key must be its own.
        let files = TestPki::for_names(
            &self.layout.pg_dir.join("tls"),
            "vectorgate test CA",
            server_names,
        );
        let venv = wheels().with_pg_bin_dir(&bin_dir);
        let settings = [
            ("ssl", "on".to_string()),
            ("ssl_cert_file", files.server_pem.display().to_string()),
            ("ssl_key_file", files.server_key.display().to_string()),
        ];
        let state = postgres::start_with(&self.layout, &venv, self.port, &settings)
            .unwrap_or_else(|e| panic!("test PostgreSQL on port {}: {e:#}", self.port));
        self.state = Some(state);
        postgres::ensure_database(&venv, self.port)
            .unwrap_or_else(|e| panic!("test PostgreSQL on port {}: {e:#}", self.port));
        files
    }

    /// Starts the wheel's PostgreSQL (with pgvector) with extra server settings and
    /// creates the database with `vector`.
    pub fn start(&mut self, settings: &[(&str, String)]) {
        let venv = wheels();
        let state = postgres::start_with(&self.layout, &venv, self.port, settings)
            .unwrap_or_else(|e| panic!("test PostgreSQL on port {}: {e:#}", self.port));
        self.state = Some(state);
        postgres::ensure_database(&venv, self.port)
            .unwrap_or_else(|e| panic!("test PostgreSQL on port {}: {e:#}", self.port));
    }

    /// Fast shutdown (SIGINT to the postmaster: clients are disconnected), then SIGTERM
    /// and SIGKILL by pid if it lingers.
    pub fn stop(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &state.pid.to_string()])
            .status();
        let _ = stop_pid(
            state.pid,
            "postgres",
            "test PostgreSQL",
            Duration::from_secs(20),
        );
    }

    /// Where its data, certificates and log are.
    pub fn dir(&self) -> PathBuf {
        self.layout.services.clone()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
        let dir = self.dir();
        if std::thread::panicking() {
            eprintln!("test PostgreSQL files kept under {}", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
