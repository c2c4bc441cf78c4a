//! `vectorgate plan`: how pgvector searches a scope (exactly, or through the vector
//! index), why, and PostgreSQL's plan for it.

use anyhow::Context as _;
use serde::Serialize;
use vectorgate_domain::{TopK, VectorStoreGateway};

use crate::args::PlanArgs;
use crate::commands::search::scope;
use crate::context::Ctx;
use crate::output;
use crate::Outcome;

#[derive(Debug, Serialize)]
struct Report {
    table: String,
    tenant: i64,
    projects: Vec<i64>,
    k: u32,
    plan: &'static str,
    rows_counted: u64,
    exact_search_max_rows: u32,
    reason: String,
    vector_index: Option<String>,
    explain: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: PlanArgs) -> anyhow::Result<Outcome> {
    let scope = scope(args.tenant, &args.projects)?;
    let k = TopK::new(args.k).context("-k")?;
    let store = ctx.pgvector()?;
    let plan = store.search_plan(&scope, k.get()).await?;
    let report = Report {
        table: store.config().table.clone(),
        tenant: args.tenant,
        projects: args.projects,
        k: k.get(),
        plan: if plan.exact { "exact" } else { "vector_index" },
        rows_counted: plan.rows_counted,
        exact_search_max_rows: plan.exact_search_max_rows,
        reason: plan.reason(),
        vector_index: plan.vector_index.clone(),
        explain: plan.explain.clone(),
    };
    store.close().await.ok();
    if args.json {
        output::print_json(&report)?;
    } else {
        print!("{}: {plan}", report.table);
    }
    Ok(Outcome::Ok)
}
