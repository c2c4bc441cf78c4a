//! The project's automation as a library: the `cargo xtask` binary (src/main.rs) drives
//! it, and tests that need a server of their own (on their own ports, with their own
//! settings) start it through [`postgres`] and [`milvus`] and stop it by pid.

pub mod demo;
pub mod docs;
pub mod layout;
pub mod lint;
pub mod milvus;
pub mod postgres;
pub mod process;
pub mod services;
pub mod steps;
pub mod tls_postgres;
pub mod venv;
