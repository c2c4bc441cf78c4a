use std::fmt;

use serde::{Deserialize, Serialize};
use strum::{Display, IntoStaticStr};

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

/// The one error type of the port. Adapters map every driver/SDK error to one of these
/// at the seam, so no sqlx, tonic or SDK type reaches a caller.
///
/// The payloads are strings rather than boxed sources so that the error is `Clone`
/// (the dual gateway reports one failure to several places) and can be built in tests.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The caller's input is invalid; the message names the offending value.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// An embedding's length differs from the store's configured dimension.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch { expected: usize, got: usize },

    /// The store cannot be reached (connection refused, timeout, DNS, auth...).
    #[error("{store} unavailable: {reason}")]
    Unavailable { store: StoreKind, reason: String },

    /// An existing table/collection differs from what the configuration expects.
    /// Nothing is altered or dropped when this is returned.
    #[error("schema mismatch in {store} {object}: {details}")]
    SchemaMismatch {
        store: StoreKind,
        /// The table or collection concerned.
        object: String,
        /// What differs, naming both the expected and the found side.
        details: String,
    },

    /// The store was reached but the operation failed.
    #[error("{store} {operation} failed: {cause}")]
    Backend {
        store: StoreKind,
        operation: &'static str,
        cause: String,
    },

    /// A setting is missing or has a value that is not accepted.
    #[error("configuration error: {variable}={value:?} is not accepted; expected {accepted}")]
    Configuration {
        variable: String,
        value: String,
        accepted: String,
    },
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>) -> Self {
        GatewayError::InvalidInput(message.into())
    }

    pub fn unavailable(store: StoreKind, reason: impl Into<String>) -> Self {
        GatewayError::Unavailable {
            store,
            reason: reason.into(),
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

    /// True for errors caused by the caller's input (retrying will not help).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            GatewayError::InvalidInput(_) | GatewayError::DimensionMismatch { .. }
        )
    }

    /// True when the store could not be reached; a retry later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, GatewayError::Unavailable { .. })
    }
}
