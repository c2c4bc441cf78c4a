//! `vectorgate reconcile`: compares pgvector (the source of truth) with Milvus per
//! tenant/project and, with `--repair`, makes Milvus equal to pgvector.
//!
//! Both stores are walked in chunk-id order: a page of pgvector rows `(after, end]` is
//! compared with Milvus's rows in `[previous end + 1, end]`, and the last range runs to
//! `i64::MAX`, so every Milvus row (including ones beyond pgvector's last id) falls in
//! exactly one range. Memory stays at one page plus the drift found.

use anyhow::Context as _;
use serde::Serialize;
use vectorgate_adapter_milvus::MilvusStore;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_composition::{Difference, DriftReport, SyncReport, Totals, VectorStoreFactory};
use vectorgate_domain::{ChunkId, ScanFilter, VectorRecord, VectorStoreGateway};

use crate::args::ReconcileArgs;
use crate::context::{describe_filter, Ctx};
use crate::output;
use crate::Outcome;

pub async fn run(ctx: &Ctx, args: ReconcileArgs) -> anyhow::Result<Outcome> {
    let filter = args.scope.filter()?;
    if !(args.tolerance >= 0.0 && args.tolerance.is_finite()) {
        anyhow::bail!(
            "--tolerance must be a finite number >= 0, got {}",
            args.tolerance
        );
    }
    let pg = ctx.pgvector()?;
    // Strong reads: rows another process wrote a moment ago (a backfill) must be seen.
    let milvus = ctx.milvus_strong()?;
    let batch = args.batch as usize;

    let before = compare(&pg, &milvus, filter, batch, args.tolerance).await?;
    let mut repair = None;
    let mut after = None;
    if args.repair && !before.is_equal() {
        repair = Some(repair_drift(ctx, &before).await?);
        // Verify rather than assume: the repair is judged by a fresh comparison.
        after = Some(compare(&pg, &milvus, filter, batch, args.tolerance).await?);
    }
    let final_report = after.as_ref().unwrap_or(&before);
    let equal = final_report.is_equal();
    let totals = final_report.totals();
    metrics::gauge!("vectorgate_reconcile_missing_in_milvus").set(totals.missing_in_milvus as f64);
    metrics::gauge!("vectorgate_reconcile_only_in_milvus").set(totals.only_in_milvus as f64);
    metrics::gauge!("vectorgate_reconcile_differing").set(totals.differing as f64);
    if let Some(repair) = &repair {
        metrics::counter!("vectorgate_reconcile_repaired_total", "action" => "upsert")
            .increment(repair.upserted);
        metrics::counter!("vectorgate_reconcile_repaired_total", "action" => "delete")
            .increment(repair.deleted);
    }

    if args.json {
        output::print_json(&JsonReport {
            filter: describe_filter(filter),
            tolerance: args.tolerance,
            equal,
            before: JsonDrift::from(&before),
            repair: repair.clone(),
            after_repair: after.as_ref().map(JsonDrift::from),
        })?;
    } else {
        println!(
            "reconcile {} (pgvector table {} vs Milvus {}, tolerance {})",
            describe_filter(filter),
            pg.config().table,
            ctx.milvus_target(),
            args.tolerance
        );
        print_drift(&before);
        if let Some(repair) = &repair {
            println!(
                "repair: {} ids replayed from pgvector{}: {} rows upserted into Milvus, {} \
                 Milvus-only rows deleted",
                repair.replayed.len(),
                ids_suffix(&repair.replayed),
                repair.upserted,
                repair.deleted,
            );
        }
        if let Some(after) = &after {
            println!("after repair:");
            print_drift(after);
        }
    }
    if equal {
        Ok(Outcome::Ok)
    } else {
        let t = totals;
        eprintln!(
            "error: drift remains: {} missing in Milvus, {} only in Milvus, {} differing, \
             {} rows in pgvector vs {} in Milvus{}",
            t.missing_in_milvus,
            t.only_in_milvus,
            t.differing,
            t.pgvector_rows,
            t.milvus_rows,
            if args.repair {
                ""
            } else {
                " (run with --repair to fix)"
            }
        );
        Ok(Outcome::Problem)
    }
}

/// Walks both stores by chunk-id range.
async fn compare(
    pg: &PgVectorStore,
    milvus: &MilvusStore,
    filter: ScanFilter,
    batch: usize,
    tolerance: f32,
) -> anyhow::Result<DriftReport> {
    let mut report = DriftReport::default();
    let mut after: Option<ChunkId> = None;
    let mut from = ChunkId::new(0)?;
    loop {
        let page = pg.scan(filter, after, batch).await?;
        let end = match page.last() {
            Some(record) => record.chunk_id,
            None => ChunkId::new(i64::MAX)?,
        };
        let rows = milvus.scan_range(filter, from, end, true).await?;
        let milvus_records = rows
            .into_iter()
            .map(|row| {
                let id = row.chunk_id;
                row.into_record()
                    .with_context(|| format!("Milvus returned chunk {id} without its vector"))
            })
            .collect::<anyhow::Result<Vec<VectorRecord>>>()?;
        report.compare_range(&page, &milvus_records, tolerance);
        if page.is_empty() {
            return Ok(report);
        }
        match end.get().checked_add(1) {
            Some(next) => from = ChunkId::new(next)?,
            None => return Ok(report),
        }
        after = Some(end);
    }
}

#[derive(Debug, Clone, Serialize)]
struct Repair {
    /// Ids handed to the relay: missing, differing or only in Milvus.
    replayed: Vec<ChunkId>,
    upserted: u64,
    deleted: u64,
}

/// Hands every drifted id to the relay (the one writer of replays), which copies
/// pgvector's row as it is now, or removes the id from Milvus when pgvector has none.
async fn repair_drift(ctx: &Ctx, drift: &DriftReport) -> anyhow::Result<Repair> {
    let ids = drift.ids_to_replay();
    let dual = VectorStoreFactory::build_dual(&ctx.settings.with_relay(false))
        .await
        .context("repair goes through the dual-mode outbox")?;
    let report: SyncReport = dual.replay(&ids).await.context("repair")?;
    dual.close().await.ok();
    if report.entries_failed > 0 {
        anyhow::bail!(
            "repair: the relay could not replay {} ids: {}",
            report.entries_failed,
            report.errors.join("; ")
        );
    }
    Ok(Repair {
        replayed: ids,
        upserted: report.upserted,
        deleted: report.deleted,
    })
}

fn print_drift(report: &DriftReport) {
    let rows = report.groups.iter().map(|((tenant, project), g)| {
        vec![
            tenant.to_string(),
            project.to_string(),
            g.pgvector_rows.to_string(),
            g.milvus_rows.to_string(),
            g.missing_in_milvus.len().to_string(),
            g.only_in_milvus.len().to_string(),
            g.differing.len().to_string(),
            if g.is_equal() { "ok" } else { "DRIFT" }.to_string(),
        ]
    });
    println!(
        "{}",
        output::table(
            &[
                "tenant",
                "project",
                "pgvector",
                "milvus",
                "missing in milvus",
                "only in milvus",
                "differing",
                "status",
            ],
            rows,
        )
    );
    for ((tenant, project), g) in &report.groups {
        let mut details = Vec::new();
        if !g.missing_in_milvus.is_empty() {
            details.push(format!(
                "missing in Milvus: {}",
                output::id_list(&g.missing_in_milvus, 20)
            ));
        }
        if !g.only_in_milvus.is_empty() {
            details.push(format!(
                "only in Milvus: {}",
                output::id_list(&g.only_in_milvus, 20)
            ));
        }
        if !g.differing.is_empty() {
            let described: Vec<String> = g
                .differing
                .iter()
                .map(|(id, d)| match d {
                    Difference::Vector { max_abs_diff } => {
                        format!("{id} (vector, max diff {max_abs_diff:.3e})")
                    }
                    Difference::Dimension { pgvector, milvus } => {
                        format!("{id} (dimension {pgvector} vs {milvus})")
                    }
                    Difference::Owner {
                        milvus_tenant_id,
                        milvus_project_id,
                    } => format!(
                        "{id} (Milvus has it under tenant {milvus_tenant_id} project \
                         {milvus_project_id})"
                    ),
                })
                .collect();
            details.push(format!("differing: {}", output::id_list(&described, 20)));
        }
        for detail in details {
            println!("  tenant {tenant} project {project}: {detail}");
        }
    }
    let t = report.totals();
    println!(
        "total: {} rows in pgvector, {} in Milvus; {} missing in Milvus, {} only in Milvus, \
         {} differing: {}",
        t.pgvector_rows,
        t.milvus_rows,
        t.missing_in_milvus,
        t.only_in_milvus,
        t.differing,
        if report.is_equal() { "EQUAL" } else { "DRIFT" }
    );
}

fn ids_suffix(ids: &[ChunkId]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" ({})", output::id_list(ids, 20))
    }
}

#[derive(Debug, Serialize)]
struct JsonReport {
    filter: String,
    tolerance: f32,
    /// Whether the stores are equal at the end (after the repair, when one ran).
    equal: bool,
    before: JsonDrift,
    repair: Option<Repair>,
    after_repair: Option<JsonDrift>,
}

#[derive(Debug, Serialize)]
struct JsonDrift {
    equal: bool,
    totals: Totals,
    groups: Vec<JsonGroup>,
}

#[derive(Debug, Serialize)]
struct JsonGroup {
    tenant_id: i64,
    project_id: i64,
    pgvector_rows: u64,
    milvus_rows: u64,
    missing_in_milvus: Vec<ChunkId>,
    only_in_milvus: Vec<ChunkId>,
    differing: Vec<JsonDifference>,
}

#[derive(Debug, Serialize)]
struct JsonDifference {
    chunk_id: ChunkId,
    #[serde(flatten)]
    difference: Difference,
}

impl From<&DriftReport> for JsonDrift {
    fn from(report: &DriftReport) -> Self {
        let groups = report
            .groups
            .iter()
            .map(|((tenant, project), g)| JsonGroup {
                tenant_id: tenant.get(),
                project_id: project.get(),
                pgvector_rows: g.pgvector_rows,
                milvus_rows: g.milvus_rows,
                missing_in_milvus: g.missing_in_milvus.clone(),
                only_in_milvus: g.only_in_milvus.clone(),
                differing: g
                    .differing
                    .iter()
                    .map(|(chunk_id, difference)| JsonDifference {
                        chunk_id: *chunk_id,
                        difference: *difference,
                    })
                    .collect(),
            })
            .collect();
        JsonDrift {
            equal: report.is_equal(),
            totals: report.totals(),
            groups,
        }
    }
}
