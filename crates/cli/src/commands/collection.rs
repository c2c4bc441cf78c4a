//! `vectorgate collection drop|recreate --yes`: the rollback for a corrupt Milvus
//! schema. Refuses without `--yes` and then touches nothing (not even a connection).

use anyhow::bail;

use crate::args::{CollectionAction, CollectionArgs};
use crate::context::Ctx;
use crate::Outcome;

pub async fn run(ctx: &Ctx, args: CollectionArgs) -> anyhow::Result<Outcome> {
    let config = ctx.settings.milvus();
    let (verb, yes) = match &args.action {
        CollectionAction::Drop(c) => ("drop", c.yes),
        CollectionAction::Recreate(c) => ("recreate", c.yes),
    };
    if !yes {
        bail!(
            "refusing to {verb} Milvus collection {} at {} without confirmation: it deletes \
             every row in it (pgvector is untouched); add --yes to {verb} it",
            config.collection,
            config.endpoint()
        );
    }
    let store = ctx.milvus()?;
    match args.action {
        CollectionAction::Drop(_) => {
            let existed = store.schema().drop_collection().await?;
            if existed {
                println!(
                    "dropped Milvus collection {} at {}",
                    config.collection,
                    config.endpoint()
                );
            } else {
                println!(
                    "Milvus collection {} at {} did not exist; nothing dropped",
                    config.collection,
                    config.endpoint()
                );
            }
        }
        CollectionAction::Recreate(_) => {
            store.schema().recreate().await?;
            println!(
                "recreated Milvus collection {} at {}: empty, dimension {}, metric {}, \
                 IVF_FLAT nlist {}; run `vectorgate backfill` to fill it from pgvector",
                config.collection,
                config.endpoint(),
                config.dimension,
                config.metric,
                config.effective_nlist()
            );
        }
    }
    Ok(Outcome::Ok)
}
