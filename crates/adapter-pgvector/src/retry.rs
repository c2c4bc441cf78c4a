//! Statements PostgreSQL aborted to break a deadlock or a serialization conflict are run
//! again: the aborted statement was rolled back whole, so a retry is safe, and the caller
//! (a dual write's outbox bookkeeping, a concurrent delete) should not fail for it.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use vectorgate_domain::GatewayError;

use crate::layout::TenantRace;

/// SQLSTATE 40P01 (deadlock detected) and 40001 (serialization failure), as the sqlx error
/// the adapter kept as the source, and a chunk id's tenant changing under a write
/// ([`TenantRace`]).
fn is_transient(err: &GatewayError) -> bool {
    let Some(source) = std::error::Error::source(err) else {
        return false;
    };
    source.downcast_ref::<TenantRace>().is_some()
        || source.downcast_ref::<sqlx::Error>().is_some_and(|err| {
            matches!(err, sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01") | Some("40001")))
        })
}

/// Runs `op`, again up to four times (with jittered backoff) while it fails transiently.
/// `op` must take its connection itself: a connection whose transaction was aborted is
/// returned to the pool and a fresh one used.
pub(crate) async fn retry_transient<T, F, Fut>(op: F) -> Result<T, GatewayError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, GatewayError>>,
{
    op.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(5))
            .with_max_delay(Duration::from_millis(200))
            .with_max_times(4)
            .with_jitter(),
    )
    .when(is_transient)
    .notify(|err, wait| tracing::debug!(error = %err, ?wait, "retrying after a transient conflict"))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry_transient(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(
                GatewayError::backend(vectorgate_domain::StoreKind::Pgvector, "upsert", "x")
                    .with_source(sqlx::Error::PoolTimedOut),
            )
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
