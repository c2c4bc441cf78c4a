//! [`SessionFence`]: `Session` reads that see this client's own writes and deletes.

use std::collections::HashMap;

use crate::config::Consistency;

/// Makes `Session` reads see this client's own writes and deletes.
///
/// Milvus implements `Session` on the client: a read sends, as its `guarantee_timestamp`,
/// the timestamp of the client's last write reply for the collection, and the server waits
/// until it has applied everything up to it. Milvus 2.3.5 answers deletes by expression with
/// timestamp 0, so a delete leaves no timestamp behind and a `Session` read right after it
/// may still see the deleted rows (measured). The fence counts deletes per collection; a
/// `Session` read that starts after an unfenced delete is sent as `Strong` (the server then
/// waits for everything acknowledged before the read, the delete included). A later
/// timestamped upsert or a completed strong read covers the deletes before it and lowers
/// the fence again.
#[derive(Debug, Default)]
pub struct SessionFence {
    state: std::sync::Mutex<HashMap<String, Collection>>,
}

#[derive(Debug, Default)]
struct Collection {
    /// Deletes done.
    deletes: u64,
    /// Deletes already covered by a later timestamp.
    covered: u64,
    /// The newest write timestamp a reply carried.
    last_write: u64,
}

/// How a read is sent: its level, the `guarantee_timestamp` that goes with it, and the
/// generation to report back to [`SessionFence::read_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFence {
    pub level: Consistency,
    pub guarantee_timestamp: u64,
    pub generation: u64,
}

impl SessionFence {
    fn with<T>(&self, collection: &str, f: impl FnOnce(&mut Collection) -> T) -> T {
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(collection.to_string()).or_default())
    }

    /// Deletes completed so far (noted when a write or read starts).
    pub fn generation(&self, collection: &str) -> u64 {
        self.with(collection, |c| c.deletes)
    }

    pub fn delete_done(&self, collection: &str) {
        self.with(collection, |c| c.deletes += 1);
    }

    /// A write started at `generation` got the server timestamp `timestamp`: `Session`
    /// reads wait for it, and it covers the deletes before it.
    pub fn write_timestamped(&self, collection: &str, generation: u64, timestamp: u64) {
        self.with(collection, |c| {
            c.covered = c.covered.max(generation);
            c.last_write = c.last_write.max(timestamp);
        });
    }

    /// How to send a read wanted at `wanted`. The guarantee timestamps are Milvus's own
    /// conventions: 0 lets the server take the newest (Strong), 1 any (Eventually), 2 its
    /// configured staleness (Bounded).
    pub fn read(&self, collection: &str, wanted: Consistency) -> ReadFence {
        self.with(collection, |c| {
            let (level, generation) = if wanted == Consistency::Session && c.deletes > c.covered {
                (Consistency::Strong, c.deletes)
            } else {
                (wanted, 0)
            };
            let guarantee_timestamp = match level {
                Consistency::Strong => 0,
                Consistency::Bounded => 2,
                Consistency::Eventually => 1,
                Consistency::Session => c.last_write.max(1),
            };
            ReadFence {
                level,
                guarantee_timestamp,
                generation,
            }
        })
    }

    /// A read escalated at `generation` succeeded: deletes up to it are now visible.
    pub fn read_done(&self, collection: &str, generation: u64) {
        if generation > 0 {
            self.with(collection, |c| c.covered = c.covered.max(generation));
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
            fence.read("c", Consistency::Session).level,
            Consistency::Session
        );
        fence.delete_done("c");
        let read = fence.read("c", Consistency::Session);
        assert_eq!(read.level, Consistency::Strong);
        // Other collections and other levels are unaffected.
        assert_eq!(
            fence.read("d", Consistency::Session).level,
            Consistency::Session
        );
        assert_eq!(
            fence.read("c", Consistency::Bounded).level,
            Consistency::Bounded
        );
        // A second delete while the strong read is in flight keeps the fence up.
        fence.delete_done("c");
        fence.read_done("c", read.generation);
        assert_eq!(
            fence.read("c", Consistency::Session).level,
            Consistency::Strong
        );
        // A timestamped upsert that started after both deletes covers them.
        let g = fence.generation("c");
        fence.write_timestamped("c", g, 7);
        assert_eq!(
            fence.read("c", Consistency::Session).level,
            Consistency::Session
        );
    }

    #[test]
    fn session_reads_wait_for_the_newest_write_of_their_collection() {
        let fence = SessionFence::default();
        let ts = |c: &str, level| fence.read(c, level).guarantee_timestamp;
        assert_eq!(ts("c", Consistency::Session), 1, "no write yet: any");
        fence.write_timestamped("c", 0, 450);
        fence.write_timestamped("c", 0, 420);
        assert_eq!(
            ts("c", Consistency::Session),
            450,
            "the newest, not the last"
        );
        assert_eq!(ts("d", Consistency::Session), 1);
        assert_eq!(ts("c", Consistency::Strong), 0);
        assert_eq!(ts("c", Consistency::Eventually), 1);
        assert_eq!(ts("c", Consistency::Bounded), 2);
    }
}
