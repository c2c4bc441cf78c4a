//! [`SessionFence`]: `Session` reads that see this client's own deletes.

use std::collections::HashMap;

use crate::config::Consistency;

/// Makes `Session` reads see this client's own deletes.
///
/// milvus-sdk-rust's v1 client implements `Session` by remembering the timestamp of each
/// write reply per collection and sending it as the read's `guarantee_timestamp`. Milvus
/// 2.3.5 answers deletes by expression with timestamp 0, so a delete leaves no timestamp
/// behind and a `Session` read right after it may still see the deleted rows (measured).
/// The fence counts deletes per collection; a `Session` read that starts after an
/// unfenced delete is sent as `Strong` (the server then waits for everything acknowledged
/// before the read, the delete included). A later timestamped upsert or a completed strong
/// read covers the deletes before it and lowers the fence again.
#[derive(Debug, Default)]
pub struct SessionFence {
    /// collection -> (deletes done, deletes already covered by a later timestamp).
    state: std::sync::Mutex<HashMap<String, (u64, u64)>>,
}

impl SessionFence {
    fn with<T>(&self, collection: &str, f: impl FnOnce(&mut (u64, u64)) -> T) -> T {
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(collection.to_string()).or_default())
    }

    /// Deletes completed so far (noted when a write or read starts).
    pub fn generation(&self, collection: &str) -> u64 {
        self.with(collection, |(done, _)| *done)
    }

    pub fn delete_done(&self, collection: &str) {
        self.with(collection, |(done, _)| *done += 1);
    }

    /// A write started at `generation` got a server timestamp: it covers those deletes.
    pub fn write_timestamped(&self, collection: &str, generation: u64) {
        self.with(collection, |(_, covered)| {
            *covered = (*covered).max(generation)
        });
    }

    /// The level to send, and the generation to report back to `read_done`.
    pub fn read_level(&self, collection: &str, wanted: Consistency) -> (Consistency, u64) {
        self.with(collection, |(done, covered)| {
            if wanted == Consistency::Session && *done > *covered {
                (Consistency::Strong, *done)
            } else {
                (wanted, 0)
            }
        })
    }

    /// A read escalated at `generation` succeeded: deletes up to it are now visible.
    pub fn read_done(&self, collection: &str, generation: u64) {
        if generation > 0 {
            self.with(collection, |(_, covered)| {
                *covered = (*covered).max(generation)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_reads_after_a_delete_are_sent_strong_until_covered() {
        let fence = SessionFence::default();
        assert_eq!(
            fence.read_level("c", Consistency::Session),
            (Consistency::Session, 0)
        );
        fence.delete_done("c");
        let (level, generation) = fence.read_level("c", Consistency::Session);
        assert_eq!(level, Consistency::Strong);
        // Other collections and other levels are unaffected.
        assert_eq!(
            fence.read_level("d", Consistency::Session).0,
            Consistency::Session
        );
        assert_eq!(
            fence.read_level("c", Consistency::Bounded).0,
            Consistency::Bounded
        );
        // A second delete while the strong read is in flight keeps the fence up.
        fence.delete_done("c");
        fence.read_done("c", generation);
        assert_eq!(
            fence.read_level("c", Consistency::Session).0,
            Consistency::Strong
        );
        // A timestamped upsert that started after both deletes covers them.
        let g = fence.generation("c");
        fence.write_timestamped("c", g);
        assert_eq!(
            fence.read_level("c", Consistency::Session).0,
            Consistency::Session
        );
    }
}
