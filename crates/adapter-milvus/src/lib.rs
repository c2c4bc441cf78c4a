//! Milvus adapter of the vector-store gateway port.
//!
//! - [`config`]: [`MilvusConfig`], [`Consistency`] and how index/search defaults are derived.
//! - [`client`]: [`MilvusApi`], our own small trait over the SDK calls we make, and its
//!   milvus-sdk-rust (v1 `Client`) implementation with a lazily made connection.
//! - [`schema`]: [`MilvusSchemaManager`]: collection, IVF_FLAT index, load, partitions.
//! - [`queries`]: boolean expressions built from typed integers only.
//! - [`store`]: [`MilvusStore`], the port implementation.
//! - [`baseline`]: the same upserts through the SDK directly, for the benchmark.

pub mod baseline;
pub mod client;
pub mod config;
pub mod queries;
pub mod schema;
pub mod store;

#[cfg(any(test, feature = "mock"))]
pub use client::MockMilvusApi;
pub use client::{MilvusApi, MilvusClientFactory, SdkMilvusApi};
pub use config::{Consistency, MilvusConfig};
pub use schema::MilvusSchemaManager;
pub use store::{port_score, MilvusRow, MilvusStore};
