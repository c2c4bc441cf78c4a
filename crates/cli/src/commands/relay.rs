//! `vectorgate relay`: runs the dual-mode relay as a long-lived process, for deployments
//! that prefer a separate worker to the relay inside each service (`DUAL_RELAY=off`
//! there). Stops gracefully on SIGTERM or Ctrl-C: the pass in progress finishes and the
//! lead is handed over.

use vectorgate_domain::VectorStoreGateway;

use crate::context::Ctx;
use crate::Outcome;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let dual =
        vectorgate_composition::VectorStoreFactory::build_dual(&ctx.settings.with_relay(true))
            .await?;
    eprintln!(
        "relay: replaying outbox {} into Milvus {} (leads when no other relay does); stop \
         with SIGTERM or Ctrl-C",
        ctx.settings.dual().outbox_table,
        ctx.milvus_target()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("relay: stopping");
    // The stats are read while the relay still holds its pool; close() then hands the
    // lead over.
    let stats = dual.outbox_stats().await?;
    dual.close().await?;
    println!(
        "relay stopped: {} ids pending in the outbox ({} failed)",
        stats.depth, stats.failed
    );
    Ok(Outcome::Ok)
}
