//! `vectorgate recall`: how many of the true nearest neighbours the configured search finds,
//! measured on the user's own data. Stored rows picked at random serve as queries (real
//! queries resemble the documents); each is searched within its tenant through the store
//! as configured and exactly, and the overlap of the two top-k lists is averaged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::seq::SliceRandom;
use serde::Serialize;
use vectorgate_adapter_milvus::MilvusStore;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_composition::{ReadFrom, VectorStoreMode};
use vectorgate_domain::{
    ChunkId, ScanFilter, SearchHit, SearchRequest, SearchScope, TopK, VectorRecord,
    VectorStoreGateway,
};

use crate::args::RecallArgs;
use crate::context::Ctx;
use crate::output;
use crate::Outcome;

#[derive(Debug, Serialize)]
struct Report {
    store: &'static str,
    mode: String,
    samples: usize,
    k: u32,
    mean_recall: f64,
    lowest_recall: f64,
    search_p50_ms: f64,
    search_p99_ms: f64,
    exact_p50_ms: f64,
    min_recall: f64,
    ok: bool,
}

/// The store searched as configured, the same store searching exactly, and the queries.
struct Subject {
    name: &'static str,
    configured: Arc<dyn VectorStoreGateway>,
    exact: Arc<dyn VectorStoreGateway>,
    queries: Vec<VectorRecord>,
}

pub async fn run(ctx: &Ctx, args: RecallArgs) -> anyhow::Result<Outcome> {
    let k = TopK::new(args.k).context("-k")?;
    let samples = args.samples as usize;
    let reads_milvus = match ctx.mode() {
        VectorStoreMode::Pgvector => false,
        VectorStoreMode::Milvus => true,
        VectorStoreMode::Dual => ctx.settings.dual().read_from == ReadFrom::Milvus,
    };
    let subject = if reads_milvus {
        milvus_subject(ctx, samples).await?
    } else {
        pgvector_subject(ctx, samples).await?
    };
    anyhow::ensure!(
        !subject.queries.is_empty(),
        "{} holds no rows to sample; load some first",
        subject.name
    );

    let (mut recalls, mut took, mut exact_took) = (Vec::new(), Vec::new(), Vec::new());
    for row in &subject.queries {
        let request =
            SearchRequest::new(SearchScope::tenant(row.tenant_id), row.embedding.clone(), k);
        let t = Instant::now();
        let found = subject.configured.search(&request).await?;
        took.push(t.elapsed());
        let t = Instant::now();
        let exact = subject.exact.search(&request).await?;
        exact_took.push(t.elapsed());
        recalls.push(SearchHit::recall(&found, &exact));
    }
    subject.configured.close().await.ok();
    subject.exact.close().await.ok();

    let mean = recalls.iter().sum::<f64>() / recalls.len() as f64;
    let report = Report {
        store: subject.name,
        mode: ctx.mode().to_string(),
        samples: recalls.len(),
        k: args.k,
        mean_recall: round3(mean),
        lowest_recall: round3(recalls.iter().copied().fold(1.0, f64::min)),
        search_p50_ms: percentile_ms(&mut took, 0.50),
        search_p99_ms: percentile_ms(&mut took, 0.99),
        exact_p50_ms: percentile_ms(&mut exact_took, 0.50),
        min_recall: args.min_recall,
        ok: mean >= args.min_recall,
    };
    if args.json {
        output::print_json(&report)?;
    } else {
        println!(
            "recall@{} on {} stored rows of {} (mode {}), each searched within its tenant: \
             mean {:.3}, lowest {:.3} ({} --min-recall {})",
            report.k,
            report.samples,
            report.store,
            report.mode,
            report.mean_recall,
            report.lowest_recall,
            if report.ok { "meets" } else { "BELOW" },
            report.min_recall
        );
        println!(
            "search as configured: p50 {:.2} ms, p99 {:.2} ms; exact search: p50 {:.2} ms",
            report.search_p50_ms, report.search_p99_ms, report.exact_p50_ms
        );
    }
    Ok(if report.ok {
        Outcome::Ok
    } else {
        Outcome::Problem
    })
}

/// pgvector samples in SQL; its exact twin searches every scope without the index.
async fn pgvector_subject(ctx: &Ctx, samples: usize) -> anyhow::Result<Subject> {
    let store = ctx.pgvector()?;
    let queries = store.sample(samples).await?;
    let mut exact = store.config().clone();
    // The largest scope the setting accepts: every tenant is searched without the index.
    exact.exact_search_max_rows = i32::MAX as u32;
    Ok(Subject {
        name: "pgvector",
        exact: Arc::new(PgVectorStore::new(exact)?),
        configured: Arc::new(store),
        queries,
    })
}

/// Milvus has no random sample: its ids are read (without vectors), picked here, then
/// fetched. Its exact twin probes every list of the IVF index.
async fn milvus_subject(ctx: &Ctx, samples: usize) -> anyhow::Result<Subject> {
    let store = ctx.milvus()?;
    let ids: Vec<ChunkId> = store
        .scan_range(
            ScanFilter::all(),
            ChunkId::new(0)?,
            ChunkId::new(i64::MAX)?,
            false,
        )
        .await?
        .into_iter()
        .map(|row| row.chunk_id)
        .collect();
    let picked: Vec<ChunkId> = ids
        .choose_multiple(&mut rand::thread_rng(), samples)
        .copied()
        .collect();
    let queries = store.fetch(&picked).await?;
    let exact = MilvusStore::new(store.config().clone().exact_search())?;
    Ok(Subject {
        name: "Milvus",
        configured: Arc::new(store),
        exact: Arc::new(exact),
        queries,
    })
}

fn percentile_ms(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort_unstable();
    let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    round3(samples[i].as_secs_f64() * 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
