//! Milvus adapter of the vector-store gateway port.
//!
//! The public surface is what the composition root, the CLI and the benchmark use:
//! [`MilvusStore`] (the port on Milvus, plus the operator reads `scan_range`, `fetch`,
//! `count` and `flush`), its [`MilvusConfig`] and [`Consistency`], the
//! [`MilvusSchemaManager`] it hands out, the [`MilvusRow`]s its scans return, and the
//! collection's field names. With the `mock` feature the client seam (`MilvusApi` with its
//! types, `MockMilvusApi` and `MilvusStore::with_client`) is exported for unit tests.
//!
//! Modules (private):
//! - `config`: [`MilvusConfig`], [`Consistency`], [`PartitionKey`] and how index/search
//!   defaults are derived.
//! - `layout`: [`CollectionLayout`], the partition key a new collection gets, and when an
//!   existing collection's layout is refused.
//! - `probe`: the check a new tenant-keyed collection passes before it serves (rows
//!   written by upsert are found under their tenant).
//! - `address`: [`MilvusUri`] (`http://`/`https://` host and port) and [`MilvusTls`] (CA,
//!   server name, client identity), their files read and checked before any connection.
//! - `client`: our own small trait over exactly the SDK calls we make (`MilvusApi`) and its
//!   milvus-sdk-rust implementation; `connect` (the lazy connection and the headers),
//!   `error` (SDK errors as `GatewayError`), `fence` (read-your-deletes), `sdk` (the
//!   calls). No SDK type is used outside this module.
//! - `schema`: [`MilvusSchemaManager`]: collection, IVF_FLAT index, load, partitions.
//! - `queries`: boolean expressions built from typed integers only.
//! - `store`: [`MilvusStore`]; `scan` (operator reads and reply decoding) and `index`
//!   (flush, index coverage).
//!
//! # Facts about Milvus 2.3.5 through milvus-sdk-rust 3.0.3 that shaped this crate
//! - Calls go through the crate's generated gRPC client (`milvus::proto`); the v1 types
//!   only build requests and read replies. The v1 `Client` cannot send an API key (its
//!   auth interceptor sends only `base64(user:password)`) nor create a partition-key
//!   collection (its schema conversion clears `is_partition_key`); `ClientV2` cannot read
//!   search rows from 2.3 (it leaves the primary-key field name empty).
//! - `Session` consistency is the client's job: a read sends the timestamp of this
//!   client's last write reply as its guarantee timestamp. 2.3.5 answers deletes with
//!   timestamp 0, so after a delete the next `Session` read is sent `Strong` (the client's
//!   `SessionFence`); both read-your-upserts and read-your-deletes are covered by the live
//!   suite.
//! - The index is built on sealed segments only. Fresh rows sit in growing segments that
//!   2.3 searches with its interim index (server settings
//!   `queryNode.segcore.interimIndex.{nlist=128,nprobe=16}`; the search's nprobe does not
//!   reach it) until the segment seals (size, idle time, or [`MilvusStore::flush`]).
//!   Measured on the benchmark's data: recall@10 0.198 before flush whatever our nprobe
//!   (this, not nprobe, explains the first settings' 0.21), 1.000 after flush at the
//!   nprobe then used (90% of the lists). Bulk writers should call [`MilvusStore::flush`] (or
//!   [`MilvusStore::flush_and_wait_indexed`]) when done; flushing after every small write
//!   makes many tiny segments, so the store does not flush on its own. The servers the
//!   project starts set `queryNode.segcore.interimIndex.enableIndex: false` (growing
//!   segments then searched by brute force, so fresh rows are found); other deployments
//!   must set it themselves (README).
//! - TLS: `connect` builds a tonic endpoint carrying the `ClientTlsConfig` (CA, server
//!   name, identity). The credential (`MILVUS_TOKEN` as given, an API key too, or
//!   `user:password`) goes base64-encoded in the `authorization` header, as pymilvus sends it.
//! - Replies over 4 MB are refused by tonic's default decoder (kept as the SDK keeps it):
//!   queries that return vectors are sized to stay under 3 MB.
//! - A loaded partition must be released before it is dropped.
//! - Partition key: Milvus 2.3.5's upsert routes keyed rows by primary key, so a key is
//!   refused before 2.4 ([`CollectionLayout::server_problem`]) and, unset, given only from
//!   2.4 on; a new keyed collection must pass the `probe` before it serves.
//! - Exact search for parity tests: [`MilvusConfig::exact_search`] (nprobe = nlist).

mod address;
mod client;
mod config;
mod layout;
mod probe;
mod queries;
mod schema;
mod store;

pub use address::{MilvusTls, MilvusUri};
pub use config::{
    check_token, Consistency, MilvusConfig, PartitionKey, DEFAULT_NUM_PARTITIONS, MAX_NLIST,
    MAX_NUM_PARTITIONS,
};
pub use layout::CollectionLayout;
pub use schema::{
    validate_collection_name, MilvusSchemaManager, COLLECTION_ACCEPTED, FIELD_CHUNK_ID,
    FIELD_EMBEDDING, FIELD_PROJECT_ID, FIELD_TENANT_ID,
};
pub use store::{MilvusRow, MilvusStore};

/// The client seam, for unit tests that build a [`MilvusStore`] over a mock.
#[cfg(any(test, feature = "mock"))]
pub use client::{
    CollectionDescription, Column, ColumnBatch, FieldKind, FieldSpec, IndexSpec, LoadStatus,
    MilvusApi, MockMilvusApi, QueryCall, RawHit, Rows, SearchCall, SegmentInfo,
};
