//! Test doubles of the stores and the outbox (unit tests only).

mod gate;
mod outbox;
mod store;

pub(crate) use gate::{Call, Gated, Held};
pub(crate) use outbox::MemoryOutbox;
pub(crate) use store::{MemoryState, MemoryStore};
