use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strum::{Display, IntoStaticStr};

use crate::{ChunkId, TenantId};

/// Which store an error or a health report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(Display, IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum StoreKind {
    Pgvector,
    Milvus,
    /// The dual-write gateway itself (for errors that are about neither store alone).
    Dual,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The driver or SDK error behind a [`GatewayError`], kept for [`std::error::Error::source`]
/// so that callers can walk the chain or downcast it. Shared (`Arc`) so that the error stays
/// `Clone`: the dual gateway reports one failure to several places.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    pub fn new(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(err))
    }

    /// The original error, for downcasting (`cause.get().downcast_ref::<sqlx::Error>()`).
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Two causes are equal when they read the same: errors of drivers are rarely comparable,
/// and tests compare what a caller sees.
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// A chunk id that an upsert tried to take from the tenant owning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantConflict {
    pub chunk_id: ChunkId,
    /// The tenant the stored chunk belongs to.
    pub owner: TenantId,
    /// The tenant the upsert named.
    pub requested: TenantId,
}

fn list_conflicts(conflicts: &[TenantConflict]) -> String {
    const SHOWN: usize = 10;
    let mut text = conflicts
        .iter()
        .take(SHOWN)
        .map(|c| {
            format!(
                "chunk {} belongs to tenant {}, not {}",
                c.chunk_id, c.owner, c.requested
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if conflicts.len() > SHOWN {
        text.push_str(&format!("; and {} more", conflicts.len() - SHOWN));
    }
    text
}

/// The one error type of the port. Adapters map every driver/SDK error to one of these
/// at the seam, so no sqlx, tonic or SDK type reaches a caller's signature; the original
/// error stays reachable through `source()`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GatewayError {
    /// The caller's input is invalid; the message names the offending value.
    InvalidInput(String),

    /// An embedding's length differs from the store's configured dimension.
    DimensionMismatch { expected: usize, got: usize },

    /// An upsert named chunk ids that already belong to another tenant. Nothing of the
    /// call was written (set `ALLOW_TENANT_MOVE=true` for services that move chunks).
    TenantConflict { conflicts: Vec<TenantConflict> },

    /// The store cannot be reached (connection refused, timeout, DNS, auth...).
    Unavailable {
        store: StoreKind,
        reason: String,
        source: Option<Cause>,
    },

    /// The store did not finish an operation within its deadline.
    Timeout {
        store: StoreKind,
        operation: &'static str,
        after: Duration,
        source: Option<Cause>,
    },

    /// An existing table/collection differs from what the configuration expects.
    /// Nothing is altered or dropped when this is returned.
    SchemaMismatch {
        store: StoreKind,
        /// The table or collection concerned.
        object: String,
        /// What differs, naming both the expected and the found side.
        details: String,
    },

    /// The store was reached but the operation failed.
    Backend {
        store: StoreKind,
        operation: &'static str,
        /// What failed, readable on one line.
        cause: String,
        source: Option<Cause>,
    },

    /// A setting is missing or has a value that is not accepted.
    Configuration {
        variable: String,
        value: String,
        accepted: String,
    },

    /// The library was used in a way it does not support (a store built outside a Tokio
    /// runtime, a metrics recorder installed twice). A bug in the calling code.
    Misuse(String),
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::InvalidInput(message) => write!(f, "invalid input: {message}"),
            GatewayError::DimensionMismatch { expected, got } => {
                write!(f, "dimension mismatch: expected {expected}, got {got}")
            }
            GatewayError::TenantConflict { conflicts } => write!(
                f,
                "tenant conflict: {}; nothing of this upsert was written",
                list_conflicts(conflicts)
            ),
            GatewayError::Unavailable { store, reason, .. } => {
                write!(f, "{store} unavailable: {reason}")
            }
            GatewayError::Timeout {
                store,
                operation,
                after,
                ..
            } => write!(
                f,
                "{store} {operation} timed out after {} ms",
                after.as_millis()
            ),
            GatewayError::SchemaMismatch {
                store,
                object,
                details,
            } => write!(f, "schema mismatch in {store} {object}: {details}"),
            GatewayError::Backend {
                store,
                operation,
                cause,
                ..
            } => write!(f, "{store} {operation} failed: {cause}"),
            GatewayError::Configuration {
                variable,
                value,
                accepted,
            } => write!(
                f,
                "configuration error: {variable}={value:?} is not accepted; expected {accepted}"
            ),
            GatewayError::Misuse(message) => write!(f, "misuse: {message}"),
        }
    }
}

/// `source()` is the driver's own error (downcast it to `sqlx::Error`, `tonic::Status`...).
impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GatewayError::Unavailable {
                source: Some(cause),
                ..
            }
            | GatewayError::Backend {
                source: Some(cause),
                ..
            }
            | GatewayError::Timeout {
                source: Some(cause),
                ..
            } => Some(cause.get()),
            _ => None,
        }
    }
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>) -> Self {
        GatewayError::InvalidInput(message.into())
    }

    pub fn unavailable(store: StoreKind, reason: impl Into<String>) -> Self {
        GatewayError::Unavailable {
            store,
            reason: reason.into(),
            source: None,
        }
    }

    pub fn schema_mismatch(
        store: StoreKind,
        object: impl Into<String>,
        details: impl Into<String>,
    ) -> Self {
        GatewayError::SchemaMismatch {
            store,
            object: object.into(),
            details: details.into(),
        }
    }

    pub fn backend(store: StoreKind, operation: &'static str, cause: impl fmt::Display) -> Self {
        GatewayError::Backend {
            store,
            operation,
            cause: cause.to_string(),
            source: None,
        }
    }

    pub fn timeout(store: StoreKind, operation: &'static str, after: Duration) -> Self {
        GatewayError::Timeout {
            store,
            operation,
            after,
            source: None,
        }
    }

    pub fn configuration(
        variable: impl Into<String>,
        value: impl Into<String>,
        accepted: impl Into<String>,
    ) -> Self {
        GatewayError::Configuration {
            variable: variable.into(),
            value: value.into(),
            accepted: accepted.into(),
        }
    }

    pub fn misuse(message: impl Into<String>) -> Self {
        GatewayError::Misuse(message.into())
    }

    /// Keeps `err` as the source of an `Unavailable`, `Timeout` or `Backend` error (other
    /// variants describe the caller's input or settings and have no driver error behind them).
    pub fn with_source(mut self, err: impl std::error::Error + Send + Sync + 'static) -> Self {
        if let GatewayError::Unavailable { source, .. }
        | GatewayError::Timeout { source, .. }
        | GatewayError::Backend { source, .. } = &mut self
        {
            *source = Some(Cause::new(err));
        }
        self
    }

    /// True for errors caused by the caller's input (retrying will not help).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            GatewayError::InvalidInput(_)
                | GatewayError::DimensionMismatch { .. }
                | GatewayError::TenantConflict { .. }
        )
    }

    /// True when the store could not be reached; a retry later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, GatewayError::Unavailable { .. })
    }

    /// True when the same call may succeed later unchanged: the store was unreachable or
    /// did not answer within its deadline (busy, restarting, waiting on a lock).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GatewayError::Unavailable { .. } | GatewayError::Timeout { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_driver_error_stays_reachable_as_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err =
            GatewayError::unavailable(StoreKind::Pgvector, "db:5432: refused").with_source(io);
        let source = err.source().expect("kept");
        assert_eq!(source.to_string(), "refused");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        // The message itself is unchanged by keeping the source.
        assert_eq!(err.to_string(), "pgvector unavailable: db:5432: refused");
        // Input errors have no source to keep.
        let input = GatewayError::invalid("x").with_source(std::fmt::Error);
        assert!(input.source().is_none());
    }

    #[test]
    fn tenant_conflicts_name_chunk_and_both_tenants() {
        let c = |chunk, owner, requested| TenantConflict {
            chunk_id: ChunkId::new(chunk).unwrap(),
            owner: TenantId::new(owner).unwrap(),
            requested: TenantId::new(requested).unwrap(),
        };
        let err = GatewayError::TenantConflict {
            conflicts: vec![c(101, 1, 2)],
        };
        assert_eq!(
            err.to_string(),
            "tenant conflict: chunk 101 belongs to tenant 1, not 2; nothing of this upsert was written"
        );
        let many = GatewayError::TenantConflict {
            conflicts: (0..12).map(|i| c(i, 1, 2)).collect(),
        };
        assert!(many.to_string().contains("and 2 more"), "{many}");
        assert!(many.is_invalid_input());
    }
}
