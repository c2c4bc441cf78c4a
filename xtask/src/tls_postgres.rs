//! A PostgreSQL that serves TLS and has pgvector, for the TLS tests. The wheel's PostgreSQL is
//! built without TLS, so this is Debian's PostgreSQL 15 (built with OpenSSL) unpacked from its
//! packages under `target/tls-postgres`, with pgvector built from Debian's source of it. Nothing
//! is installed into the system; PostgreSQL finds its share and lib folders relative to its own
//! binaries, so the unpacked tree runs where it is.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::layout::Layout;
use crate::process::{capture, run};

/// The packages unpacked: the server, its client tools (psql, pg_config, PGXS) and headers.
const PACKAGES: [&str; 3] = [
    "postgresql-15",
    "postgresql-client-15",
    "postgresql-server-dev-15",
];
/// pgvector's source as Debian ships it (trixie), pinned by the digest its Sources index gives.
const PGVECTOR_VERSION: &str = "0.8.0";
const PGVECTOR_URL: &str =
    "http://deb.debian.org/debian/pool/main/p/pgvector/pgvector_0.8.0.orig.tar.gz";
const PGVECTOR_SHA256: &str = "867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0";
/// Written last, so a build cut short is redone rather than used.
const READY: &str = "ready";
/// Why the last preparation failed, for the tests that need the tree.
const FAILED: &str = "failed";

fn bin_dir(dir: &Path) -> PathBuf {
    dir.join("root/usr/lib/postgresql/15/bin")
}

/// Its binaries (initdb, pg_ctl, postgres, psql) when the tree is complete.
pub fn existing(layout: &Layout) -> Option<PathBuf> {
    let dir = &layout.tls_postgres;
    let ready = fs::read_to_string(dir.join(READY)).ok()?;
    (ready.trim() == stamp()).then(|| bin_dir(dir))
}

/// Why [`existing`] finds nothing: the last preparation's error, or that none ran.
pub fn why_missing(layout: &Layout) -> String {
    let dir = &layout.tls_postgres;
    match fs::read_to_string(dir.join(FAILED)) {
        Ok(reason) => format!("preparing it under {} failed: {reason}", dir.display()),
        Err(_) => format!(
            "nothing under {} (cargo xtask services up prepares it)",
            dir.display()
        ),
    }
}

/// [`ensure`] for `services up`: a failure (no apt-get, no Debian registry) is recorded for
/// the TLS tests, which then fail saying why, and does not stop the servers the rest need.
pub fn prepare(layout: &Layout) {
    if let Err(err) = ensure(layout) {
        let reason = format!("{err:#}");
        println!("warning: no PostgreSQL for the TLS tests: {reason}");
        let _ = fs::create_dir_all(&layout.tls_postgres);
        let _ = fs::write(layout.tls_postgres.join(FAILED), reason);
    }
}

fn stamp() -> String {
    format!("{} + pgvector {PGVECTOR_VERSION}", PACKAGES.join(" "))
}

/// Unpacks PostgreSQL 15 and builds pgvector into it unless that is already done.
fn ensure(layout: &Layout) -> Result<PathBuf> {
    if let Some(bin) = existing(layout) {
        return Ok(bin);
    }
    let started = Instant::now();
    let dir = &layout.tls_postgres;
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    let debs = dir.join("debs");
    let root = dir.join("root");
    fs::create_dir_all(&debs)?;
    fs::create_dir_all(&root)?;

    download_packages(&debs)?;
    for entry in fs::read_dir(&debs)? {
        let deb = entry?.path();
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))
            .with_context(|| format!("unpacking {}", deb.display()))?;
    }
    let bin = bin_dir(dir);
    if !bin.join("postgres").exists() || !bin.join("pg_config").exists() {
        bail!("the unpacked packages hold no {}", bin.display());
    }
    build_pgvector(dir, &bin.join("pg_config"))?;
    fs::write(dir.join(READY), stamp())?;
    println!(
        "PostgreSQL 15 with TLS and pgvector {PGVECTOR_VERSION} ready under {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(bin)
}

/// `apt-get download` fetches the current versions into `debs`; the package lists are
/// refreshed once if they are missing or stale.
fn download_packages(debs: &Path) -> Result<()> {
    let download = || {
        // As root, apt would hand the download to its `_apt` user, who cannot write here.
        run(Command::new("apt-get")
            .args(["-o", "APT::Sandbox::User=root", "download"])
            .args(PACKAGES)
            .current_dir(debs))
    };
    if download().is_ok() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-q"]))
        .context("apt-get update failed (Debian's package registry must be reachable)")?;
    download().context("apt-get download of PostgreSQL 15's packages failed")
}

fn build_pgvector(dir: &Path, pg_config: &Path) -> Result<()> {
    let tarball = dir.join(format!("pgvector_{PGVECTOR_VERSION}.orig.tar.gz"));
    run(Command::new("curl")
        .args(["-fsSL", "--retry", "3", "-o"])
        .arg(&tarball)
        .arg(PGVECTOR_URL))
    .context("downloading pgvector's source from Debian failed")?;
    let digest = capture(Command::new("sha256sum").arg(&tarball))?;
    if digest.split_whitespace().next() != Some(PGVECTOR_SHA256) {
        bail!(
            "{} has digest {digest}, not the pinned {PGVECTOR_SHA256}",
            tarball.display()
        );
    }
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir))?;
    let source = dir.join(format!("pgvector-{PGVECTOR_VERSION}"));
    let pg_config_arg = format!("PG_CONFIG={}", pg_config.display());
    // No LLVM bitcode (clang is not needed) and no -march=native (the tree may move machines).
    let make = |target: Option<&str>| {
        let mut cmd = Command::new("make");
        cmd.current_dir(&source)
            .args(["-j2", "with_llvm=no", "OPTFLAGS="])
            .arg(&pg_config_arg)
            .args(target);
        println!("$ {}", crate::process::describe(&cmd));
        capture(&mut cmd).map(|_| ())
    };
    make(None).context("building pgvector failed")?;
    make(Some("install")).context("installing pgvector into the unpacked tree failed")
}
