//! `cargo xtask test | test-milvus | bench`: steps run one after another with a header each,
//! the services started first and ALWAYS stopped last, and one summary line at the end.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::layout::Layout;
use crate::process::{cargo, run};
use crate::services::{self, Ports, Settings};
use crate::venv;

/// Set by the Ctrl-C/SIGTERM handler: the running step's child gets the signal too and
/// fails; the remaining steps are skipped, the services are still stopped.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug)]
enum Outcome {
    Ok,
    Failed,
    Skipped,
}

#[derive(Debug)]
pub struct Steps {
    command: &'static str,
    results: Vec<(String, Outcome, Duration)>,
    started: Instant,
}

impl Steps {
    pub fn new(command: &'static str) -> Self {
        Self {
            command,
            results: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Runs one step unless interrupted; whether it succeeded.
    pub fn run(&mut self, label: &str, step: impl FnOnce() -> Result<()>) -> bool {
        let always = label == STOP_LABEL;
        if INTERRUPTED.load(Ordering::SeqCst) && !always {
            println!("\n==> {label}: skipped (interrupted)");
            self.results
                .push((label.to_string(), Outcome::Skipped, Duration::ZERO));
            return false;
        }
        println!(
            "\n==> [{} {}] {label}",
            self.command,
            self.results.len() + 1
        );
        let started = Instant::now();
        let result = step();
        let took = started.elapsed();
        let outcome = match result {
            Ok(()) => {
                println!("<== {label}: ok ({:.1} s)", took.as_secs_f64());
                Outcome::Ok
            }
            Err(e) => {
                eprintln!("<== {label}: FAILED ({:.1} s)\n{e:#}", took.as_secs_f64());
                Outcome::Failed
            }
        };
        let ok = matches!(outcome, Outcome::Ok);
        self.results.push((label.to_string(), outcome, took));
        ok
    }

    /// Prints the summary line; an error when any step failed or was skipped.
    pub fn finish(self) -> Result<()> {
        let total = self.started.elapsed().as_secs_f64();
        let timings = self
            .results
            .iter()
            .map(|(label, outcome, took)| {
                let mark = match outcome {
                    Outcome::Ok => "ok",
                    Outcome::Failed => "FAILED",
                    Outcome::Skipped => "skipped",
                };
                format!("{label}: {mark} {:.0}s", took.as_secs_f64())
            })
            .collect::<Vec<_>>()
            .join("; ");
        let bad: Vec<&str> = self
            .results
            .iter()
            .filter(|(_, o, _)| !matches!(o, Outcome::Ok))
            .map(|(l, _, _)| l.as_str())
            .collect();
        println!();
        if bad.is_empty() {
            println!(
                "xtask {}: SUCCESS in {total:.0} s ({timings})",
                self.command
            );
            Ok(())
        } else {
            println!("xtask {}: FAILED in {total:.0} s ({timings})", self.command);
            bail!("{} step(s) did not succeed: {}", bad.len(), bad.join(", "))
        }
    }
}

const STOP_LABEL: &str = "services down";

/// Stops the services if a step panics (unwinding skips the explicit `services down`).
struct DownOnDrop<'a> {
    layout: &'a Layout,
    armed: bool,
}

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            eprintln!("xtask: stopping the services after an unexpected error");
            if let Err(e) = services::down(self.layout) {
                eprintln!("{e:#}");
            }
        }
    }
}

/// Runs `body` with the services' settings: started here (and always stopped afterwards),
/// or taken from the environment with `--external`.
pub fn with_services(
    steps: &mut Steps,
    layout: &Layout,
    external: bool,
    ports: Ports,
    body: impl FnOnce(&mut Steps, &Settings),
) {
    let mut settings = None;
    if external {
        steps.run("services from the environment (--external)", || {
            let s = Settings::from_env()?;
            println!("{}", s.render().trim_end());
            settings = Some(s);
            Ok(())
        });
        if let Some(s) = &settings {
            body(steps, s);
        }
        return;
    }
    let mut guard = DownOnDrop {
        layout,
        armed: true,
    };
    steps.run("services up", || {
        settings = Some(services::up(layout, ports)?);
        Ok(())
    });
    if let Some(s) = &settings {
        body(steps, s);
    }
    guard.armed = false;
    steps.run(STOP_LABEL, || services::down(layout));
}

/// The settings as environment variables of a cargo command, plus the Milvus suite's guard
/// and the `milvus-server` binary that the Milvus fault test starts a server of its own
/// with (when the venv has it; with `--external` that test needs MILVUS_SERVER_BIN set).
fn with_env<'c>(cmd: &'c mut Command, layout: &Layout, settings: &Settings) -> &'c mut Command {
    for (key, value) in settings.pairs() {
        cmd.env(key, value);
    }
    if std::env::var_os("MILVUS_SERVER_BIN").is_none() {
        if let Some(venv) = venv::existing(layout) {
            cmd.env("MILVUS_SERVER_BIN", venv.milvus_server());
        }
    }
    cmd.env("RUN_MILVUS_TESTS", "1")
}

fn nextest_installed() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo xtask test`: fmt, clippy, every test of the workspace against the real servers.
pub fn test(layout: &Layout, external: bool, ports: Ports, extra: &[String]) -> Result<()> {
    let mut steps = Steps::new("test");
    with_services(&mut steps, layout, external, ports, |steps, settings| {
        steps.run("cargo fmt --all --check", || {
            run(cargo().args(["fmt", "--all", "--check"]))
        });
        steps.run(
            "cargo clippy --workspace --all-targets -- -D warnings",
            || {
                run(cargo().args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]))
            },
        );
        if nextest_installed() {
            // nextest does not run doc tests; they run first so that nextest's summary is
            // the last word about the tests.
            steps.run("doc tests (cargo test --workspace --doc)", || {
                run(with_env(
                    cargo().args(["test", "--workspace", "--doc"]),
                    layout,
                    settings,
                ))
            });
            steps.run("tests (cargo nextest run --workspace)", || {
                run(with_env(
                    cargo()
                        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                        .args(extra),
                    layout,
                    settings,
                ))
            });
        } else {
            steps.run("tests (cargo test --workspace)", || {
                run(with_env(
                    cargo()
                        .args(["test", "--workspace", "--no-fail-fast"])
                        .args(extra),
                    layout,
                    settings,
                ))
            });
        }
    });
    steps.finish()
}

/// The guarded Milvus integration suite: the integration-test targets (tests/*.rs) of the
/// Milvus adapter, against the real server.
pub const MILVUS_PACKAGE: &str = "vectorgate-adapter-milvus";

pub fn test_milvus(layout: &Layout, external: bool, ports: Ports, extra: &[String]) -> Result<()> {
    let mut steps = Steps::new("test-milvus");
    with_services(&mut steps, layout, external, ports, |steps, settings| {
        if nextest_installed() {
            steps.run("Milvus integration suite (cargo nextest)", || {
                run(with_env(
                    cargo()
                        .args(["nextest", "run", "-p", MILVUS_PACKAGE, "--no-fail-fast"])
                        .args(["-E", "kind(test)"])
                        .args(extra),
                    layout,
                    settings,
                ))
            });
        } else {
            steps.run("Milvus integration suite (cargo test)", || {
                run(with_env(
                    cargo()
                        .args(["test", "-p", MILVUS_PACKAGE, "--no-fail-fast"])
                        .args(["--test", "*"])
                        .args(extra),
                    layout,
                    settings,
                ))
            });
        }
    });
    steps.finish()
}

/// Above this share of the machine busy before a benchmark starts, its figures measure
/// something else too (a Milvus still compacting or collecting an earlier run's data was seen
/// to keep both cores busy while no client ran).
const BUSY_BEFORE_BENCH: f64 = 0.25;

fn report_machine_load(layout: &Layout) {
    let Some(busy) = crate::process::machine_busy(Duration::from_secs(3)) else {
        return;
    };
    println!(
        "machine busy before the benchmark: {:.0}% over 3 s",
        busy * 100.0
    );
    if busy > BUSY_BEFORE_BENCH {
        println!(
            "warning: the machine is already {:.0}% busy with no benchmark running; figures \
             will be skewed. See what runs (top); a Milvus busy with an earlier run's data \
             settles after a while, or start clean: cargo xtask services down && \
             rm -rf {} && cargo xtask services up",
            busy * 100.0,
            layout.milvus_dir.display()
        );
    }
}

/// `cargo xtask bench`: the benchmark harness (`vectorgate-bench`'s `gateway` bench target)
/// against the servers.
pub fn bench(
    layout: &Layout,
    external: bool,
    ports: Ports,
    store: &str,
    extra: &[String],
) -> Result<()> {
    let mut steps = Steps::new("bench");
    with_services(&mut steps, layout, external, ports, |steps, settings| {
        report_machine_load(layout);
        steps.run(&format!("benchmark (--store {store})"), || {
            run(with_env(
                cargo()
                    .args(["bench", "-p", "vectorgate-bench", "--bench", "gateway"])
                    .args(["--", "--store", store])
                    .args(extra),
                layout,
                settings,
            ))
        });
    });
    steps.finish()
}
