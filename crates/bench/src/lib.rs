//! Benchmark support for vectorgate. The harness itself is the `gateway` bench target
//! (`benches/gateway/`, run by `cargo xtask bench`); this library holds [`baseline`], the
//! same Milvus upserts sent through milvus-sdk-rust directly, which the harness and the
//! `milvus_tuning` example compare the gateway with.

pub mod baseline;
