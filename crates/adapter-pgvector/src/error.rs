//! The seam where sqlx errors become the port's errors.

use std::time::Duration;

use vectorgate_domain::{GatewayError, StoreKind};

use crate::url::scrub_secret;

/// What error messages may say about the server: its `host:port`, never credentials. The
/// password is kept only to scrub it from driver messages that might quote it.
#[derive(Clone)]
pub(crate) struct Seam {
    endpoint: String,
    password: Option<String>,
    /// The `statement_timeout` every connection starts with, reported by `Timeout`.
    statement_timeout: Duration,
}

impl Seam {
    pub(crate) fn new(
        endpoint: String,
        password: Option<String>,
        statement_timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            password,
            statement_timeout,
        }
    }

    fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(password) => scrub_secret(&text, password),
            None => text,
        }
    }

    fn unavailable(&self, operation: &'static str, cause: String) -> GatewayError {
        GatewayError::unavailable(
            StoreKind::Pgvector,
            self.scrub(format!(
                "PostgreSQL at {} during {operation}: {cause}",
                self.endpoint
            )),
        )
    }

    /// Maps a sqlx error: "cannot serve us now" (connection, shutdown, auth, pool) becomes
    /// `Unavailable` naming host:port, a statement cancelled by its deadline `Timeout`
    /// naming the operation, anything else `Backend` naming the operation; the sqlx error
    /// is kept as the source.
    pub(crate) fn map(&self, operation: &'static str, err: sqlx::Error) -> GatewayError {
        self.map_within(operation, self.statement_timeout, err)
    }

    /// [`Self::map`] for a statement that ran under another deadline (`SET LOCAL
    /// statement_timeout` of bulk loads and index builds).
    pub(crate) fn map_within(
        &self,
        operation: &'static str,
        deadline: Duration,
        err: sqlx::Error,
    ) -> GatewayError {
        let mapped = match &err {
            // sqlx reports a failed TLS handshake (rustls) as an I/O error.
            sqlx::Error::Io(e) if is_tls(e) => {
                self.unavailable(operation, format!("TLS error: {}", tls_cause(e)))
            }
            sqlx::Error::Io(e) => self.unavailable(operation, format!("I/O error: {e}")),
            sqlx::Error::Tls(e) => {
                self.unavailable(operation, format!("TLS error: {}", tls_cause(e.as_ref())))
            }
            sqlx::Error::PoolTimedOut => self.unavailable(
                operation,
                "timed out waiting for a connection (server down or pool exhausted)".into(),
            ),
            sqlx::Error::PoolClosed => {
                self.unavailable(operation, "the connection pool was closed".into())
            }
            sqlx::Error::WorkerCrashed => {
                self.unavailable(operation, "the connection worker crashed".into())
            }
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                let message = format!("{} (SQLSTATE {code})", db.message());
                if is_deadline_state(&code) {
                    GatewayError::timeout(StoreKind::Pgvector, operation, deadline)
                } else if is_unavailable_state(&code) {
                    self.unavailable(operation, message)
                } else {
                    GatewayError::backend(StoreKind::Pgvector, operation, self.scrub(message))
                }
            }
            other => GatewayError::backend(
                StoreKind::Pgvector,
                operation,
                self.scrub(other.to_string()),
            ),
        };
        // The source is printed by error reporters that walk the chain: kept only when
        // its text holds no secret.
        let quotes_secret = self
            .password
            .as_deref()
            .is_some_and(|p| !p.is_empty() && err.to_string().contains(p));
        if quotes_secret {
            mapped
        } else {
            mapped.with_source(err)
        }
    }

    /// The deadline for connecting ran out before sqlx reported anything.
    pub(crate) fn connect_timed_out(&self, operation: &'static str) -> GatewayError {
        self.unavailable(operation, "no connection within the connect timeout".into())
    }
}

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

/// A statement cancelled by `statement_timeout` (57014, query_canceled) or by a
/// `lock_timeout` a URL's `options` may set (55P03, lock_not_available). The gateway runs
/// no NOWAIT statement and cancels none of its own, so both mean a deadline ran out.
fn is_deadline_state(code: &str) -> bool {
    code == "57014" || code == "55P03"
}

fn is_tls(err: &std::io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// The deepest readable cause of a TLS failure ("invalid peer certificate: UnknownIssuer"),
/// on one line.
fn tls_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_errors_are_unavailable_with_host_port_and_the_sqlx_source() {
        let seam = Seam::new("db:5432".into(), Some("pw".into()), Duration::from_secs(30));
        let err = seam.map(
            "search",
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            )),
        );
        assert!(err.is_unavailable());
        assert!(
            err.to_string()
                .contains("PostgreSQL at db:5432 during search"),
            "{err}"
        );
        assert!(err
            .source()
            .unwrap()
            .downcast_ref::<sqlx::Error>()
            .is_some());
    }

    #[test]
    fn rustls_errors_inside_io_errors_are_tls_errors_and_deadlines_are_timeouts() {
        let seam = Seam::new("db:5432".into(), None, Duration::from_millis(1500));
        let handshake = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let err = seam.map("connect", sqlx::Error::Io(handshake));
        assert!(err.is_unavailable());
        assert_eq!(
            err.to_string(),
            "pgvector unavailable: PostgreSQL at db:5432 during connect: TLS error: \
             invalid peer certificate: UnknownIssuer"
        );
        let timeout =
            GatewayError::timeout(StoreKind::Pgvector, "upsert", Duration::from_millis(1500));
        assert_eq!(
            timeout.to_string(),
            "pgvector upsert timed out after 1500 ms"
        );
    }

    #[test]
    fn messages_are_scrubbed_of_the_password() {
        let seam = Seam::new(
            "db:5432".into(),
            Some("hunter2".into()),
            Duration::from_secs(30),
        );
        let err = seam.map(
            "connect",
            sqlx::Error::Configuration("bad option near hunter2".into()),
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(
            err.source().is_none(),
            "a source quoting the secret is not kept"
        );
    }
}
