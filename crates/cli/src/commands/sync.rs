//! `vectorgate sync`: replays the dual-mode outbox (the writes Milvus missed) from
//! pgvector's current rows and prints what it repaired.

use crate::args::SyncArgs;
use crate::context::Ctx;
use crate::output;
use crate::Outcome;

pub async fn run(ctx: &Ctx, args: SyncArgs) -> anyhow::Result<Outcome> {
    // The dual gateway whatever the mode: after a rollback to pgvector the outbox may
    // still hold entries worth replaying before dual mode is enabled again.
    let dual = vectorgate_composition::VectorStoreFactory::build_dual(&ctx.settings).await?;
    let report = dual.sync().await?;
    if args.json {
        output::print_json(&report)?;
    } else {
        println!(
            "sync: {} outbox entries replayed ({} rows upserted into Milvus from pgvector, {} \
             rows deleted from Milvus), {} failed, {} still pending",
            report.entries_replayed,
            report.upserted,
            report.deleted,
            report.entries_failed,
            report.remaining
        );
        for error in &report.errors {
            println!("  error seen: {}", crate::one_line(error));
        }
    }
    if report.entries_failed > 0 || report.remaining > 0 {
        eprintln!(
            "error: sync left {} outbox entries pending ({} failed this run){}",
            report.remaining,
            report.entries_failed,
            report
                .errors
                .first()
                .map_or_else(String::new, |e| format!(": {}", crate::one_line(e)))
        );
        return Ok(Outcome::Problem);
    }
    Ok(Outcome::Ok)
}
