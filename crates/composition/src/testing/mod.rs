//! Test doubles of the stores and the outbox (unit tests only).

mod outbox;
mod store;

pub(crate) use outbox::MemoryOutbox;
pub(crate) use store::MemoryStore;
