//! `cargo xtask lint`: cargo-deny's dependency policy (deny.toml). Not part of `cargo xtask
//! test`: installing cargo-deny compiles it from source (minutes on 2 cores).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::layout::Layout;
use crate::process::{cargo, run, run_with_timeout};
use crate::steps::Steps;

/// The newest cargo-deny whose minimum Rust version the workspace's (1.86) satisfies.
pub const CARGO_DENY_VERSION: &str = "0.18.3";
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

fn installed_cargo_deny() -> Option<String> {
    let out = cargo()
        .args(["deny", "--version"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn lint(layout: &Layout) -> Result<()> {
    let mut steps = Steps::new("lint");
    let installed = steps.run("cargo-deny available", || {
        if let Some(version) = installed_cargo_deny() {
            println!("using {version}");
            return Ok(());
        }
        println!("cargo-deny is not installed: installing {CARGO_DENY_VERSION} from crates.io");
        run(cargo().args([
            "install",
            "--locked",
            &format!("cargo-deny@{CARGO_DENY_VERSION}"),
        ]))?;
        match installed_cargo_deny() {
            Some(_) => Ok(()),
            None => bail!("cargo-deny still not runnable after installing it"),
        }
    });
    if installed {
        steps.run("cargo deny check bans licenses sources", || {
            run(cargo()
                .current_dir(&layout.root)
                .args(["deny", "check", "--hide-inclusion-graph"])
                .args(["bans", "licenses", "sources"]))
        });
        steps.run(
            "cargo deny check advisories (when its database can be fetched)",
            || {
                let fetched = run_with_timeout(
                    cargo()
                        .current_dir(&layout.root)
                        .args(["deny", "fetch", "db"]),
                    FETCH_TIMEOUT,
                )?
                .is_some_and(|s| s.success());
                if !fetched {
                    println!(
                        "advisories NOT checked: the advisory database could not be fetched from \
                     this machine (its git host is unreachable here); run `cargo xtask lint` \
                     where it is reachable to check advisories"
                    );
                    return Ok(());
                }
                run(cargo().current_dir(&layout.root).args([
                    "deny",
                    "check",
                    "--disable-fetch",
                    "advisories",
                ]))
            },
        );
    }
    steps.finish()
}
