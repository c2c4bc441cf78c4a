//! The `vectorgate` binary against the real PostgreSQL and Milvus servers.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::{Fixture, DIM};
use vectorgate_domain::outbox::Outbox;
use vectorgate_domain::{DeleteRequest, Embedding, ScanFilter, VectorRecord, VectorStoreGateway};
use vectorgate_testkit::{chunk, generate_records, milvus_tests_enabled, DataShape};

/// `rows` deterministic records over 2 tenants x 3 projects with chunk ids `2, 4, 6, ...`
/// (even ids leave gaps in which rows only Milvus has can hide).
fn records(rows: usize, seed: u64) -> Vec<VectorRecord> {
    generate_records(
        DataShape {
            rows,
            dim: DIM as usize,
            tenants: 2,
            projects_per_tenant: 3,
            seed,
        },
        0,
    )
    .into_iter()
    .map(|mut r| {
        r.chunk_id = chunk((r.chunk_id.get() + 1) * 2);
        r
    })
    .collect()
}

fn ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

/// Every id and vector Milvus holds, read behind the CLI's back.
fn milvus_rows(fx: &Fixture) -> Vec<VectorRecord> {
    let milvus = fx.milvus();
    fx.runtime
        .block_on(milvus.scan_range(ScanFilter::all(), chunk(0), chunk(i64::MAX), true))
        .unwrap()
        .into_iter()
        .map(|r| r.into_record().unwrap())
        .collect()
}

#[test]
fn a_bad_variable_is_one_error_line_naming_it() {
    let fx = Fixture::new("cli_badvar", false);
    let run = fx.run_with("pgvector", &["health"], &[("EMBEDDING_DIM", "abc")]);
    run.exit(2);
    let line = run.error_line();
    assert!(
        line.contains("EMBEDDING_DIM") && line.contains("abc"),
        "{line}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");

    let run = fx.run("sideways", &["health"]);
    run.exit(2);
    assert!(run.error_line().contains("VECTOR_STORE_MODE"), "{run:#?}");
}

#[test]
fn health_in_pgvector_mode_ignores_milvus_and_reports_the_table() {
    let fx = Fixture::new("cli_health_pg", false);
    // Before anything created the table: unhealthy, and the reason names it.
    let run = fx.run("pgvector", &["health"]);
    run.exit(1);
    assert!(run.error_line().contains(&fx.name), "{run:#?}");

    fx.load_pgvector(&records(30, 1));
    // Milvus unreachable on purpose: pgvector mode never contacts it.
    let run = fx.run_with("pgvector", &["health", "--json"], &[("MILVUS_PORT", "1")]);
    run.success();
    let report = run.json();
    assert_eq!(report["healthy"], true);
    let stores = report["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 1, "{report}");
    assert_eq!(stores[0]["store"], "pgvector");
    assert_eq!(stores[0]["collection"]["dimension"], DIM);
    assert_eq!(stores[0]["collection"]["row_count"], 30);
    // An HNSW index on a pgvector with known HNSW races is a warning, not a failure.
    let version = stores[0]["server_version"].as_str().unwrap();
    let pgvector: Vec<u32> = version
        .rsplit("pgvector ")
        .next()
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    let warnings = stores[0]["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if pgvector < vec![0, 8, 4] {
        assert_eq!(warnings.len(), 1, "{report}");
        assert!(warnings[0].as_str().unwrap().contains("0.8.4"), "{report}");
        let run = fx.run_with("pgvector", &["health"], &[("MILVUS_PORT", "1")]);
        run.success();
        assert!(run.stdout.contains("warning    pgvector"), "{run:#?}");
    } else {
        assert!(warnings.is_empty(), "{report}");
    }
}

#[test]
fn health_fails_naming_host_and_port_when_milvus_is_down() {
    let fx = Fixture::new("cli_health_down", false);
    fx.load_pgvector(&records(10, 2));
    for mode in ["dual", "milvus"] {
        let run = fx.run_with(mode, &["health"], &[("MILVUS_PORT", "1")]);
        assert_ne!(run.code, Some(0), "{run:#?}");
        let line = run.error_line();
        assert!(line.contains("127.0.0.1:1"), "{mode}: {line}");
        assert!(line.contains("milvus"), "{mode}: {line}");
    }
    // --store names the store to check whatever the mode.
    let run = fx.run_with(
        "pgvector",
        &["health", "--store", "milvus"],
        &[("MILVUS_PORT", "1")],
    );
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(run.error_line().contains("127.0.0.1:1"));
}

#[test]
fn health_with_both_stores_up() {
    if !milvus_tests_enabled("health_with_both_stores_up") {
        return;
    }
    let fx = Fixture::new("cli_health_up", true);
    fx.load_pgvector(&records(50, 3));
    let backfill = fx.run("dual", &["backfill"]);
    backfill.success();
    // A backfill ends flushed, with the collection's index covering every row.
    assert!(
        backfill.stderr.contains("flushed and indexed"),
        "{backfill:#?}"
    );
    let run = fx.run("dual", &["health", "--json"]);
    run.success();
    let report = run.json();
    let stores = report["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 2, "{report}");
    let milvus = &stores[1];
    assert_eq!(milvus["store"], "milvus");
    assert_eq!(milvus["collection"]["exists"], true);
    assert_eq!(milvus["collection"]["indexed_rows"], 50, "{report}");
    assert_eq!(milvus["collection"]["row_count"], 50, "{report}");
    assert_eq!(milvus["collection"]["dimension"], DIM);
    assert!(milvus["server_version"].as_str().is_some());
    // The text form too.
    let run = fx.run("dual", &["health"]);
    run.success();
    assert!(run.stdout.contains("mode dual: healthy"), "{run:#?}");
}

#[test]
fn import_rejects_a_wrong_dimension_and_stores_nothing() {
    let fx = Fixture::new("cli_import_dim", false);
    let mut rows = records(5, 4);
    rows[3].embedding = Embedding::new(vec![0.5; DIM as usize + 1]).unwrap();
    let path = fx.jsonl("bad.jsonl", &rows);
    let run = fx.run(
        "pgvector",
        &["import", "--batch", "10", "--file", path.to_str().unwrap()],
    );
    run.exit(2);
    let line = run.error_line();
    assert!(
        line.contains("dimension mismatch") && line.contains('9'),
        "{line}"
    );
    let pg = fx.pgvector();
    let stored = fx.runtime.block_on(pg.count(ScanFilter::all())).unwrap();
    assert_eq!(stored, 0, "a rejected batch writes nothing");
}

#[test]
fn search_finds_a_chunk_by_its_own_vector_within_the_tenant() {
    let fx = Fixture::new("cli_search", false);
    let rows = records(300, 5);
    fx.load_pgvector(&rows);
    let target = &rows[7];
    let like = target.chunk_id.to_string();
    let tenant = target.tenant_id.to_string();
    let run = fx.run(
        "pgvector",
        &[
            "search", "--tenant", &tenant, "--like", &like, "-k", "5", "--json",
        ],
    );
    run.success();
    let hits = run.json()["hits"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 5);
    assert_eq!(hits[0]["chunk_id"], target.chunk_id.get());
    let in_tenant: BTreeSet<i64> = rows
        .iter()
        .filter(|r| r.tenant_id == target.tenant_id)
        .map(|r| r.chunk_id.get())
        .collect();
    assert!(hits
        .iter()
        .all(|h| in_tenant.contains(&h["chunk_id"].as_i64().unwrap())));

    // A vector file and a project filter.
    let query = fx.jsonl("query.json", &[]);
    std::fs::write(
        &query,
        serde_json::to_string(target.embedding.as_slice()).unwrap(),
    )
    .unwrap();
    let project = target.project_id.to_string();
    let run = fx.run(
        "pgvector",
        &[
            "search",
            "--tenant",
            &tenant,
            "--project",
            &project,
            "--vector-file",
            query.to_str().unwrap(),
            "-k",
            "3",
        ],
    );
    run.success();
    assert!(run.stdout.contains(&like), "{run:#?}");

    let run = fx.run(
        "pgvector",
        &["search", "--tenant", &tenant, "--like", "999999"],
    );
    run.exit(2);
    assert!(run.error_line().contains("999999"), "{run:#?}");

    // Another tenant's chunk is not there for this tenant: its vector must not leak.
    let other = rows
        .iter()
        .find(|r| r.tenant_id != target.tenant_id)
        .unwrap()
        .chunk_id
        .to_string();
    let run = fx.run(
        "pgvector",
        &["search", "--tenant", &tenant, "--like", &other],
    );
    run.exit(2);
    assert!(
        run.error_line()
            .contains(&format!("chunk {other} of tenant {tenant} is not stored")),
        "{run:#?}"
    );
}

#[test]
fn plan_shows_whether_a_scope_is_searched_exactly_or_through_the_vector_index() {
    let fx = Fixture::new("cli_plan", false);
    let data = records(400, 5);
    fx.load_pgvector(&data);
    let tenant = data[0].tenant_id;
    let in_tenant = data.iter().filter(|r| r.tenant_id == tenant).count() as u64;
    let project = data[0].project_id;
    let in_project = data
        .iter()
        .filter(|r| r.tenant_id == tenant && r.project_id == project)
        .count() as u64;
    let (tenant, project) = (tenant.to_string(), project.to_string());

    // Small scopes are searched exactly: the count and the threshold say why.
    let run = fx.run("pgvector", &["plan", "--tenant", &tenant, "--json"]);
    run.success();
    let report = run.json();
    assert_eq!(report["plan"], "exact", "{report}");
    assert_eq!(report["rows_counted"], in_tenant, "{report}");
    assert_eq!(report["vector_index"], serde_json::Value::Null, "{report}");
    let run = fx.run(
        "pgvector",
        &["plan", "--tenant", &tenant, "--project", &project, "--json"],
    );
    assert_eq!(run.json()["rows_counted"], in_project);

    // Above the threshold the vector index is forced, and PostgreSQL's plan scans it.
    let run = fx.run_with(
        "pgvector",
        &["plan", "--tenant", &tenant, "--project", &project],
        &[("PGVECTOR_EXACT_SEARCH_MAX_ROWS", "10")],
    );
    run.success();
    assert!(
        run.stdout.contains(
            "vector index: the scope holds more than PGVECTOR_EXACT_SEARCH_MAX_ROWS = 10 rows"
        ),
        "{run:#?}"
    );
    assert!(run.stdout.contains("embedding_idx"), "{run:#?}");
    assert!(run.stdout.contains("'[...]'"), "{run:#?}");
}

#[test]
fn recall_compares_the_configured_search_with_exact_search_on_stored_rows() {
    let fx = Fixture::new("cli_recall", false);
    fx.load_pgvector(&records(400, 9));
    // Scopes this small are searched exactly by default: nothing can be missed.
    let run = fx.run(
        "pgvector",
        &["recall", "--samples", "25", "--min-recall", "1", "--json"],
    );
    run.success();
    let report = run.json();
    assert_eq!(report["store"], "pgvector");
    assert_eq!(report["samples"], 25);
    assert_eq!(report["mean_recall"], 1.0, "{report}");
    assert_eq!(report["lowest_recall"], 1.0, "{report}");

    // Through the HNSW index at the least effort: whatever it finds, the exit code says
    // whether the mean met --min-recall, and the figures agree with each other.
    let run = fx.run_with(
        "pgvector",
        &[
            "recall",
            "--samples",
            "25",
            "--min-recall",
            "0.999",
            "--json",
        ],
        &[
            ("PGVECTOR_EXACT_SEARCH_MAX_ROWS", "0"),
            ("PGVECTOR_HNSW_EF_SEARCH", "1"),
        ],
    );
    let report = run.json();
    let (mean, lowest) = (
        report["mean_recall"].as_f64().unwrap(),
        report["lowest_recall"].as_f64().unwrap(),
    );
    assert!(
        (0.0..=1.0).contains(&lowest) && lowest <= mean && mean <= 1.0,
        "{report}"
    );
    assert_eq!(report["ok"], mean >= 0.999, "{report}");
    run.exit(if mean >= 0.999 { 0 } else { 1 });

    // An empty store has nothing to sample: one error line saying so.
    let empty = Fixture::new("cli_recall_empty", false);
    empty.run("pgvector", &["init"]).success();
    let run = empty.run("pgvector", &["recall"]);
    run.exit(2);
    assert!(run.error_line().contains("no rows to sample"), "{run:#?}");
}

#[test]
fn recall_in_milvus_mode_is_exact_when_every_list_is_probed() {
    if !milvus_tests_enabled("recall_in_milvus_mode_is_exact_when_every_list_is_probed") {
        return;
    }
    let fx = Fixture::new("cli_recall_milvus", true);
    // Every list probed: the IVF index searches exactly.
    let exact = [("MILVUS_INDEX_NLIST", "16"), ("MILVUS_SEARCH_NPROBE", "16")];
    let path = fx.jsonl("rows.jsonl", &records(300, 11));
    fx.run_with(
        "milvus",
        &["import", "--file", path.to_str().unwrap()],
        &exact,
    )
    .success();
    let run = fx.run_with(
        "milvus",
        &["recall", "--samples", "20", "--min-recall", "1", "--json"],
        &exact,
    );
    run.success();
    let report = run.json();
    assert_eq!(report["store"], "Milvus");
    assert_eq!(report["samples"], 20);
    assert_eq!(report["mean_recall"], 1.0, "{report}");
}

#[test]
fn import_refuses_to_move_a_chunk_to_another_tenant_and_stores_nothing() {
    let fx = Fixture::new("cli_import_tenant", false);
    let rows = records(6, 8);
    fx.load_pgvector(&rows);
    let mut moved = records(3, 9);
    for (i, r) in moved.iter_mut().enumerate() {
        r.chunk_id = vectorgate_domain::ChunkId::new(10_000 + i as i64).unwrap();
    }
    let mut taken = rows[0].clone();
    taken.tenant_id = vectorgate_domain::TenantId::new(taken.tenant_id.get() + 100).unwrap();
    moved.push(taken.clone());
    let path = fx.jsonl("moved.jsonl", &moved);
    let run = fx.run("pgvector", &["import", "--file", path.to_str().unwrap()]);
    run.exit(2);
    let line = run.error_line();
    assert!(
        line.contains(&format!(
            "chunk {} belongs to tenant {}, not {}",
            taken.chunk_id, rows[0].tenant_id, taken.tenant_id
        )),
        "{line}"
    );
    let pg = fx.pgvector();
    let stored = fx.runtime.block_on(pg.count(ScanFilter::all())).unwrap();
    assert_eq!(
        stored,
        rows.len() as u64,
        "nothing of the import was written"
    );
}

#[test]
fn collection_recreate_and_drop_refuse_without_yes() {
    if !milvus_tests_enabled("collection_recreate_and_drop_refuse_without_yes") {
        return;
    }
    let fx = Fixture::new("cli_coll", true);
    let rows = records(40, 6);
    fx.load_pgvector(&rows);
    fx.run("dual", &["backfill"]).success();
    for action in ["recreate", "drop"] {
        let run = fx.run("dual", &["collection", action]);
        assert_ne!(run.code, Some(0), "{run:#?}");
        assert!(run.error_line().contains("--yes"), "{run:#?}");
        assert_eq!(
            milvus_rows(&fx),
            rows,
            "{action} without --yes changed Milvus"
        );
    }
    // With --yes: recreated empty, with the configured schema.
    fx.run("dual", &["collection", "recreate", "--yes"])
        .success();
    assert!(milvus_rows(&fx).is_empty());
    fx.run("dual", &["health"]).success();
    fx.run("dual", &["collection", "drop", "--yes"]).success();
    let run = fx.run("dual", &["health"]);
    run.exit(1);
    assert!(run.error_line().contains("does not exist"), "{run:#?}");
}

#[test]
fn backfill_killed_midway_resumes_to_exactly_pgvectors_rows() {
    if !milvus_tests_enabled("backfill_killed_midway_resumes_to_exactly_pgvectors_rows") {
        return;
    }
    let fx = Fixture::new("cli_backfill", true);
    let rows = records(6000, 7);
    fx.load_pgvector(&rows);

    let mut child = fx
        .command("dual", &["backfill", "--batch", "25"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stderr is a pipe, not a terminal: one plain line per committed batch.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut batches = 0;
    while batches < 3 {
        let line = lines.next().expect("backfill ended early").unwrap();
        if line.starts_with("backfill: batch") {
            batches += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let copied = milvus_rows(&fx).len();
    assert!(
        (75..rows.len()).contains(&copied),
        "killed after 3 batches of 25, Milvus has {copied} rows"
    );

    let run = fx.run("dual", &["backfill", "--batch", "500", "--resume"]);
    run.success();
    assert!(
        run.stderr.contains("resuming all tenants after chunk_id"),
        "{run:#?}"
    );
    let this_run: usize = run
        .stdout
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row count in {run:#?}"));
    assert!(
        this_run < rows.len(),
        "the resumed run started over: {run:#?}"
    );
    assert!(
        run.stdout
            .contains(&format!("{} rows in total", rows.len())),
        "{run:#?}"
    );
    assert_eq!(
        milvus_rows(&fx),
        rows,
        "Milvus must hold exactly pgvector's rows"
    );

    // Without --resume it starts over (idempotent upserts), and still ends equal.
    let run = fx.run("dual", &["backfill", "--tenant", "2", "--batch", "1000"]);
    run.success();
    let tenant2 = rows.iter().filter(|r| r.tenant_id.get() == 2).count();
    assert!(
        run.stdout
            .starts_with(&format!("backfill done: {tenant2} rows copied")),
        "{run:#?}"
    );
    assert_eq!(milvus_rows(&fx), rows);
}

#[test]
fn reconcile_reports_injected_drift_exactly_and_repair_removes_it() {
    if !milvus_tests_enabled("reconcile_reports_injected_drift_exactly_and_repair_removes_it") {
        return;
    }
    let fx = Fixture::new("cli_reconcile", true);
    let rows = records(1200, 8);
    fx.load_pgvector(&rows);
    fx.run("dual", &["backfill", "--batch", "400"]).success();
    let run = fx.run("dual", &["reconcile", "--batch", "250"]);
    run.success();
    assert!(run.stdout.contains("EQUAL"), "{run:#?}");

    // Drift behind the gateway's back, straight into Milvus.
    let milvus = fx.milvus();
    let deleted: Vec<&VectorRecord> = vec![&rows[0], &rows[500], &rows[1199]];
    let changed = &rows[42];
    let mut modified = changed.clone();
    let mut v = modified.embedding.clone().into_vec();
    v[3] += 0.01;
    modified.embedding = Embedding::new(v).unwrap();
    // One extra id in a gap between pgvector's ids, one beyond its last id.
    let extra_ids = [rows[100].chunk_id.get() + 1, 10_000_000];
    let mut extras: Vec<VectorRecord> = extra_ids
        .iter()
        .map(|id| {
            let mut r = rows[3].clone();
            r.chunk_id = chunk(*id);
            r
        })
        .collect();
    extras.push(modified.clone());
    fx.runtime.block_on(async {
        for r in &deleted {
            milvus
                .delete_vectors(&DeleteRequest::chunks(r.tenant_id, [r.chunk_id]))
                .await
                .unwrap();
        }
        milvus.upsert_vectors(&extras).await.unwrap();
    });

    let run = fx.run("dual", &["reconcile", "--json", "--batch", "250"]);
    run.exit(1);
    assert!(run.error_line().contains("drift remains"), "{run:#?}");
    let report = run.json();
    assert_eq!(report["equal"], false);
    let before = &report["before"];
    let totals = &before["totals"];
    assert_eq!(totals["pgvector_rows"], 1200);
    assert_eq!(totals["milvus_rows"], 1200 - 3 + 2);
    assert_eq!(totals["missing_in_milvus"], 3);
    assert_eq!(totals["only_in_milvus"], 2);
    assert_eq!(totals["differing"], 1);
    let mut missing = Vec::new();
    let mut only = Vec::new();
    let mut differing = Vec::new();
    for group in before["groups"].as_array().unwrap() {
        missing.extend(ids(&group["missing_in_milvus"]));
        only.extend(ids(&group["only_in_milvus"]));
        for d in group["differing"].as_array().unwrap() {
            differing.push(d["chunk_id"].as_i64().unwrap());
            assert_eq!(d["kind"], "vector");
            let diff = d["max_abs_diff"].as_f64().unwrap();
            assert!((diff - 0.01).abs() < 1e-4, "{d}");
            assert_eq!(group["tenant_id"], changed.tenant_id.get());
        }
    }
    missing.sort();
    only.sort();
    let expected_missing: Vec<i64> = deleted.iter().map(|r| r.chunk_id.get()).collect();
    assert_eq!(missing, expected_missing);
    assert_eq!(only, extra_ids.to_vec());
    assert_eq!(differing, vec![changed.chunk_id.get()]);

    // A tenant filter sees only that tenant's drift.
    let tenant = deleted[0].tenant_id.to_string();
    let run = fx.run("dual", &["reconcile", "--json", "--tenant", &tenant]);
    run.exit(1);
    for group in run.json()["before"]["groups"].as_array().unwrap() {
        assert_eq!(group["tenant_id"].to_string(), tenant);
    }

    // Repair, verified by the command's own second comparison.
    let run = fx.run(
        "dual",
        &["reconcile", "--repair", "--json", "--batch", "250"],
    );
    run.success();
    let report = run.json();
    assert_eq!(report["equal"], true);
    // Every drifted id went to the relay: missing and changed ones were copied from
    // pgvector, the Milvus-only ones removed.
    let replayed = ids(&report["repair"]["replayed"]);
    let mut expected = expected_missing.clone();
    expected.push(changed.chunk_id.get());
    expected.extend(extra_ids.iter().copied());
    expected.sort();
    assert_eq!(replayed, expected);
    assert_eq!(
        report["repair"]["upserted"],
        expected_missing.len() as u64 + 1
    );
    assert_eq!(report["repair"]["deleted"], extra_ids.len() as u64);
    assert_eq!(report["after_repair"]["equal"], true);

    // A second run finds nothing, and Milvus is exactly pgvector.
    let run = fx.run("dual", &["reconcile"]);
    run.success();
    assert!(run
        .stdout
        .contains("0 missing in Milvus, 0 only in Milvus, 0 differing: EQUAL"));
    assert_eq!(milvus_rows(&fx), rows);
}

#[test]
fn sync_replays_the_outbox_and_metrics_are_printed() {
    if !milvus_tests_enabled("sync_replays_the_outbox_and_metrics_are_printed") {
        return;
    }
    let fx = Fixture::new("cli_sync", true);
    let rows = records(30, 9);
    let (first, rest) = rows.split_at(20);
    fx.load_pgvector(first);
    fx.run("dual", &["backfill"]).success();

    // A dual writer that died after pgvector committed and before Milvus was written:
    // the rows are in pgvector only, its intent is in the outbox.
    let path = fx.jsonl("rest.jsonl", rest);
    fx.run("pgvector", &["import", "--file", path.to_str().unwrap()])
        .success();
    let pg = fx.pgvector();
    fx.runtime.block_on(async {
        let outbox = pg.outbox(&fx.outbox()).unwrap();
        outbox.bootstrap().await.unwrap();
        let ids: Vec<_> = rest.iter().map(|r| r.chunk_id).collect();
        outbox.record(&ids, Duration::ZERO).await.unwrap();
    });
    assert_eq!(milvus_rows(&fx).len(), first.len());

    let run = fx.run("dual", &["sync", "--json"]);
    run.success();
    let report = run.json();
    assert_eq!(report["entries_replayed"], rest.len(), "{report}");
    assert_eq!(report["upserted"], rest.len(), "{report}");
    assert_eq!(report["remaining"], 0, "{report}");
    assert_eq!(milvus_rows(&fx), rows);

    // Nothing left: a second sync replays nothing. Text output names the counts.
    let run = fx.run("dual", &["sync"]);
    run.success();
    assert!(
        run.stdout.contains("sync: 0 outbox entries replayed"),
        "{run:#?}"
    );

    let run = fx.run("dual", &["--metrics", "backfill"]);
    run.success();
    assert!(
        run.stdout
            .contains(&format!("vectorgate_backfill_rows_total {}", rows.len())),
        "{run:#?}"
    );
}

/// Processes starting together against empty stores (replicas of a service rolling out,
/// operators running tools): every one starts. Four imports, a sync and three inits in dual
/// mode race to create the table, its indexes, the outbox, the state table and the
/// collection; `CREATE ... IF NOT EXISTS` alone collides in PostgreSQL's catalog.
#[test]
fn eight_processes_starting_at_once_against_empty_stores_all_start() {
    if !milvus_tests_enabled("eight_processes_starting_at_once_against_empty_stores_all_start") {
        return;
    }
    let fx = Fixture::new("cli_rollout", true);
    let rows = records(400, 21);
    let files: Vec<_> = rows
        .chunks(100)
        .enumerate()
        .map(|(i, part)| fx.jsonl(&format!("part{i}.jsonl"), part))
        .collect();
    let mut commands: Vec<(String, std::process::Command)> = files
        .iter()
        .map(|f| {
            (
                "import".to_string(),
                fx.command("dual", &["import", "--file", f.to_str().unwrap()]),
            )
        })
        .collect();
    commands.push(("sync".into(), fx.command("dual", &["sync"])));
    for _ in 0..3 {
        commands.push(("init".into(), fx.command("dual", &["init"])));
    }
    let children: Vec<_> = commands
        .into_iter()
        .map(|(what, mut cmd)| {
            (
                what,
                cmd.stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("the vectorgate binary starts"),
            )
        })
        .collect();
    for (what, child) in children {
        let run = support::Run::from(child.wait_with_output().unwrap(), &[&what]);
        assert!(
            !run.stderr.contains("duplicate key"),
            "{what} collided in the catalog: {run:#?}"
        );
        match what.as_str() {
            // sync may find writes still in flight (exit 1), never fail to run (exit 2).
            "sync" => assert!(matches!(run.code, Some(0 | 1)), "{run:#?}"),
            _ => {
                run.success();
            }
        }
    }
    fx.run("dual", &["sync"]).success();
    let run = fx.run("dual", &["reconcile"]);
    run.success();
    assert_eq!(milvus_rows(&fx).len(), rows.len());
}

/// Dual-mode health shows the outbox, and exits 1 when Milvus trails pgvector by more than
/// DUAL_MAX_LAG_MS; `vectorgate relay` replays it in the background and stops cleanly on
/// SIGTERM.
#[test]
fn health_reports_the_outbox_lag_and_the_relay_worker_drains_it() {
    if !milvus_tests_enabled("health_reports_the_outbox_lag_and_the_relay_worker_drains_it") {
        return;
    }
    let fx = Fixture::new("cli_relay", true);
    let rows = records(40, 5);
    fx.load_pgvector(&rows);
    fx.run("dual", &["init"]).success();
    // Ids Milvus lacks, as after writes it missed: their entries wait for a relay.
    let pg = fx.pgvector();
    fx.runtime.block_on(async {
        let outbox = pg.outbox(&fx.outbox()).unwrap();
        let ids: Vec<_> = rows.iter().map(|r| r.chunk_id).collect();
        outbox.enqueue(&ids).await.unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    let run = fx.run_with("dual", &["health", "--json"], &[("DUAL_MAX_LAG_MS", "1")]);
    run.exit(1);
    let report = run.json();
    assert_eq!(report["outbox"]["depth"], 40, "{report}");
    assert!(
        report["outbox"]["problem"]
            .as_str()
            .unwrap()
            .contains("DUAL_MAX_LAG_MS=1"),
        "{report}"
    );
    let run = fx.run_with("dual", &["health"], &[("DUAL_MAX_LAG_MS", "1")]);
    assert!(run.error_line().contains("behind pgvector"), "{run:#?}");
    fx.run("dual", &["health"]).success();

    // The relay worker replays them, then stops on SIGTERM.
    let relay = fx
        .command("dual", &["relay"])
        .env("DUAL_RELAY_INTERVAL_MS", "100")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while milvus_rows(&fx).len() < rows.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay did not replay"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = relay.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("relay stopped: 0 ids pending"), "{stdout}");
    assert_eq!(milvus_rows(&fx), rows);
}
