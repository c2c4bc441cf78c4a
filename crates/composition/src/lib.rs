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

mod drift;
mod dual;
mod factory;
mod mode;
mod observability;
mod rows;
mod schema_gate;
mod settings;
mod stores;
#[cfg(test)]
mod testing;

pub use drift::{max_abs_diff, Difference, DriftReport, GroupDrift, Totals};
pub use dual::{DualGateway, SyncReport};
pub use factory::VectorStoreFactory;
pub use observability::install_prometheus_recorder;
pub use settings::{
    markdown_table, vars, DualSettings, ReadFrom, Settings, SettingsBuilder, Var, Variable,
    VectorStoreMode,
};
pub use stores::Stores;

#[cfg(test)]
pub(crate) mod test_support {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// Captures formatted log lines for the current thread (tests run on a current-thread
    /// runtime, so spawned tasks log here too).
    #[derive(Clone, Default)]
    pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

    impl CapturedLogs {
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }

        pub fn lines_with(&self, needle: &str) -> Vec<String> {
            self.text()
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_string)
                .collect()
        }

        /// As [`Self::install`], also printing each span when it closes (with its fields).
        pub fn install_with_spans(&self) -> tracing::subscriber::DefaultGuard {
            let logs = self.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .without_time()
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
                .with_writer(move || logs.clone())
                .finish();
            tracing::subscriber::set_default(subscriber)
        }

        pub fn install(&self) -> tracing::subscriber::DefaultGuard {
            let logs = self.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .without_time()
                .with_writer(move || logs.clone())
                .finish();
            tracing::subscriber::set_default(subscriber)
        }
    }

    impl Write for CapturedLogs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
