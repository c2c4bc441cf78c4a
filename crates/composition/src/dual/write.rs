//! The write path: record the ids, write both stores at once, return pgvector's answer,
//! settle the ids off the caller's path.

use std::sync::Arc;

use vectorgate_domain::outbox::Settle;
use vectorgate_domain::{
    id_list, validate_records, ChunkId, DeleteRequest, GatewayError, TenantId, VectorRecord,
};

use super::DualGateway;
use crate::observability::DUAL_FAILURES_TOTAL;

/// Ids a warning names; the rest are counted ("... (N more)").
const LOGGED_IDS: usize = 20;

impl DualGateway {
    pub(super) async fn upsert(&self, records: &[VectorRecord]) -> Result<u64, GatewayError> {
        // Validate before the outbox: bad input changes nothing, not even the outbox.
        validate_records(
            records,
            self.stores.pgvector.dimension(),
            self.stores.pgvector.metric(),
        )?;
        if records.is_empty() {
            return Ok(0);
        }
        // pgvector decides before Milvus is written; its own upsert checks again in the
        // write's transaction, and the outbox repairs Milvus should a move race this check.
        let conflicts = self.stores.pgvector.tenant_conflicts(records).await?;
        if !conflicts.is_empty() {
            return Err(GatewayError::TenantConflict { conflicts });
        }
        let ids: Vec<ChunkId> = records.iter().map(|r| r.chunk_id).collect();
        let mut tenants: Vec<TenantId> = records.iter().map(|r| r.tenant_id).collect();
        tenants.sort();
        tenants.dedup();
        self.write_both(
            "upsert",
            ids,
            &tenants,
            self.stores.pgvector.upsert_vectors(records),
            self.stores.milvus.upsert_vectors(records),
        )
        .await
    }

    /// Records `ids`, runs both stores' writes at once, returns pgvector's result and
    /// settles the ids in the background.
    async fn write_both(
        &self,
        operation: &'static str,
        ids: Vec<ChunkId>,
        tenants: &[TenantId],
        pg_write: impl std::future::Future<Output = Result<u64, GatewayError>>,
        milvus_write: impl std::future::Future<Output = Result<u64, GatewayError>>,
    ) -> Result<u64, GatewayError> {
        self.stores
            .outbox
            .record(&ids, self.settings.intent_lease)
            .await?;
        let (pg, milvus) = tokio::join!(pg_write, milvus_write);
        self.settle(operation, ids, tenants, pg, milvus)
    }

    pub(super) async fn delete(&self, request: &DeleteRequest) -> Result<u64, GatewayError> {
        request.validate()?;
        let tenants = [request.tenant_id()];
        match request {
            DeleteRequest::Chunks { chunk_ids, .. } => {
                if chunk_ids.is_empty() {
                    return Ok(0);
                }
                let mut ids = chunk_ids.clone();
                ids.sort();
                ids.dedup();
                self.write_both(
                    "delete",
                    ids,
                    &tenants,
                    self.stores.pgvector.delete_vectors(request),
                    self.stores.milvus.delete_vectors(request),
                )
                .await
            }
            DeleteRequest::Project { .. } | DeleteRequest::Tenant { .. } => {
                // pgvector decides which ids the scope holds, and records them in the same
                // transaction; Milvus then removes exactly those ids. A delete by
                // expression in Milvus could also remove a chunk moved into another
                // tenant meanwhile.
                let ids = self
                    .stores
                    .outbox
                    .delete_scope(request, self.settings.intent_lease)
                    .await?;
                let deleted = ids.len() as u64;
                let milvus = if ids.is_empty() {
                    Ok(0)
                } else {
                    self.stores.replica.remove(&ids).await
                };
                self.settle("delete", ids, &tenants, Ok(deleted), milvus)
            }
        }
    }

    /// Returns pgvector's result now and settles the ids in the background.
    fn settle(
        &self,
        operation: &'static str,
        ids: Vec<ChunkId>,
        tenants: &[TenantId],
        pg: Result<u64, GatewayError>,
        milvus: Result<u64, GatewayError>,
    ) -> Result<u64, GatewayError> {
        let outcome = match (&pg, &milvus) {
            (Ok(_), Ok(_)) => Settle::Applied,
            (Ok(_), Err(err)) => {
                self.report_milvus_failure(operation, tenants, &ids, err);
                Settle::Failed(err.to_string())
            }
            // Milvus may have applied what pgvector refused: the relay undoes it.
            (Err(err), _) => Settle::Failed(err.to_string()),
        };
        if !ids.is_empty() {
            let outbox = Arc::clone(&self.stores.outbox);
            let relay = Arc::clone(&self.relay);
            self.settles.spawn(async move {
                match outbox.settle(&ids, &outcome).await {
                    Ok(0) => {}
                    Ok(_) => relay.wake(),
                    // The entries stay leased; the relay takes them over when the lease
                    // runs out, which is safe.
                    Err(err) => {
                        tracing::debug!(error = %err, "could not settle outbox entries")
                    }
                }
            });
        }
        pg
    }

    fn report_milvus_failure(
        &self,
        operation: &'static str,
        tenants: &[TenantId],
        ids: &[ChunkId],
        err: &GatewayError,
    ) {
        tracing::warn!(
            store = "milvus",
            operation,
            tenant = %id_list(tenants, LOGGED_IDS, ","),
            rows = ids.len(),
            chunk_ids = %id_list(ids, LOGGED_IDS, ","),
            error = %err,
            "dual write: Milvus failed, pgvector committed; the relay replays it"
        );
        metrics::counter!(DUAL_FAILURES_TOTAL, "operation" => operation).increment(1);
    }
}
