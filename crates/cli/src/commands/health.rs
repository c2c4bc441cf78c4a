//! `vectorgate health`: reachability, versions and the table/collection of each store.

use serde::Serialize;
use vectorgate_composition::VectorStoreMode;
use vectorgate_domain::outbox::Outbox;
use vectorgate_domain::{StoreHealth, StoreKind, VectorStoreGateway};

use crate::args::{HealthArgs, StoreChoice};
use crate::context::Ctx;
use crate::output;
use crate::Outcome;

#[derive(Debug, Serialize)]
struct Report {
    mode: String,
    healthy: bool,
    stores: Vec<Checked>,
    /// Dual mode: the outbox (ids Milvus may lack) and how far Milvus is behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox: Option<OutboxReport>,
}

#[derive(Debug, Serialize)]
struct OutboxReport {
    table: String,
    depth: u64,
    lag_ms: Option<u64>,
    max_lag_ms: u64,
    failed: u64,
    last_error: Option<String>,
    /// Why the outbox is not fine, when it is not.
    problem: Option<String>,
}

#[derive(Debug, Serialize)]
struct Checked {
    endpoint: String,
    #[serde(flatten)]
    health: StoreHealth,
}

pub async fn run(ctx: &Ctx, args: HealthArgs) -> anyhow::Result<Outcome> {
    let mode = ctx.mode();
    let (check_pg, check_milvus) = match args.store {
        Some(StoreChoice::Pgvector) => (true, false),
        Some(StoreChoice::Milvus) => (false, true),
        Some(StoreChoice::All) => (true, true),
        None => (mode.uses_pgvector(), mode.uses_milvus()),
    };
    let mut stores = Vec::new();
    if check_pg {
        let store = ctx.pgvector()?;
        let endpoint = ctx.pg_endpoint();
        stores.push(check(store.health().await, StoreKind::Pgvector, endpoint));
        store.close().await.ok();
    }
    if check_milvus {
        let endpoint = ctx.settings.milvus().endpoint();
        let store = ctx.milvus()?;
        stores.push(check(store.health().await, StoreKind::Milvus, endpoint));
        store.close().await.ok();
    }
    let outbox = if mode == VectorStoreMode::Dual {
        Some(outbox_report(ctx).await)
    } else {
        None
    };
    let healthy = stores.iter().all(|s| s.health.is_healthy())
        && outbox.as_ref().is_none_or(|o| o.problem.is_none());
    let report = Report {
        mode: mode.to_string(),
        healthy,
        stores,
        outbox,
    };
    if args.json {
        output::print_json(&report)?;
    } else {
        print_text(&report);
    }
    if healthy {
        return Ok(Outcome::Ok);
    }
    let problems: Vec<String> = report
        .stores
        .iter()
        .filter(|s| !s.health.is_healthy())
        .map(|s| {
            let problem = s
                .health
                .problem
                .clone()
                .unwrap_or_else(|| "table/collection does not exist".to_string());
            let what = if s.health.reachable {
                "unhealthy"
            } else {
                "unreachable"
            };
            format!("{} at {} {what}: {problem}", s.health.store, s.endpoint)
        })
        .chain(report.outbox.iter().filter_map(|o| {
            o.problem
                .as_ref()
                .map(|p| format!("outbox {}: {p}", o.table))
        }))
        .collect();
    eprintln!("error: {}", crate::one_line(&problems.join("; ")));
    Ok(Outcome::Problem)
}

/// The outbox's depth and lag against `DUAL_MAX_LAG_MS`.
async fn outbox_report(ctx: &Ctx) -> OutboxReport {
    let table = ctx.settings.dual().outbox_table.clone();
    let max_lag = ctx.settings.dual().max_lag;
    let mut report = OutboxReport {
        table: table.clone(),
        depth: 0,
        lag_ms: None,
        max_lag_ms: max_lag.as_millis() as u64,
        failed: 0,
        last_error: None,
        problem: None,
    };
    let stats = match ctx.pgvector().and_then(|pg| Ok(pg.outbox(&table)?)) {
        Ok(outbox) => outbox.stats().await.map_err(anyhow::Error::from),
        Err(err) => Err(err),
    };
    match stats {
        Ok(stats) => {
            report.depth = stats.depth;
            report.lag_ms = stats.lag.map(|l| l.as_millis() as u64);
            report.failed = stats.failed;
            report.last_error = stats.last_error;
            if stats.lag.is_some_and(|lag| lag > max_lag) {
                report.problem = Some(format!(
                    "Milvus is {} ms behind pgvector ({} ids pending, {} failed{}), more than \
                     DUAL_MAX_LAG_MS={}",
                    report.lag_ms.unwrap_or_default(),
                    stats.depth,
                    stats.failed,
                    report
                        .last_error
                        .as_ref()
                        .map_or_else(String::new, |e| format!("; last error: {e}")),
                    report.max_lag_ms
                ));
            }
        }
        Err(err) => report.problem = Some(format!("cannot read it: {err:#}")),
    }
    report
}

/// An error of the check itself becomes an unhealthy entry, so that every store asked for
/// is reported.
fn check(
    result: Result<vectorgate_domain::HealthStatus, vectorgate_domain::GatewayError>,
    store: StoreKind,
    endpoint: String,
) -> Checked {
    let health = match result {
        Ok(status) => status
            .stores
            .into_iter()
            .find(|s| s.store == store)
            .unwrap_or_else(|| unhealthy(store, false, "the store reported nothing".into())),
        Err(err) => unhealthy(store, !err.is_unavailable(), err.to_string()),
    };
    Checked { endpoint, health }
}

fn unhealthy(store: StoreKind, reachable: bool, problem: String) -> StoreHealth {
    StoreHealth {
        store,
        reachable,
        server_version: None,
        collection: None,
        problem: Some(problem),
        warnings: Vec::new(),
    }
}

fn print_text(report: &Report) {
    println!(
        "mode {}: {}",
        report.mode,
        if report.healthy {
            "healthy"
        } else {
            "UNHEALTHY"
        }
    );
    for s in &report.stores {
        let h = &s.health;
        println!(
            "{} at {}: {}",
            h.store,
            s.endpoint,
            if h.is_healthy() { "ok" } else { "FAIL" }
        );
        let mut lines: Vec<(&str, String)> = Vec::new();
        if let Some(version) = &h.server_version {
            lines.push(("version", version.clone()));
        }
        if let Some(c) = &h.collection {
            let what = match h.store {
                StoreKind::Milvus => "collection",
                _ => "table",
            };
            lines.push((
                what,
                format!(
                    "{} ({})",
                    c.name,
                    if c.exists { "exists" } else { "missing" }
                ),
            ));
            if let Some(layout) = &c.layout {
                lines.push(("layout", layout.clone()));
            }
            if let Some(dim) = c.dimension {
                lines.push(("dimension", dim.to_string()));
            }
            if let Some(metric) = c.metric {
                lines.push(("metric", metric.to_string()));
            }
            if let Some(index) = &c.index_type {
                let params: Vec<String> = c
                    .index_params
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                lines.push((
                    "index",
                    format!("{index} {}", params.join(" ")).trim().to_string(),
                ));
            }
            if let Some(loaded) = c.loaded {
                lines.push(("loaded", if loaded { "yes" } else { "no" }.to_string()));
            }
            if let Some(rows) = c.row_count {
                let approx = if c.row_count_estimated {
                    " (estimated)"
                } else {
                    ""
                };
                lines.push(("rows", format!("{rows}{approx}")));
            }
            if let (Some(indexed), Some(rows)) = (c.indexed_rows, c.row_count) {
                // Rows of growing segments are searched without the index until they seal.
                lines.push((
                    "indexed",
                    format!(
                        "{indexed} of {rows} rows ({} not yet)",
                        rows.saturating_sub(indexed)
                    ),
                ));
            }
        }
        if let Some(problem) = &h.problem {
            lines.push(("problem", crate::one_line(problem)));
        }
        for warning in &h.warnings {
            lines.push(("warning", crate::one_line(warning)));
        }
        for (key, value) in lines {
            println!("  {key:<11}{value}");
        }
    }
    if let Some(o) = &report.outbox {
        println!(
            "outbox {}: {}",
            o.table,
            if o.problem.is_none() { "ok" } else { "FAIL" }
        );
        println!("  {:<11}{}", "pending", o.depth);
        println!(
            "  {:<11}{}",
            "lag",
            o.lag_ms.map_or_else(
                || "none".to_string(),
                |l| format!("{l} ms (max {} ms)", o.max_lag_ms)
            )
        );
        println!("  {:<11}{}", "failed", o.failed);
        if let Some(problem) = &o.problem {
            println!("  {:<11}{}", "problem", crate::one_line(problem));
        }
    }
}
