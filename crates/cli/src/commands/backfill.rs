//! `vectorgate backfill`: copies pgvector's rows into Milvus, before or during dual mode.
//!
//! Pages pgvector by chunk id (`chunk_id > last ORDER BY chunk_id LIMIT batch`) and hands
//! each page's ids to the relay, the one writer of replays: it copies each row as
//! pgvector holds it when it is replayed, so a dual-mode write that lands meanwhile is
//! never overwritten by an older copy. The checkpoint naming the page's last id is
//! committed only after the relay replayed the page; killed at any point, `--resume`
//! restarts after the last committed page.

use anyhow::Context as _;
use vectorgate_domain::VectorStoreGateway;

use crate::args::BackfillArgs;
use vectorgate_adapter_pgvector::BackfillJob;

use crate::context::{describe_filter, Ctx};
use crate::progress::{rate, Progress};
use crate::Outcome;

pub async fn run(ctx: &Ctx, args: BackfillArgs) -> anyhow::Result<Outcome> {
    let filter = args.scope.filter()?;
    let pg = ctx.pgvector()?;
    let milvus = ctx.milvus()?;
    let dual = ctx.dual().await?;
    let table = pg.config().table.clone();
    let target = ctx.milvus_target();

    milvus
        .ensure_schema()
        .await
        .context("backfill needs the Milvus collection")?;
    pg.open_checkpoints().await?;
    let job = BackfillJob::new(&table, &target, filter);
    let total = pg.count(filter).await?;

    let (mut after, mut copied) = if args.resume {
        match pg.load_checkpoint(&job).await? {
            Some(cp) => {
                eprintln!(
                    "backfill: resuming {} after chunk_id {} ({} rows copied before)",
                    describe_filter(filter),
                    cp.last_chunk_id
                        .map_or_else(|| "(none)".to_string(), |c| c.to_string()),
                    cp.rows_copied
                );
                (cp.last_chunk_id, cp.rows_copied)
            }
            None => {
                eprintln!(
                    "backfill: no checkpoint for {}; starting from the beginning",
                    describe_filter(filter)
                );
                pg.reset_checkpoint(&job, total).await?;
                (None, 0)
            }
        }
    } else {
        pg.reset_checkpoint(&job, total).await?;
        (None, 0)
    };
    let resumed_after = after;
    let copied_before = copied;

    let mut progress = Progress::new("backfill", Some(total.max(copied)), copied);
    let batch = args.batch as usize;
    loop {
        let page = pg.scan(filter, after, batch).await?;
        let Some(last) = page.last().map(|r| r.chunk_id) else {
            break;
        };
        let ids: Vec<_> = page.iter().map(|r| r.chunk_id).collect();
        replay_page(&dual, &ids, after).await?;
        copied += page.len() as u64;
        metrics::counter!("vectorgate_backfill_rows_total").increment(page.len() as u64);
        metrics::counter!("vectorgate_backfill_batches_total").increment(1);
        pg.advance_checkpoint(&job, last, copied, total.max(copied))
            .await?;
        progress.batch(page.len() as u64, &format!("last chunk_id {last}"));
        after = Some(last);
        if page.len() < batch {
            break;
        }
    }
    pg.complete_checkpoint(&job).await?;
    progress.finish();
    super::indexing::flush_and_wait_indexed(&milvus, "backfill").await;

    let this_run = copied - copied_before;
    println!(
        "backfill done: {this_run} rows copied from pgvector table {table} to Milvus \
         collection {target} ({}) in {:.1} s, {}; {copied} rows in total{}",
        describe_filter(filter),
        progress.elapsed().as_secs_f64(),
        rate(this_run, progress.elapsed()),
        resumed_after.map_or_else(String::new, |c| format!(", resumed after chunk_id {c}")),
    );
    dual.close().await.ok();
    pg.close().await.ok();
    Ok(Outcome::Ok)
}

/// Replays one page through the relay. While Milvus refuses it (down, restarting) or a
/// store does not answer in time, waits with backoff and tries again: the ids stay in the
/// outbox meanwhile, so nothing is lost if the wait runs out and the backfill is resumed.
async fn replay_page(
    dual: &vectorgate_composition::DualGateway,
    ids: &[vectorgate_domain::ChunkId],
    after: Option<vectorgate_domain::ChunkId>,
) -> anyhow::Result<()> {
    let mut waits = backon::BackoffBuilder::build(
        backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_secs(1))
            .with_max_delay(std::time::Duration::from_secs(30))
            .with_max_times(12)
            .with_jitter(),
    );
    loop {
        // A busy or restarting store only delays the page: its ids are safe in the outbox.
        let error = match dual.replay(ids).await {
            Ok(replayed) if replayed.entries_failed == 0 => return Ok(()),
            Ok(replayed) => replayed.errors.join("; "),
            Err(err) if err.is_transient() => err.to_string(),
            Err(err) => return Err(err.into()),
        };
        match waits.next() {
            Some(wait) => {
                eprintln!(
                    "backfill: the page after chunk_id {} was not replayed: {}; retrying in {:.0} s",
                    after.map_or_else(|| "(none)".to_string(), |c| c.to_string()),
                    crate::one_line(&error),
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
            None => anyhow::bail!(
                "backfill stopped after chunk_id {}: the page was not replayed: {} (its ids stay in \
                 the outbox for the relay; rerun with --resume)",
                after.map_or_else(|| "(none)".to_string(), |c| c.to_string()),
                error
            ),
        }
    }
}
