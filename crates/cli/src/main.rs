//! `vectorgate`: the operator's tool for the vector-store gateway (health, backfill,
//! reconcile, sync, search, import and the Milvus collection rollback).
//!
//! It reads the same settings as the library (`VECTOR_STORE_MODE`, `EMBEDDING_DIM`, ...);
//! global flags override the environment. Every failure ends with one `error: <cause>`
//! line on stderr and a non-zero exit code.

mod args;
mod commands;
mod context;
mod output;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::Cli;

/// What a command tells `main` when it ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done, nothing wrong found.
    Ok,
    /// Done, but what was checked is not right (drift remains, a store is unhealthy).
    Problem,
}

/// Exit codes: 0 fine, 1 the check found a problem, 2 the command could not run.
const EXIT_PROBLEM: u8 = 1;
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::anyhow!("cannot start the async runtime: {err}")),
    };
    let result = runtime.block_on(commands::run(cli));
    // Dropping the runtime waits for blocking tasks; background connections are not worth
    // waiting for once the command has answered.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Problem) => ExitCode::from(EXIT_PROBLEM),
        Err(err) => fail(&err),
    }
}

/// Prints the one-line error (the whole cause chain, joined) and picks the exit code.
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", one_line(&chain_text(err)));
    ExitCode::from(EXIT_ERROR)
}

/// The causes of the chain joined by `: `, down to the first gateway error: its message
/// already names the driver's cause in one line (the driver error it keeps as its source
/// is there for programs, and would repeat it).
fn chain_text(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        parts.push(cause.to_string());
        if cause.is::<vectorgate_domain::GatewayError>() {
            break;
        }
    }
    parts.join(": ")
}

/// Driver messages sometimes span lines; the contract is one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Logs go to stderr, level from `RUST_LOG` (default `warn`), so stdout stays the
/// command's output (tables, JSON) and can be piped.
fn init_logging() {
    // sqlx's "slow statement" warnings fire on every large batch of a backfill or import;
    // they are kept for RUST_LOG=sqlx=warn.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,sqlx::query=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "error communicating with database",
        );
        let err = vectorgate_domain::GatewayError::unavailable(
            vectorgate_domain::StoreKind::Pgvector,
            "PostgreSQL at db:5432 during search: I/O error: refused (os error 111)",
        )
        .with_source(io);
        let err = anyhow::Error::new(err).context("search failed");
        assert_eq!(
            chain_text(&err),
            "search failed: pgvector unavailable: PostgreSQL at db:5432 during search: I/O \
             error: refused (os error 111)"
        );
    }

    #[test]
    fn errors_are_flattened_to_one_line() {
        assert_eq!(
            one_line("milvus unavailable:\n  connection refused\r\n(127.0.0.1:1)"),
            "milvus unavailable: connection refused (127.0.0.1:1)"
        );
    }
}
