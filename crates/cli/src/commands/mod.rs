//! One module per subcommand; `run` dispatches.

mod backfill;
mod collection;
mod health;
mod import;
mod indexing;
mod init;
mod plan;
mod recall;
mod reconcile;
mod relay;
mod search;
mod settings;
mod sync;

use crate::args::{Cli, Command};
use crate::context::Ctx;
use crate::Outcome;

pub async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    // The documentation table needs no settings at all.
    if let Command::Settings(args) = &cli.command {
        if args.markdown {
            print!("{}", vectorgate_composition::markdown_table());
            return Ok(Outcome::Ok);
        }
    }
    let ctx = Ctx::load(&cli.global)?;
    let metrics = ctx
        .print_metrics
        .then(vectorgate_composition::install_prometheus_recorder)
        .transpose()?;
    let outcome = match cli.command {
        Command::Health(args) => health::run(&ctx, args).await,
        Command::Backfill(args) => backfill::run(&ctx, args).await,
        Command::Reconcile(args) => reconcile::run(&ctx, args).await,
        Command::Sync(args) => sync::run(&ctx, args).await,
        Command::Search(args) => search::run(&ctx, args).await,
        Command::Recall(args) => recall::run(&ctx, args).await,
        Command::Plan(args) => plan::run(&ctx, args).await,
        Command::Import(args) => import::run(&ctx, args).await,
        Command::Collection(args) => collection::run(&ctx, args).await,
        Command::Init => init::run(&ctx).await,
        Command::Relay => relay::run(&ctx).await,
        Command::Settings(_) => settings::run(&ctx),
    };
    // The counters are printed even when the command failed: they show what was done.
    if let Some(handle) = metrics {
        handle.run_upkeep();
        println!("{}", handle.render());
    }
    outcome
}
