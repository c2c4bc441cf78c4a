//! Small records kept beside the embeddings (the pgvector adapter's `vectorgate_state`):
//! the mode a database was last used with, logged when it changes, and the relay's
//! reconcile position.

use async_trait::async_trait;
use vectorgate_adapter_pgvector::PgVectorStore;
use vectorgate_domain::GatewayError;

use crate::settings::Settings;

/// A key/value table.
#[async_trait]
pub(crate) trait StateTable: Send + Sync {
    async fn load(&self, key: &str) -> Result<Option<String>, GatewayError>;
    /// Records `value` under `key`; returns the value recorded before, if any.
    async fn swap(&self, key: &str, value: &str) -> Result<Option<String>, GatewayError>;

    async fn store(&self, key: &str, value: &str) -> Result<(), GatewayError> {
        self.swap(key, value).await.map(|_| ())
    }
}

#[async_trait]
impl StateTable for PgVectorStore {
    async fn load(&self, key: &str) -> Result<Option<String>, GatewayError> {
        self.load_state(key).await
    }

    async fn swap(&self, key: &str, value: &str) -> Result<Option<String>, GatewayError> {
        self.swap_state(key, value).await
    }
}

/// Logs the mode in use and, when PostgreSQL is used, a transition from the mode recorded
/// last time. A failure to record is logged, not fatal: the stores themselves work.
pub(crate) async fn record_mode(settings: &Settings, state: Option<&dyn StateTable>) {
    let mode = settings.mode();
    tracing::info!(mode = mode.as_str(), settings = %settings, "vector store mode in use");
    let Some(state) = state else { return };
    let key = format!("vector_store_mode:{}", settings.pgvector().table);
    match state.swap(&key, mode.as_str()).await {
        Ok(Some(previous)) if previous != mode.as_str() => tracing::info!(
            previous = previous.as_str(),
            current = mode.as_str(),
            "vector store mode changed from {previous} to {mode}"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not record the vector store mode"),
    }
}
