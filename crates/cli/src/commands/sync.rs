//! `vectorgate sync`: replays the dual-mode outbox (the ids Milvus may lack) from
//! pgvector's current rows, through the relay's code, and prints what it repaired. When a
//! service's relay leads, it waits for that relay instead.

use vectorgate_domain::VectorStoreGateway;

use crate::args::SyncArgs;
use crate::context::Ctx;
use crate::output;
use crate::Outcome;

pub async fn run(ctx: &Ctx, args: SyncArgs) -> anyhow::Result<Outcome> {
    // The dual gateway whatever the mode: after a rollback to pgvector the outbox may
    // still hold entries worth replaying before dual mode is enabled again.
    let dual = ctx.dual().await?;
    let report = dual.sync().await?;
    dual.close().await.ok();
    if args.json {
        output::print_json(&report)?;
    } else {
        if report.other_relay {
            println!("sync: another process's relay leads; waited for it to drain the outbox");
        }
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
