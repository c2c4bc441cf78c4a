//! pgvector search as the table grows (`--store pgvector -- --scale 20000,80000,240000`):
//! for each size and both data kinds, a fresh table is bulk-loaded and its vector index
//! built (timed), then project scopes and whole-tenant scopes are searched through the
//! gateway with the store's defaults, 1 and 8 clients, recall against exact search. Each
//! search figure is the median of three rounds. Written under `"pgvector_scale"`.

use std::sync::Arc;

use anyhow::Context;
use serde_json::{json, Value};
use vectorgate_adapter_pgvector::{PgVectorConfig, PgVectorStore, SearchPlan, TableLayout};
use vectorgate_domain::VectorStoreGateway;

use crate::common::{
    bench_pool, drop_tables, each_size_and_kind, measure_search, print_table, round, round3, Args,
    BenchQuery, Data, Dataset, Figure, SearchFigures,
};

/// Rounds of each search measurement; the median is reported.
const ROUNDS: usize = 3;
const RECALL_TARGET: f64 = 0.95;
/// At 240,000 rows (clustered), project scopes of 20,000 rows.
const PROJECT_QPS_TARGET: f64 = 150.0;
const PROJECT_QPS_8_TARGET: f64 = 400.0;
/// At 240,000 rows (clustered), whole-tenant scopes of 60,000 rows.
const TENANT_P50_MS_TARGET: f64 = 10.0;
const INDEX_BUILD_S_TARGET: f64 = 300.0;
const TARGET_ROWS: usize = 240_000;

pub async fn run(args: &Args) -> anyhow::Result<Value> {
    let (sizes, figures) = each_size_and_kind(args, &args.scale, |sized| async move {
        measure_size(&sized).await
    })
    .await?;
    let config = config(args)?;
    print_table(
        &format!(
            "pgvector search by size: dim {}, {} tenants x {} projects, {} queries (half one-project, half whole-tenant), k={}, ef_search {}, exact search for scopes <= {} rows, table {}; medians of {ROUNDS} rounds",
            args.dim, args.tenants, args.projects, args.queries, args.k, config.ef_search, config.exact_search_max_rows, layout(&config)
        ),
        &figures,
    );
    let mut params = args.params(config.metric);
    params.remove("rows");
    params.remove("data");
    params.insert("ef_search".into(), json!(config.ef_search));
    params.insert("max_scan_tuples".into(), json!(config.max_scan_tuples));
    params.insert(
        "exact_search_max_rows".into(),
        json!(config.exact_search_max_rows),
    );
    params.insert("layout".into(), json!(layout(&config)));
    params.insert("rounds".into(), json!(ROUNDS));
    params.insert("figures".into(), json!("the median of the rounds"));
    Ok(json!({ "sizes": sizes, "params": params }))
}

/// The layout the benchmark's new tables get.
fn layout(config: &PgVectorConfig) -> String {
    TableLayout::for_new_table(config).to_string()
}

fn config(args: &Args) -> anyhow::Result<PgVectorConfig> {
    crate::pgvector::config(args, "scale")
}

/// One size and data kind: bulk load, index build, then searches by scope kind.
async fn measure_size(args: &Args) -> anyhow::Result<(Value, Vec<Figure>)> {
    let config = config(args)?;
    let kind = args.data.name();
    let label = format!("{} rows, {kind}", args.rows);
    eprintln!("{label}: generating data and exact answers...");
    let data = Dataset::generate(args, config.metric)?;
    let store = PgVectorStore::new(config.clone())?;
    let outcome = async {
        store.bootstrap().await?;
        eprintln!("{label}: bulk load, index built after...");
        let report = store.bulk_load_timed(&data.records, true).await?;
        let index_build_s = report.index_build.unwrap_or_default().as_secs_f64();
        eprintln!(
            "{label}: loaded in {:.1} s, index built in {index_build_s:.1} s",
            report.load.as_secs_f64()
        );
        sqlx::raw_sql(&format!("ANALYZE {}", config.table))
            .execute(&bench_pool().await?)
            .await
            .context("ANALYZE")?;
        let gateway: Arc<dyn VectorStoreGateway> = Arc::new(store.clone());
        data.warm_up(gateway.as_ref(), args.k).await?;
        let (project, tenant): (Vec<BenchQuery>, Vec<BenchQuery>) = data
            .queries
            .iter()
            .cloned()
            .partition(|q| q.request.scope.project_ids().is_some());
        let plans = [
            store.search_plan(&project[0].request.scope, args.k).await?,
            store.search_plan(&tenant[0].request.scope, args.k).await?,
        ];
        let all = Arc::new(data.queries.clone());
        let (project, tenant) = (Arc::new(project), Arc::new(tenant));
        let mut rounds: [Vec<SearchFigures>; 4] = Default::default();
        for round in 0..ROUNDS {
            eprintln!("{label}: search round {} of {ROUNDS}...", round + 1);
            rounds[0].push(measure_search(gateway.clone(), project.clone(), 1).await?);
            rounds[1].push(measure_search(gateway.clone(), tenant.clone(), 1).await?);
            rounds[2].push(measure_search(gateway.clone(), all.clone(), 1).await?);
            rounds[3].push(measure_search(gateway.clone(), all.clone(), 8).await?);
        }
        let [project, tenant, one, eight] = rounds.map(|r| median(&r));
        let value = json!({
            "rows": args.rows,
            "index_build_s": round(index_build_s),
            "bulk_load_s": round(report.load.as_secs_f64()),
            "search_qps": round(one.qps),
            "search_qps_8_clients": round(eight.qps),
            "recall_at_10": round3(one.recall),
            "search_p50_ms": round3(one.p50_ms),
            "search_p99_ms": round3(one.p99_ms),
            "search_p99_ms_8_clients": round3(eight.p99_ms),
            "project_scope": scope_json(&project, &plans[0], args),
            "tenant_scope": scope_json(&tenant, &plans[1], args),
            "plan": {
                "project_scope": plan_name(&plans[0]),
                "tenant_scope": plan_name(&plans[1]),
            },
        });
        let mut figures = vec![
            Figure::info(
                &format!("{label}: index_build_s"),
                format!("{index_build_s:.1}"),
            ),
            Figure::info(
                &format!(
                    "{label}: project scope ({} rows, {}): q/s 1 client, recall@10, p50 / p99 ms",
                    args.rows as i64 / (args.tenants * args.projects),
                    plan_name(&plans[0])
                ),
                format!(
                    "{:.1}, {:.3}, {:.2} / {:.2}",
                    project.qps, project.recall, project.p50_ms, project.p99_ms
                ),
            ),
            Figure::info(
                &format!(
                    "{label}: tenant scope ({} rows, {}): q/s 1 client, recall@10, p50 / p99 ms",
                    args.rows as i64 / args.tenants,
                    plan_name(&plans[1])
                ),
                format!(
                    "{:.1}, {:.3}, {:.2} / {:.2}",
                    tenant.qps, tenant.recall, tenant.p50_ms, tenant.p99_ms
                ),
            ),
            Figure::info(
                &format!("{label}: all queries q/s 1 / 8 clients, recall@10"),
                format!("{:.1} / {:.1}, {:.3}", one.qps, eight.qps, one.recall),
            ),
        ];
        if args.rows == TARGET_ROWS && args.data == Data::Clustered {
            // The 8-client figure of project scopes alone is not measured separately: the
            // mix of both scope kinds stands for it (tenant scopes cost more per query).
            figures.extend([
                Figure::target(
                    &format!("{label}: project scopes, recall@10 at q/s (1 client)"),
                    format!("{:.3} at {:.1}", project.recall, project.qps),
                    format!(">= {RECALL_TARGET} at >= {PROJECT_QPS_TARGET}"),
                    project.recall >= RECALL_TARGET && project.qps >= PROJECT_QPS_TARGET,
                ),
                Figure::target(
                    &format!("{label}: all scopes, q/s with 8 clients"),
                    format!("{:.1}", eight.qps),
                    format!(">= {PROJECT_QPS_8_TARGET}"),
                    eight.qps >= PROJECT_QPS_8_TARGET,
                ),
                Figure::target(
                    &format!("{label}: tenant scopes, recall@10 at p50"),
                    format!("{:.3} at {:.2} ms", tenant.recall, tenant.p50_ms),
                    format!(">= {RECALL_TARGET} at <= {TENANT_P50_MS_TARGET} ms"),
                    tenant.recall >= RECALL_TARGET && tenant.p50_ms <= TENANT_P50_MS_TARGET,
                ),
                Figure::target(
                    &format!("{label}: index_build_s"),
                    format!("{index_build_s:.1}"),
                    format!("<= {INDEX_BUILD_S_TARGET}"),
                    index_build_s <= INDEX_BUILD_S_TARGET,
                ),
            ]);
        }
        anyhow::Ok((value, figures))
    }
    .await;
    drop_tables(&[config.table.as_str()]).await;
    store.close().await?;
    outcome
}

/// Each figure's median over the rounds (figure by figure, so they may come from
/// different rounds).
fn median(rounds: &[SearchFigures]) -> SearchFigures {
    let mid = |f: fn(&SearchFigures) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    SearchFigures {
        qps: mid(|f| f.qps),
        p50_ms: mid(|f| f.p50_ms),
        p99_ms: mid(|f| f.p99_ms),
        recall: mid(|f| f.recall),
        searches: rounds.iter().map(|f| f.searches).sum(),
    }
}

fn plan_name(plan: &SearchPlan) -> &'static str {
    if plan.exact {
        "exact"
    } else {
        "vector index"
    }
}

fn scope_json(figures: &SearchFigures, plan: &SearchPlan, args: &Args) -> Value {
    json!({
        "queries": args.queries / 2,
        "plan": plan_name(plan),
        "plan_reason": plan.reason(),
        "search_qps": round(figures.qps),
        "recall_at_10": round3(figures.recall),
        "search_p50_ms": round3(figures.p50_ms),
        "search_p99_ms": round3(figures.p99_ms),
    })
}
