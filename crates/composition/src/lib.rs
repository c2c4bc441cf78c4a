//! The composition root: settings from the environment, the factory that builds the
//! gateway for the configured mode, the dual-write gateway with its outbox and `sync`, and
//! the instrumentation (spans, metrics) applied to every store.
//!
//! A service links against this crate and calls [`VectorStoreFactory::build`] once:
//!
//! ```no_run
//! # async fn run() -> Result<(), vectorgate_domain::GatewayError> {
//! use vectorgate_composition::{Settings, VectorStoreFactory};
//! let settings = Settings::from_env()?;
//! let gateway = VectorStoreFactory::build(&settings).await?;
//! # let _ = gateway; Ok(()) }
//! ```

pub mod dual;
pub mod factory;
pub mod observability;
pub mod outbox;
pub mod settings;

pub use dual::{DualGateway, DualOptions, DualStores, RowKey, StoreRows, SyncReport};
pub use factory::{
    AdapterProvider, MilvusParts, MilvusRows, ModeState, PgModeState, PgParts, PgRows,
    StoreProvider, Stores, VectorStoreFactory,
};
pub use observability::{install_prometheus_recorder, Instrumented};
pub use outbox::{Completion, Intent, IntentOp, MemoryOutbox, Outbox, OutboxEntry, PgOutbox};
pub use settings::{ReadFrom, Settings, SettingsBuilder, VectorStoreMode, VARIABLES};
