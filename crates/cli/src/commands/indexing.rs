//! The end of a bulk write into Milvus: flush, then wait until the collection's index
//! covers every row. Milvus indexes sealed segments only; until a segment seals, its rows
//! are searched without the collection's index (exactly with the project's milvus.yaml,
//! through a coarse interim index with Milvus's defaults), so a load ends here.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use vectorgate_adapter_milvus::MilvusStore;
use vectorgate_domain::GatewayError;

/// How long a command waits for Milvus's index builds before it reports and returns.
const INDEX_WAIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_secs(2);

/// Flushes `milvus` and waits (bounded) for its index, printing progress to stderr.
/// The rows are written before this starts, so nothing here fails the command: a flush
/// Milvus refuses or a wait that runs out is reported, and Milvus seals and indexes the
/// rows on its own (`vectorgate health` shows when).
pub async fn flush_and_wait_indexed(milvus: &MilvusStore, command: &str) {
    let started = Instant::now();
    if let Err(err) = patiently(command, || milvus.flush()).await {
        eprintln!(
            "{command}: every row is written, but Milvus did not flush them ({}); it seals \
             and indexes them on its own, `vectorgate health` shows when",
            crate::one_line(&err.to_string())
        );
        return;
    }
    let mut last = None;
    loop {
        let (indexed, total) = match patiently(command, || milvus.index_coverage()).await {
            Ok(coverage) => coverage,
            Err(err) => {
                eprintln!(
                    "{command}: flushed; Milvus's index progress cannot be read ({}), \
                     `vectorgate health` shows it",
                    crate::one_line(&err.to_string())
                );
                return;
            }
        };
        if last != Some(indexed) {
            eprintln!("{command}: Milvus index covers {indexed} of {total} rows");
            last = Some(indexed);
        }
        if indexed >= total {
            eprintln!(
                "{command}: flushed and indexed in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        if started.elapsed() >= INDEX_WAIT {
            eprintln!(
                "{command}: Milvus is still indexing {} rows after {} s; they are stored and \
                 searchable, `vectorgate health` shows when the index covers them",
                total - indexed,
                INDEX_WAIT.as_secs()
            );
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A Milvus that just restarted or is busy sealing may refuse or time out a call; the
/// rows are already written, so such a call is retried with backoff instead of failing
/// the whole load at its last step.
async fn patiently<T, F, Fut>(command: &str, call: F) -> Result<T, GatewayError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, GatewayError>>,
{
    call.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(15))
            .with_max_times(8)
            .with_jitter(),
    )
    .when(GatewayError::is_transient)
    .notify(|err, wait| {
        eprintln!(
            "{command}: Milvus did not answer ({}); retrying in {:.0} s",
            crate::one_line(&err.to_string()),
            wait.as_secs_f64()
        );
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use vectorgate_domain::StoreKind;

    use super::*;

    #[tokio::test]
    async fn a_refused_call_is_retried_and_an_error_of_another_kind_is_not() {
        let calls = AtomicUsize::new(0);
        let answer = patiently("test", || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(GatewayError::unavailable(
                    StoreKind::Milvus,
                    "count: Timeout expired",
                )),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let calls = AtomicUsize::new(0);
        let answer: Result<(), _> = patiently("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(GatewayError::invalid("no such collection"))
        })
        .await;
        assert!(answer.unwrap_err().is_invalid_input());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
