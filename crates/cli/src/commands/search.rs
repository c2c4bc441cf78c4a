//! `vectorgate search`: a k-NN search through the gateway of the configured mode.

use anyhow::{bail, Context as _};
use serde::Serialize;
use vectorgate_composition::VectorStoreMode;
use vectorgate_domain::{
    ChunkId, Embedding, ProjectId, SearchHit, SearchRequest, SearchScope, TenantId, TopK,
    VectorStoreGateway,
};

use crate::args::SearchArgs;
use crate::context::Ctx;
use crate::output;
use crate::Outcome;

#[derive(Debug, Serialize)]
struct JsonHits<'a> {
    mode: String,
    /// The store that answered.
    read_from: String,
    hits: &'a [SearchHit],
}

pub async fn run(ctx: &Ctx, args: SearchArgs) -> anyhow::Result<Outcome> {
    let scope = scope(args.tenant, &args.projects)?;
    let tenant = scope.tenant_id();
    let embedding = match (&args.vector_file, args.like) {
        (Some(path), _) => read_vector_file(path)?,
        (None, Some(id)) => stored_vector(ctx, tenant, ChunkId::new(id).context("--like")?).await?,
        (None, None) => bail!("give --vector-file FILE or --like CHUNK_ID"),
    };
    let mut request = SearchRequest::new(scope, embedding, TopK::new(args.k).context("-k")?);
    if let Some(min) = args.min_score {
        request = request.with_min_score(min);
    }
    let gateway = ctx.gateway().await?;
    let hits = gateway.search(&request).await?;
    gateway.close().await.ok();

    let read_from = match ctx.mode() {
        VectorStoreMode::Dual => ctx.settings.dual().read_from.to_string(),
        other => other.to_string(),
    };
    if args.json {
        output::print_json(&JsonHits {
            mode: ctx.mode().to_string(),
            read_from,
            hits: &hits,
        })?;
    } else {
        println!(
            "{} hits from {read_from} (mode {}), tenant {tenant}{}",
            hits.len(),
            ctx.mode(),
            if args.projects.is_empty() {
                String::new()
            } else {
                format!(
                    ", projects {}",
                    args.projects
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        );
        let rows = hits.iter().enumerate().map(|(rank, hit)| {
            vec![
                (rank + 1).to_string(),
                hit.chunk_id.to_string(),
                hit.project_id.to_string(),
                format!("{:.6}", hit.score),
            ]
        });
        println!(
            "{}",
            output::table(&["rank", "chunk_id", "project_id", "score"], rows)
        );
    }
    Ok(Outcome::Ok)
}

fn read_vector_file(path: &std::path::Path) -> anyhow::Result<Embedding> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read vector file {}", path.display()))?;
    let values: Vec<f32> = serde_json::from_str(&text).with_context(|| {
        format!(
            "vector file {} must hold a JSON array of numbers",
            path.display()
        )
    })?;
    Embedding::new(values).with_context(|| format!("vector file {}", path.display()))
}

/// The scope named by `--tenant` and the repeatable `--project`.
pub(crate) fn scope(tenant: i64, projects: &[i64]) -> anyhow::Result<SearchScope> {
    let tenant = TenantId::new(tenant).context("--tenant")?;
    if projects.is_empty() {
        return Ok(SearchScope::tenant(tenant));
    }
    let projects = projects
        .iter()
        .map(|p| ProjectId::new(*p))
        .collect::<Result<Vec<_>, _>>()
        .context("--project")?;
    Ok(SearchScope::projects(tenant, projects)?)
}

/// The stored vector of a chunk of `tenant`: from pgvector (the source of truth) unless the
/// mode uses Milvus alone. Another tenant's chunk is "not stored" for this tenant: its
/// vector must not leak into this tenant's search.
async fn stored_vector(ctx: &Ctx, tenant: TenantId, id: ChunkId) -> anyhow::Result<Embedding> {
    let (records, store) = if ctx.mode() == VectorStoreMode::Milvus {
        let store = ctx.milvus()?;
        (store.fetch(&[id]).await?, "Milvus")
    } else {
        let store = ctx.pgvector()?;
        let records = store.fetch(&[id]).await?;
        store.close().await.ok();
        (records, "pgvector")
    };
    records
        .into_iter()
        .find(|r| r.chunk_id == id && r.tenant_id == tenant)
        .map(|r| r.embedding)
        .with_context(|| {
            format!("--like {id}: chunk {id} of tenant {tenant} is not stored in {store}")
        })
}
