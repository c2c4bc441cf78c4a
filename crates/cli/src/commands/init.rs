//! `vectorgate init`: creates (or verifies) everything the configured mode needs, as a
//! service does at start, and says what it found. Safe to run again and concurrently.

use anyhow::Context as _;
use vectorgate_domain::outbox::Outbox;

use crate::context::Ctx;
use crate::Outcome;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let settings = &ctx.settings;
    let mode = settings.mode();
    if mode.uses_pgvector() {
        let pg = ctx.pgvector()?;
        pg.bootstrap()
            .await
            .with_context(|| format!("pgvector table {}", pg.config().table))?;
        println!(
            "pgvector: table {} ready at {} (dimension {}, metric {}, {} index)",
            pg.config().table,
            ctx.pg_endpoint(),
            settings.dimension(),
            settings.metric(),
            pg.config().index
        );
        if mode == vectorgate_composition::VectorStoreMode::Dual {
            let outbox = pg.outbox(&settings.dual().outbox_table)?;
            outbox.bootstrap().await?;
            println!("pgvector: outbox table {} ready", outbox.table());
        }
    }
    if mode.uses_milvus() {
        let milvus = ctx.milvus()?;
        milvus
            .ensure_schema()
            .await
            .with_context(|| format!("Milvus collection {}", ctx.milvus_target()))?;
        println!(
            "milvus: collection {} ready and loaded (dimension {}, metric {})",
            ctx.milvus_target(),
            settings.dimension(),
            settings.metric()
        );
    }
    Ok(Outcome::Ok)
}
