//! Shadow reads: a share of searches also queries the other store in the background and
//! records how much of the primary's top-k it found.

use std::collections::BTreeSet;
use std::sync::Arc;

use vectorgate_domain::{ChunkId, SearchHit, SearchRequest};

use super::DualGateway;
use crate::observability::SHADOW_READ_OVERLAP;
use crate::settings::ReadFrom;

impl DualGateway {
    pub(super) fn spawn_shadow_read(&self, request: &SearchRequest, primary_hits: &[SearchHit]) {
        let (other, other_name) = match self.settings.read_from {
            ReadFrom::Pgvector => (Arc::clone(&self.stores.milvus), "milvus"),
            ReadFrom::Milvus => (Arc::clone(&self.stores.pgvector), "pgvector"),
        };
        let request = request.clone();
        let primary: Vec<ChunkId> = primary_hits.iter().map(|h| h.chunk_id).collect();
        // Not tracked: a shadow read has nothing to settle.
        tokio::spawn(async move {
            match other.search(&request).await {
                Ok(hits) => {
                    let overlap = top_k_overlap(&primary, &hits);
                    metrics::histogram!(SHADOW_READ_OVERLAP, "shadow_store" => other_name)
                        .record(overlap);
                    tracing::debug!(
                        shadow_store = other_name,
                        tenant = request.scope.tenant_id().get(),
                        overlap,
                        primary_hits = primary.len(),
                        shadow_hits = hits.len(),
                        "shadow read"
                    );
                }
                Err(err) => {
                    tracing::debug!(shadow_store = other_name, error = %err, "shadow read failed")
                }
            }
        });
    }
}

/// Fraction of the primary's ids the shadow store also returned (1.0 when both are empty).
pub(crate) fn top_k_overlap(primary: &[ChunkId], shadow: &[SearchHit]) -> f64 {
    if primary.is_empty() {
        return if shadow.is_empty() { 1.0 } else { 0.0 };
    }
    let shadow: BTreeSet<ChunkId> = shadow.iter().map(|h| h.chunk_id).collect();
    let common = primary.iter().filter(|id| shadow.contains(id)).count();
    common as f64 / primary.len() as f64
}
