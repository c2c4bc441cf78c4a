//! `cargo xtask demo`: the migration story end to end with the `vectorgate` binary against
//! real servers: load a corpus in pgvector mode, search, backfill Milvus, reconcile, search
//! through Milvus and compare with pgvector, health, roll back to pgvector.
//!
//! Every step runs the CLI as a user would (a child process with the step's environment)
//! and checks what it printed; the demo fails when any result is wrong. Kept to std +
//! serde_json like the rest of xtask: the CLI does the database work.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::layout::Layout;
use crate::process::{cargo, describe, run};
use crate::services::{self, Ports, Settings};
use crate::steps::{with_services, Steps};

/// The corpus: 2 tenants x 3 projects, 10,000 chunks of dimension 128 (768 works too, but
/// the demo is meant to finish in a few minutes on a 2-core CI machine).
mod corpus;

use corpus::Corpus;

const TENANTS: i64 = 2;
const PROJECTS: i64 = 3;
const CHUNKS: i64 = 10_000;
const DIM: usize = 128;
/// Chunks re-written in dual mode after the backfill (ids 1..=60 get new vectors; updates
/// rather than new ids keep a rerun of the demo on the same table exact).
const DUAL_WRITES: i64 = 60;
/// Topics per project: chunks are noisy copies of a topic, so queries have clear neighbours.
const TOPICS: usize = 8;
const SEED: u64 = 7;
const TOP_K: usize = 10;
/// The demo's own table and collection, so that it never touches `knowledge_chunks` of an
/// existing installation used with `--external`.
const OBJECT: &str = "vectorgate_demo";

#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    pub external: bool,
    pub keep: bool,
    pub ports: Ports,
}

pub fn demo(layout: &Layout, options: DemoOptions) -> Result<()> {
    let mut steps = Steps::new("demo");
    if options.keep && !options.external {
        // Like `with_services`, but the servers stay up for the user to explore.
        let mut settings = None;
        steps.run("services up (kept running: --keep)", || {
            settings = Some(services::up(layout, options.ports)?);
            Ok(())
        });
        if let Some(settings) = &settings {
            story(&mut steps, layout, settings);
            println!(
                "\nservices kept running; settings in {} (stop them with `cargo xtask services down`)",
                layout.env_file.display()
            );
        }
    } else {
        with_services(
            &mut steps,
            layout,
            options.external,
            options.ports,
            |steps, settings| story(steps, layout, settings),
        );
    }
    steps.finish()
}

/// The steps after the services are up.
fn story(steps: &mut Steps, layout: &Layout, settings: &Settings) {
    let demo_dir = layout.target.join("demo");
    let bin = cli_binary(layout);
    let cli = Cli {
        bin: bin.clone(),
        settings: settings.clone(),
    };
    if !steps.run("build the CLI (cargo build -p vectorgate-cli)", || {
        run(cargo().args(["build", "-p", "vectorgate-cli"]))
    }) {
        return;
    }
    let mut corpus = None;
    if !steps.run("generate the corpus", || {
        let c = Corpus::generate();
        c.write(&demo_dir)?;
        println!(
            "{} chunks, {TENANTS} tenants x {PROJECTS} projects, dimension {DIM}, seed {SEED} \
             -> {}",
            c.records.len(),
            demo_dir.join("corpus.jsonl").display()
        );
        corpus = Some(c);
        Ok(())
    }) {
        return;
    }
    let corpus = corpus.expect("set by the step");
    let corpus_file = demo_dir.join("corpus.jsonl");
    let dual_file = demo_dir.join("dual-writes.jsonl");
    let pg = Mode::Pgvector;
    let dual = Mode::Dual { read_milvus: false };
    let dual_milvus = Mode::Dual { read_milvus: true };

    let ok = steps.run(
        "start clean: drop the demo collection left by an earlier run",
        || {
            let out = cli.run(dual, &["collection", "drop", "--yes"], &[])?;
            out.expect_exit(0)?;
            out.show();
            Ok(())
        },
    ) && steps.run(
        "pgvector mode: import the corpus (the schema is created)",
        || {
            let file = corpus_file.to_string_lossy().into_owned();
            let out = cli.run(pg, &["import", "--file", &file], &[])?;
            out.expect_exit(0)?;
            out.show();
            ensure!(
                out.stdout.contains(&format!("imported {CHUNKS} records")),
                "expected {CHUNKS} records imported"
            );
            Ok(())
        },
    ) && steps.run("pgvector mode: search", || {
        search_checks(&cli, pg, &corpus, &demo_dir)
    }) && steps.run("dual mode: backfill pgvector -> Milvus", || {
        let out = cli.run(dual, &["backfill", "--batch", "1000"], &[])?;
        out.expect_exit(0)?;
        out.show();
        ensure!(
            out.stdout.contains(&format!("{CHUNKS} rows in total")),
            "expected {CHUNKS} rows copied"
        );
        Ok(())
    }) && steps.run("dual mode: reconcile shows zero drift", || {
        reconcile_equal(&cli, dual, CHUNKS)
    }) && steps.run("dual mode: updates reach both stores", || {
        corpus.write_dual_writes(&dual_file)?;
        let file = dual_file.to_string_lossy().into_owned();
        let out = cli.run(dual, &["import", "--file", &file], &[])?;
        out.expect_exit(0)?;
        out.show();
        ensure!(
            out.stdout
                .contains(&format!("imported {DUAL_WRITES} records")),
            "expected {DUAL_WRITES} records written"
        );
        // Reconcile compares vectors too: a stale Milvus copy would show as differing.
        reconcile_equal(&cli, dual, CHUNKS)
    }) && steps.run(
        "dual mode: searches through Milvus (DUAL_READ_FROM=milvus) match pgvector",
        || compare_stores(&cli, dual, dual_milvus, &demo_dir),
    ) && steps.run("dual mode: health", || {
        let out = cli.run(dual, &["health"], &[])?;
        out.show();
        out.expect_exit(0)
    }) && steps.run(
        "roll back to pgvector mode (Milvus unreachable on purpose): health and search",
        || {
            // Port 1 is closed: the rollback works without Milvus at all.
            let unreachable = [("MILVUS_PORT", "1")];
            let out = cli.run(pg, &["health"], &unreachable)?;
            out.show();
            out.expect_exit(0)?;
            let out = cli.run(
                pg,
                &[
                    "search", "--tenant", "2", "--like", "6", "-k", "3", "--json",
                ],
                &unreachable,
            )?;
            out.show();
            // Chunk 6 (tenant 2, project 3) is the best hit of its own vector.
            let found = hits(&out)?;
            ensure!(
                found.first() == Some(&(6, 3)),
                "chunk 6 should be the first hit of its own vector, got {found:?}"
            );
            Ok(())
        },
    );
    if !ok {
        eprintln!(
            "demo: a step failed; the CLI binary is {} and the corpus {}",
            bin.display(),
            corpus_file.display()
        );
    }
}

/// The search step in one mode: every tenant/project is searched with a topic query; the
/// hits must stay inside the scope and match an exact search of the corpus.
fn search_checks(cli: &Cli, mode: Mode, corpus: &Corpus, dir: &Path) -> Result<()> {
    let mut recalls = Vec::new();
    for (index, (tenant, project)) in groups().enumerate() {
        let query = corpus.query(index);
        let file = dir.join(format!("query-{tenant}-{project}.json"));
        fs::write(&file, serde_json::to_string(&query)?)?;
        let out = cli.search(mode, tenant, project, &file)?;
        let hits = hits(&out)?;
        ensure!(
            hits.len() == TOP_K,
            "expected {TOP_K} hits, got {}",
            hits.len()
        );
        for (chunk, hit_project) in &hits {
            let owner = corpus
                .owner
                .get(chunk)
                .with_context(|| format!("hit {chunk} is not in the corpus"))?;
            ensure!(
                *owner == (tenant, project) && *hit_project == project,
                "hit {chunk} belongs to tenant/project {owner:?}, outside the scope \
                 ({tenant}, {project})"
            );
        }
        let exact = corpus.exact_top_k(&query, tenant, project);
        let found: BTreeSet<i64> = hits.iter().map(|h| h.0).collect();
        let recall = exact.iter().filter(|id| found.contains(id)).count() as f64 / TOP_K as f64;
        recalls.push(recall);
        if index == 0 {
            println!("$ {}", out.command);
            println!(
                "  top hits: {:?}",
                hits.iter().map(|h| h.0).collect::<Vec<_>>()
            );
        }
    }
    let mean = recalls.iter().sum::<f64>() / recalls.len() as f64;
    println!(
        "{} searches (one per tenant/project): every hit inside its scope; recall@{TOP_K} \
         against exact search: mean {mean:.2}, min {:.2}",
        recalls.len(),
        recalls.iter().copied().fold(1.0, f64::min)
    );
    ensure!(
        mean >= 0.9,
        "recall@{TOP_K} {mean:.2} is below 0.9: the index settings are wrong"
    );
    Ok(())
}

/// `reconcile --json` must exit 0 and report `rows` rows in both stores and no drift.
fn reconcile_equal(cli: &Cli, mode: Mode, rows: i64) -> Result<()> {
    let out = cli.run(mode, &["reconcile", "--json"], &[])?;
    let report: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("reconcile --json printed no JSON: {}", out.stdout))?;
    let totals = &report["before"]["totals"];
    println!("$ {}", out.command);
    println!(
        "  equal: {}, pgvector rows: {}, milvus rows: {}, missing in milvus: {}, only in \
         milvus: {}, differing: {} (exit {})",
        report["equal"],
        totals["pgvector_rows"],
        totals["milvus_rows"],
        totals["missing_in_milvus"],
        totals["only_in_milvus"],
        totals["differing"],
        out.code
    );
    out.expect_exit(0)?;
    ensure!(
        report["equal"] == Value::Bool(true),
        "reconcile reports drift"
    );
    ensure!(
        totals["pgvector_rows"] == rows && totals["milvus_rows"] == rows,
        "expected {rows} rows in each store"
    );
    Ok(())
}

/// The same queries answered by pgvector and by Milvus (dual mode, `DUAL_READ_FROM`).
fn compare_stores(cli: &Cli, from_pg: Mode, from_milvus: Mode, dir: &Path) -> Result<()> {
    let mut same = 0;
    let mut total = 0;
    let mut report = Vec::new();
    for (tenant, project) in groups() {
        let file = dir.join(format!("query-{tenant}-{project}.json"));
        let a = hits(&cli.search(from_pg, tenant, project, &file)?)?;
        let out_b = cli.search(from_milvus, tenant, project, &file)?;
        let b = hits(&out_b)?;
        let read_from: Value = serde_json::from_str(&out_b.stdout)?;
        ensure!(
            read_from["read_from"] == "milvus",
            "DUAL_READ_FROM=milvus was not honoured: {}",
            read_from["read_from"]
        );
        let ids_a: Vec<i64> = a.iter().map(|h| h.0).collect();
        let ids_b: Vec<i64> = b.iter().map(|h| h.0).collect();
        let set_a: BTreeSet<i64> = ids_a.iter().copied().collect();
        let set_b: BTreeSet<i64> = ids_b.iter().copied().collect();
        total += 1;
        if set_a == set_b {
            same += 1;
        }
        report.push(format!(
            "  tenant {tenant} project {project}: pgvector {:?} | milvus {:?} {}",
            &ids_a[..3.min(ids_a.len())],
            &ids_b[..3.min(ids_b.len())],
            if set_a == set_b {
                "same top-10".to_string()
            } else {
                format!("DIFFERENT (overlap {})", set_a.intersection(&set_b).count())
            }
        ));
    }
    println!("{}", report.join("\n"));
    println!("{same}/{total} queries: pgvector and Milvus return the same top-{TOP_K} chunks");
    ensure!(
        same == total,
        "the stores disagree on {} queries",
        total - same
    );
    Ok(())
}

fn groups() -> impl Iterator<Item = (i64, i64)> {
    (1..=TENANTS).flat_map(|t| (1..=PROJECTS).map(move |p| (t, p)))
}

/// `(chunk_id, project_id)` of each hit of `search --json`.
fn hits(out: &Output) -> Result<Vec<(i64, i64)>> {
    out.expect_exit(0)?;
    let value: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("search --json printed no JSON: {}", out.stdout))?;
    value["hits"]
        .as_array()
        .context("search --json has no hits array")?
        .iter()
        .map(|h| {
            Ok((
                h["chunk_id"].as_i64().context("hit without chunk_id")?,
                h["project_id"].as_i64().context("hit without project_id")?,
            ))
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Pgvector,
    Dual { read_milvus: bool },
}

struct Cli {
    bin: PathBuf,
    settings: Settings,
}

struct Output {
    command: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn expect_exit(&self, code: i32) -> Result<()> {
        if self.code != code {
            bail!(
                "`{}` exited with {} (expected {code}): {}",
                self.command,
                self.code,
                self.stderr.trim()
            );
        }
        Ok(())
    }

    /// The command and what it printed, indented.
    fn show(&self) {
        println!("$ {}", self.command);
        for line in self.stdout.lines().chain(self.stderr.lines()) {
            println!("  {line}");
        }
    }
}

impl Cli {
    fn run(&self, mode: Mode, args: &[&str], extra_env: &[(&str, &str)]) -> Result<Output> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        for (key, value) in self.settings.pairs() {
            cmd.env(key, value);
        }
        let (mode_name, read_from) = match mode {
            Mode::Pgvector => ("pgvector", "pgvector"),
            Mode::Dual { read_milvus } => ("dual", if read_milvus { "milvus" } else { "pgvector" }),
        };
        let env = [
            ("VECTOR_STORE_MODE", mode_name),
            ("DUAL_READ_FROM", read_from),
            ("EMBEDDING_DIM", "128"),
            ("PGVECTOR_TABLE", OBJECT),
            ("MILVUS_COLLECTION", OBJECT),
            ("DUAL_OUTBOX_TABLE", "vectorgate_demo_outbox"),
            // nlist follows the corpus size (4*sqrt(rows) = 400); probing every list makes
            // Milvus's IVF_FLAT search exact, and a wide HNSW beam makes pgvector's nearly
            // so, which is what a side-by-side comparison of the stores needs.
            ("MILVUS_EXPECTED_ROWS", "10000"),
            ("MILVUS_SEARCH_NPROBE", "400"),
            ("PGVECTOR_HNSW_EF_SEARCH", "400"),
            ("RUST_LOG", "warn"),
        ];
        for (key, value) in env.iter().chain(extra_env) {
            cmd.env(key, value);
        }
        let shown_env: Vec<String> = [("VECTOR_STORE_MODE", mode_name)]
            .iter()
            .chain(
                matches!(mode, Mode::Dual { read_milvus: true })
                    .then_some(&("DUAL_READ_FROM", "milvus")),
            )
            .chain(extra_env)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let command = format!(
            "{} vectorgate {}",
            shown_env.join(" "),
            describe(Command::new("vectorgate").args(args))
                .trim_start_matches("vectorgate")
                .trim_start()
        );
        let started = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("could not start {}", self.bin.display()))?;
        let output = Output {
            command: format!("{command}   ({:.1} s)", started.elapsed().as_secs_f64()),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        Ok(output)
    }

    fn search(&self, mode: Mode, tenant: i64, project: i64, file: &Path) -> Result<Output> {
        let (t, p) = (tenant.to_string(), project.to_string());
        let file = file.to_string_lossy().into_owned();
        let k = TOP_K.to_string();
        self.run(
            mode,
            &[
                "search",
                "--tenant",
                &t,
                "--project",
                &p,
                "--vector-file",
                &file,
                "-k",
                &k,
                "--json",
            ],
            &[],
        )
    }
}

/// The CLI binary `cargo build -p vectorgate-cli` produces (honouring CARGO_TARGET_DIR).
fn cli_binary(layout: &Layout) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                layout.root.join(p)
            }
        })
        .unwrap_or_else(|| layout.target.clone());
    target.join("debug").join("vectorgate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_deterministic_and_shaped_as_announced() {
        let a = Corpus::generate();
        let b = Corpus::generate();
        assert_eq!(a.records.len(), CHUNKS as usize);
        assert_eq!(a.records[123].3, b.records[123].3);
        let groups: BTreeSet<(i64, i64)> = a.records.iter().map(|r| (r.1, r.2)).collect();
        assert_eq!(groups.len(), (TENANTS * PROJECTS) as usize);
        assert!(a.records.iter().all(|r| r.3.len() == DIM));
        let norm: f32 = a.records[0].3.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn a_topic_query_finds_its_own_group() {
        let corpus = Corpus::generate();
        let exact = corpus.exact_top_k(&corpus.query(4), 2, 2);
        assert_eq!(exact.len(), TOP_K);
        assert!(exact.iter().all(|id| corpus.owner[id] == (2, 2)));
    }
}
