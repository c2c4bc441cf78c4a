//! The mode a database was last used with: logged at start-up, and a change logged once
//! naming both modes.

use async_trait::async_trait;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_domain::GatewayError;

use crate::settings::{Settings, VectorStoreMode};

/// Where the last mode used with a database is recorded.
#[async_trait]
pub(crate) trait ModeState: Send + Sync {
    /// Records `mode` under `key` and returns the value recorded before, if any.
    async fn swap(&self, key: &str, mode: VectorStoreMode) -> Result<Option<String>, GatewayError>;
}

#[async_trait]
impl ModeState for PgVectorStore {
    async fn swap(&self, key: &str, mode: VectorStoreMode) -> Result<Option<String>, GatewayError> {
        self.swap_state(key, mode.as_str()).await
    }
}

/// Logs the mode in use and, when PostgreSQL is used, a transition from the mode recorded
/// last time. A failure to record is logged, not fatal: the stores themselves work.
pub(crate) async fn record_mode(settings: &Settings, state: Option<&dyn ModeState>) {
    let mode = settings.mode();
    tracing::info!(mode = mode.as_str(), settings = %settings, "vector store mode in use");
    let Some(state) = state else { return };
    let key = format!("vector_store_mode:{}", settings.pgvector().table);
    match state.swap(&key, mode).await {
        Ok(Some(previous)) if previous != mode.as_str() => tracing::info!(
            previous = previous.as_str(),
            current = mode.as_str(),
            "vector store mode changed from {previous} to {mode}"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not record the vector store mode"),
    }
}
