//! `cargo xtask services up|status|down`: the servers' lifecycle, recorded in
//! target/services/state.json so that `down` stops exactly the processes `up` started.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::milvus::{self, MilvusPorts, MilvusState};
use crate::postgres::{self, PgState};
use crate::process::{is_alive, port_is_free, wait_until};
use crate::{tls_postgres, venv};

pub const DEFAULT_PG_PORT: u16 = 54329;
pub const DEFAULT_MILVUS_PORT: u16 = 19530;
const MILVUS_READY_TIMEOUT: Duration = Duration::from_secs(180);
const PORTS_FREE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub pg: u16,
    pub milvus: u16,
}

/// What `up` started, as recorded on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub pg: Option<PgState>,
    pub milvus: Option<MilvusState>,
}

impl State {
    pub fn load(layout: &Layout) -> Result<Self> {
        match fs::read_to_string(&layout.state_file) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid", layout.state_file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).context(format!("reading {}", layout.state_file.display())),
        }
    }

    fn save(&self, layout: &Layout) -> Result<()> {
        fs::create_dir_all(&layout.services)?;
        fs::write(&layout.state_file, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", layout.state_file.display()))
    }
}

/// The connection settings handed to tests, the CLI and the benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub database_url: String,
    pub milvus_host: String,
    pub milvus_port: String,
}

impl Settings {
    pub const KEYS: [&'static str; 3] = ["DATABASE_URL", "MILVUS_HOST", "MILVUS_PORT"];

    /// `--external`: already-running services (e.g. the docker-compose stack) named by the
    /// environment; each missing variable is named.
    pub fn from_env() -> Result<Self> {
        let get = |key: &str| {
            std::env::var(key).map_err(|_| {
                anyhow::anyhow!(
                    "--external needs {key} in the environment (for the docker-compose stack: \
                     DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/vectorgate \
                     MILVUS_HOST=127.0.0.1 MILVUS_PORT=19530)"
                )
            })
        };
        Ok(Self {
            database_url: get("DATABASE_URL")?,
            milvus_host: get("MILVUS_HOST")?,
            milvus_port: get("MILVUS_PORT")?,
        })
    }

    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (Self::KEYS[0], &self.database_url),
            (Self::KEYS[1], &self.milvus_host),
            (Self::KEYS[2], &self.milvus_port),
        ]
    }

    pub fn render(&self) -> String {
        self.pairs()
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }
}

fn ensure_free(port: u16, role: &str, flag: &str) -> Result<()> {
    if !port_is_free(port) {
        bail!(
            "port {port} ({role}) is already in use by another program; \
             stop it or choose other ports with {flag}"
        );
    }
    Ok(())
}

/// Starts what is not running yet, waits until both answer, writes target/services.env.
pub fn up(layout: &Layout, ports: Ports) -> Result<Settings> {
    let started = Instant::now();
    let milvus_ports = MilvusPorts::new(ports.milvus)?;
    if let Some((role, _)) = milvus_ports.all().iter().find(|(_, p)| *p == ports.pg) {
        bail!(
            "--pg-port {} collides with the port of the {role}; choose another",
            ports.pg
        );
    }
    fs::create_dir_all(&layout.services)?;
    let venv = venv::ensure(layout)?;
    // Only the TLS tests start it; prepared here so they never build it side by side.
    tls_postgres::prepare(layout);
    let mut state = State::load(layout)?;

    // Reuse what runs; clear what is half-dead so it can be started again.
    let pg_running = match &state.pg {
        Some(pg) if postgres::is_running(&venv, pg) => {
            if pg.port != ports.pg {
                bail!(
                    "PostgreSQL from an earlier `services up` is running on port {} (pid {}); \
                     use --pg-port {} or run `cargo xtask services down` first",
                    pg.port,
                    pg.pid,
                    pg.port
                );
            }
            println!(
                "PostgreSQL already running on 127.0.0.1:{} (pid {}): reusing it",
                pg.port, pg.pid
            );
            true
        }
        Some(pg) => {
            if is_alive(pg.pid, "postgres") {
                println!("PostgreSQL (pid {}) does not answer: restarting it", pg.pid);
                postgres::stop(layout, Some(&venv), pg)?;
            }
            state.pg = None;
            false
        }
        None => false,
    };
    let milvus_running = match &state.milvus {
        Some(m) if milvus::is_running(m) => {
            if m.port != ports.milvus {
                bail!(
                    "Milvus from an earlier `services up` is running on port {} (pid {:?}); \
                     use --milvus-port {} or run `cargo xtask services down` first",
                    m.port,
                    m.server_pid,
                    m.port
                );
            }
            println!(
                "Milvus already running on 127.0.0.1:{} (pid {}): reusing it",
                m.port,
                m.server_pid.unwrap_or_default()
            );
            true
        }
        Some(m) => {
            println!("Milvus from an earlier run does not answer: stopping what is left of it");
            milvus::stop(m)?;
            state.milvus = None;
            false
        }
        None => false,
    };
    state.save(layout)?;

    // Every port is checked before anything starts, so a clash leaves nothing behind.
    if !pg_running {
        ensure_free(ports.pg, "PostgreSQL", "--pg-port")?;
    }
    if !milvus_running {
        for (role, port) in milvus_ports.all() {
            ensure_free(port, role, "--milvus-port (it moves every Milvus port)")?;
        }
    }

    if !pg_running {
        let pg = postgres::start(layout, &venv, ports.pg)?;
        state.pg = Some(pg);
        state.save(layout)?;
    }
    let pg = state.pg.clone().expect("set above");
    let vector = postgres::ensure_database(&venv, pg.port)?;
    println!(
        "PostgreSQL database {} has pgvector {vector}",
        postgres::DATABASE
    );

    if !milvus_running {
        let m = milvus::spawn(layout, &venv, &milvus_ports)?;
        state.milvus = Some(m.clone());
        state.save(layout)?;
        if let Err(e) = milvus::wait_ready(layout, &m, MILVUS_READY_TIMEOUT) {
            milvus::stop(&m).ok();
            state.milvus = None;
            state.save(layout)?;
            return Err(e);
        }
    }
    let m = state.milvus.as_ref().expect("set above");

    let settings = Settings {
        database_url: pg.database_url(),
        milvus_host: "127.0.0.1".to_string(),
        milvus_port: m.port.to_string(),
    };
    fs::write(&layout.env_file, settings.render())
        .with_context(|| format!("writing {}", layout.env_file.display()))?;
    println!(
        "services up in {:.1} s; settings written to {}:\n{}",
        started.elapsed().as_secs_f64(),
        layout.env_file.display(),
        settings.render().trim_end()
    );
    Ok(settings)
}

pub fn status(layout: &Layout) -> Result<()> {
    let state = State::load(layout)?;
    let venv = venv::existing(layout);
    match (&state.pg, &venv) {
        (Some(pg), Some(venv)) if postgres::is_running(venv, pg) => {
            let versions = postgres::versions(venv, pg.port)
                .map(|(server, vector)| format!("PostgreSQL {server}, pgvector {vector}"))
                .unwrap_or_else(|e| format!("versions unavailable: {e:#}"));
            println!(
                "postgres: running, pid {}, 127.0.0.1:{}, {versions}, data {}",
                pg.pid,
                pg.port,
                layout.pg_data.display()
            );
        }
        (Some(pg), _) => println!(
            "postgres: NOT answering (recorded pid {}, port {})",
            pg.pid, pg.port
        ),
        (None, _) => println!("postgres: not started by xtask"),
    }
    match &state.milvus {
        Some(m) if milvus::is_running(m) => println!(
            "milvus:   running, pid {} (wrapper {}), 127.0.0.1:{} (gRPC), health port {}, \
             Milvus {} (PyPI wheel), data {}",
            m.server_pid.unwrap_or_default(),
            m.wrapper_pid,
            m.port,
            m.metrics_port.unwrap_or_default(),
            venv.as_ref()
                .and_then(|v| v.installed_version("milvus"))
                .unwrap_or_else(|| "?".into()),
            layout.milvus_dir.display()
        ),
        Some(m) => println!(
            "milvus:   NOT answering (recorded pids {:?}/{}, port {})",
            m.server_pid, m.wrapper_pid, m.port
        ),
        None => println!("milvus:   not started by xtask"),
    }
    println!(
        "milvus data: {:.2} GB",
        milvus::data_bytes(layout) as f64 / 1e9
    );
    match fs::read_to_string(&layout.env_file) {
        Ok(text) => println!("{}:\n{}", layout.env_file.display(), text.trim_end()),
        Err(_) => println!("{} not written", layout.env_file.display()),
    }
    Ok(())
}

/// Stops what `up` recorded, by pid, and waits until its ports are free again.
pub fn down(layout: &Layout) -> Result<()> {
    let started = Instant::now();
    let mut state = State::load(layout)?;
    if state.pg.is_none() && state.milvus.is_none() {
        println!(
            "no services recorded in {}: nothing to stop",
            layout.state_file.display()
        );
        fs::remove_file(&layout.env_file).ok();
        return Ok(());
    }
    let venv = venv::existing(layout);
    let mut ports = Vec::new();
    let mut failures = Vec::new();
    if let Some(m) = &state.milvus {
        match milvus::stop(m) {
            Ok(()) => {
                ports.extend(m.ports());
                state.milvus = None;
            }
            Err(e) => failures.push(format!("Milvus: {e:#}")),
        }
    }
    if let Some(pg) = &state.pg {
        match postgres::stop(layout, venv.as_ref(), pg) {
            Ok(()) => {
                ports.push(("PostgreSQL", pg.port));
                state.pg = None;
            }
            Err(e) => failures.push(format!("PostgreSQL: {e:#}")),
        }
    }
    state.save(layout)?;
    let mut busy = Vec::new();
    wait_until(PORTS_FREE_TIMEOUT, Duration::from_millis(200), || {
        busy = ports.iter().filter(|(_, p)| !port_is_free(*p)).collect();
        busy.is_empty()
    });
    for (role, port) in busy {
        failures.push(format!(
            "port {port} ({role}) still in use {} s after stopping",
            PORTS_FREE_TIMEOUT.as_secs()
        ));
    }
    if !failures.is_empty() {
        bail!("services down incomplete:\n  {}", failures.join("\n  "));
    }
    fs::remove_file(&layout.state_file).ok();
    fs::remove_file(&layout.env_file).ok();
    println!(
        "services down in {:.1} s (ports free again)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_file_is_key_value_lines_tests_and_cli_read() {
        let settings = Settings {
            database_url: "postgres://postgres@127.0.0.1:54329/vectorgate".into(),
            milvus_host: "127.0.0.1".into(),
            milvus_port: "19530".into(),
        };
        assert_eq!(
            settings.render(),
            "DATABASE_URL=postgres://postgres@127.0.0.1:54329/vectorgate\n\
             MILVUS_HOST=127.0.0.1\nMILVUS_PORT=19530\n"
        );
    }

    #[test]
    fn a_taken_port_is_an_error_naming_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = ensure_free(port, "PostgreSQL", "--pg-port")
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("port {port} (PostgreSQL)")), "{err}");
        assert!(err.contains("--pg-port"), "{err}");
        drop(listener);
        assert!(ensure_free(port, "PostgreSQL", "--pg-port").is_ok());
    }

    #[test]
    fn a_missing_state_file_means_nothing_was_started() {
        let dir = std::env::temp_dir().join(format!("xtask-state-{}", std::process::id()));
        let layout = Layout::at(&dir);
        let state = State::load(&layout).unwrap();
        assert!(state.pg.is_none() && state.milvus.is_none());
    }
}
