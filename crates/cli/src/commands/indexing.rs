//! The end of a bulk write into Milvus: flush, then wait until the collection's index
//! covers every row. Milvus indexes sealed segments only; until a segment seals, its rows
//! are searched without the collection's index (exactly with the project's milvus.yaml,
//! through a coarse interim index with Milvus's defaults), so a load ends here.

use std::time::{Duration, Instant};

use vectorgate_adapter_milvus::MilvusStore;

/// How long a command waits for Milvus's index builds before it reports and returns.
const INDEX_WAIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_secs(2);

/// Flushes `milvus` and waits (bounded) for its index, printing progress to stderr.
/// A wait that runs out is reported, not failed: every row is stored and searchable.
pub async fn flush_and_wait_indexed(milvus: &MilvusStore, command: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    milvus.flush().await?;
    let mut last = None;
    loop {
        let (indexed, total) = milvus.index_coverage().await?;
        if last != Some(indexed) {
            eprintln!("{command}: Milvus index covers {indexed} of {total} rows");
            last = Some(indexed);
        }
        if indexed >= total {
            eprintln!(
                "{command}: flushed and indexed in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() >= INDEX_WAIT {
            eprintln!(
                "{command}: Milvus is still indexing {} rows after {} s; they are stored and \
                 searchable, `vectorgate health` shows when the index covers them",
                total - indexed,
                INDEX_WAIT.as_secs()
            );
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}
