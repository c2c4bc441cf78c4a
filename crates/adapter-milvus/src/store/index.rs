//! Flushing, and how much of the collection Milvus searches through its index: it builds
//! the index on sealed segments only, so fresh rows are searched without it until their
//! segment seals.

use std::time::{Duration, Instant};

use vectorgate_domain::GatewayError;

use super::MilvusStore;
use crate::config::Consistency;
use crate::queries;

/// Milvus 2.3 builds no index on a sealed segment smaller than this
/// (`indexCoord.minSegmentNumRowsToEnableIndex`); it searches such a segment by brute force,
/// which is exact, so its rows count as covered.
const MIN_ROWS_TO_INDEX_SEGMENT: u64 = 1024;

impl MilvusStore {
    /// Seals growing segments so that Milvus builds the collection's index on them (until
    /// then Milvus 2.3 searches new rows with its interim index or by brute force).
    pub async fn flush(&self) -> Result<(), GatewayError> {
        self.check_open()?;
        self.inner.api.flush(self.collection()).await
    }

    /// `(rows searched through the collection's index, rows in the collection)`; rows of
    /// sealed segments too small to be indexed count as covered (searched exactly).
    ///
    /// Milvus builds the index only on sealed segments; rows in growing segments (recent
    /// writes, until the segment fills up, idles or is flushed) and in sealed segments whose
    /// index is still building are searched without it (Milvus 2.3: brute force or its
    /// interim index, whose own nlist/nprobe ignore ours). Query nodes list sealed segments
    /// only, so the total is a strong `count(*)`.
    pub async fn index_coverage(&self) -> Result<(u64, u64), GatewayError> {
        self.check_open()?;
        let segments = self.inner.api.loaded_segments(self.collection()).await?;
        let indexed = segments
            .iter()
            .filter(|s| {
                !s.growing && (!s.index_name.is_empty() || s.rows < MIN_ROWS_TO_INDEX_SEGMENT)
            })
            .map(|s| s.rows)
            .sum();
        let total = self
            .inner
            .api
            .count(
                self.collection(),
                &queries::every_row(),
                Consistency::Strong,
            )
            .await?;
        Ok((indexed, total))
    }

    /// Flushes, then waits until every row is searched through the index (or `timeout`
    /// passes); returns the final `(indexed, total)`.
    pub async fn flush_and_wait_indexed(
        &self,
        timeout: Duration,
    ) -> Result<(u64, u64), GatewayError> {
        self.flush().await?;
        let started = Instant::now();
        loop {
            let (indexed, total) = self.index_coverage().await?;
            if indexed >= total || started.elapsed() >= timeout {
                return Ok((indexed, total));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
