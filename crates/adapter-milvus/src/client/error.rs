//! SDK errors as the port's [`GatewayError`].

use tonic::Code;
use vectorgate_domain::GatewayError;

use super::STORE;

/// The error and its sources, joined: tonic's top-level messages alone ("transport error")
/// do not say why.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    // The SDK's own Display of a transport error is a Debug dump of tonic's error
    // (`tonic::transport::Error(Transport, ConnectError(...))`); the deepest cause is the
    // readable part ("Connection refused (os error 111)"), so an operator sees that alone.
    let mut deepest = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        deepest = cause.to_string();
        source = cause.source();
    }
    deepest
}

/// A few words after a failed connection when the cause alone does not say what to change:
/// a plain-text client talking to a TLS server sees only a broken connection, a TLS client
/// talking to a plain-text server a "corrupt message". Which of "reset", "closed" or "not
/// ready" the client sees depends on when the server drops the connection.
pub(super) fn tls_hint(uri: &str, cause: &str) -> &'static str {
    let cause = cause.to_ascii_lowercase();
    let closed = [
        "connection reset",
        "broken pipe",
        "connection closed",
        "connection was not ready",
    ]
    .iter()
    .any(|s| cause.contains(s));
    if uri.starts_with("https://") {
        if cause.contains("corrupt message") || cause.contains("invalidcontenttype") {
            return " (the server does not speak TLS: use an http:// MILVUS_URI?)";
        }
        // With TLS 1.3 a server that wants a client certificate refuses its absence after
        // the handshake: the client sees its alert, or only the connection closing.
        if closed || cause.contains("badcertificate") || cause.contains("certificaterequired") {
            return " (TLS connection closed by the server: does it require a client \
                    certificate, MILVUS_TLS_CLIENT_CERT_FILE/MILVUS_TLS_CLIENT_KEY_FILE?)";
        }
        return "";
    }
    let garbled = [
        "unexpected eof",
        "frame with invalid size",
        "h2 protocol error",
    ]
    .iter()
    .any(|s| cause.contains(s));
    if closed || garbled {
        " (if the server requires TLS, use an https:// MILVUS_URI)"
    } else {
        ""
    }
}

/// Maps an SDK error to the port's error: a transport failure or an unreachable/timed-out
/// server becomes `Unavailable` naming host:port, anything else `Backend` naming the
/// operation; the SDK error is kept as the source.
pub fn map_error(
    operation: &'static str,
    endpoint: &str,
    err: milvus::error::Error,
) -> GatewayError {
    use milvus::error::Error as E;
    let mapped = match &err {
        E::Communication(_) => {
            let cause = error_chain(&err);
            GatewayError::unavailable(
                STORE,
                format!(
                    "cannot reach {endpoint}: {cause}{}",
                    tls_hint(endpoint, &cause)
                ),
            )
        }
        // `Unknown` with a source is tonic's wrapping of a transport failure (a broken
        // pipe); a status the server sent has none.
        E::Grpc(status)
            if matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            ) || (status.code() == Code::Unknown
                && std::error::Error::source(status).is_some()) =>
        {
            // A transport failure keeps its cause (a TLS alert, a reset) as the status's
            // source; its message alone may say only "transport error".
            let mut cause = status.message().to_string();
            if let Some(source) = std::error::Error::source(status) {
                let deepest = error_chain(source);
                if !cause.contains(&deepest) {
                    cause = format!("{cause}: {deepest}");
                }
            }
            GatewayError::unavailable(
                STORE,
                format!(
                    "cannot reach {endpoint}: {operation}: {:?}: {cause}{}",
                    status.code(),
                    tls_hint(endpoint, &cause)
                ),
            )
        }
        E::Grpc(status) => GatewayError::backend(
            STORE,
            operation,
            format!("{:?}: {}", status.code(), status.message()),
        ),
        E::Server(code, reason) => {
            GatewayError::backend(STORE, operation, format!("{code:?}: {reason}"))
        }
        _ => GatewayError::backend(STORE, operation, error_chain(&err)),
    };
    // The SDK's error stays reachable (downcast) for callers who need its details.
    mapped.with_source(err)
}

#[cfg(test)]
mod tests {
    use vectorgate_domain::StoreKind;

    use super::*;

    #[test]
    fn a_broken_plain_connection_suggests_tls_and_the_reverse() {
        let plain = "http://h:1";
        assert!(tls_hint(plain, "Connection reset by peer (os error 104)").contains("https://"));
        assert!(tls_hint(
            plain,
            "server version: Cancelled: operation was canceled: connection was not ready"
        )
        .contains("https://"));
        assert_eq!(tls_hint(plain, "Connection refused (os error 111)"), "");
        let tls = "https://h:1";
        assert!(
            tls_hint(tls, "received corrupt message of type InvalidContentType")
                .contains("http://")
        );
        assert_eq!(tls_hint(tls, "invalid peer certificate: UnknownIssuer"), "");
        assert!(tls_hint(tls, "operation was canceled: connection closed")
            .contains("MILVUS_TLS_CLIENT_CERT_FILE"));
    }

    #[test]
    fn sdk_errors_map_to_port_errors_naming_the_operation() {
        let err = map_error(
            "search",
            "h:1",
            milvus::error::Error::Server(
                milvus::proto::common::ErrorCode::IllegalArgument,
                "bad expr".into(),
            ),
        );
        assert!(
            matches!(
                &err,
                GatewayError::Backend { store: StoreKind::Milvus, operation: "search", cause, .. }
                    if cause == "IllegalArgument: bad expr"
            ),
            "{err:?}"
        );
        assert!(
            std::error::Error::source(&err)
                .and_then(|s| s.downcast_ref::<milvus::error::Error>())
                .is_some(),
            "the SDK error is the source"
        );
        let err = map_error(
            "upsert",
            "h:1",
            milvus::error::Error::Grpc(tonic::Status::unavailable("connection reset")),
        );
        assert!(err.is_unavailable(), "{err:?}");
        assert!(err.to_string().contains("cannot reach h:1"), "{err}");
        let err = map_error(
            "query",
            "h:1",
            milvus::error::Error::Grpc(tonic::Status::invalid_argument("limit too big")),
        );
        assert!(
            matches!(&err, GatewayError::Backend { operation: "query", cause, .. } if cause.contains("limit too big")),
            "{err:?}"
        );
    }
}
