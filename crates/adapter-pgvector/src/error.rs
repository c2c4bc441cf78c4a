//! The seam where sqlx errors become the port's errors.

use vectorgate_domain::{GatewayError, StoreKind};

/// Where the server is, for `Unavailable` messages (host:port, never credentials).
#[derive(Debug, Clone)]
pub(crate) struct Endpoint(pub(crate) String);

/// SQLSTATE classes/codes meaning "the server cannot serve us right now" rather than
/// "this statement failed": connection exceptions (08), shutdowns and start-up (57P0x),
/// too many connections (53300), authentication (28), unknown database (3D000).
fn is_unavailable_state(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("57P0")
        || code == "53300"
        || code.starts_with("28")
        || code == "3D000"
}

pub(crate) fn map_sqlx(
    endpoint: &Endpoint,
    operation: &'static str,
    err: sqlx::Error,
) -> GatewayError {
    let unavailable = |cause: String| {
        GatewayError::unavailable(
            StoreKind::Pgvector,
            format!("PostgreSQL at {} during {operation}: {cause}", endpoint.0),
        )
    };
    match err {
        sqlx::Error::Io(e) => unavailable(format!("I/O error: {e}")),
        sqlx::Error::Tls(e) => unavailable(format!("TLS error: {e}")),
        sqlx::Error::PoolTimedOut => {
            unavailable("timed out waiting for a connection (server down or pool exhausted)".into())
        }
        sqlx::Error::PoolClosed => unavailable("the connection pool was closed".into()),
        sqlx::Error::WorkerCrashed => unavailable("the connection worker crashed".into()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if is_unavailable_state(&code) {
                unavailable(format!("{} (SQLSTATE {code})", db.message()))
            } else {
                GatewayError::backend(
                    StoreKind::Pgvector,
                    operation,
                    format!("{} (SQLSTATE {code})", db.message()),
                )
            }
        }
        other => GatewayError::backend(StoreKind::Pgvector, operation, other),
    }
}

/// The deadline for connecting ran out before sqlx reported anything.
pub(crate) fn connect_timed_out(endpoint: &Endpoint, operation: &'static str) -> GatewayError {
    GatewayError::unavailable(
        StoreKind::Pgvector,
        format!(
            "PostgreSQL at {} during {operation}: no connection within the connect timeout",
            endpoint.0
        ),
    )
}
