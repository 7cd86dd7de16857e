//! Auto-commits waiting to be written to Raft. Polls only record positions here; a
//! background flush turns everything gathered in one interval into a single Raft entry.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::consensus::cluster_state::OffsetCommit;

type Key = (String, String, u32);

/// A position waiting to be committed, with the partition's reset count it was read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    offset: u64,
    reset: u64,
}

#[derive(Default)]
pub struct PendingCommits {
    offsets: Mutex<BTreeMap<Key, Pending>>,
}

impl PendingCommits {
    /// Keeps the highest position read under the newest reset count: one read under an older
    /// count would be ignored by the commit anyway (see `ClusterState::commit`).
    pub fn add(&self, group: &str, topic: &str, partition: u32, offset: u64, reset: u64) {
        let mut offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        let slot =
            offsets.entry((group.to_string(), topic.to_string(), partition)).or_insert(Pending { offset, reset });
        if reset > slot.reset {
            *slot = Pending { offset, reset };
        } else if reset == slot.reset {
            slot.offset = slot.offset.max(offset);
        }
    }

    /// The pending position of a partition read under reset count `reset`, if there is one.
    pub fn get(&self, group: &str, topic: &str, partition: u32, reset: u64) -> Option<u64> {
        let offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        let pending = offsets.get(&(group.to_string(), topic.to_string(), partition))?;
        (pending.reset == reset).then_some(pending.offset)
    }

    pub fn take(&self) -> Vec<OffsetCommit> {
        let taken = std::mem::take(&mut *self.offsets.lock().unwrap_or_else(|p| p.into_inner()));
        taken
            .into_iter()
            .map(|((group, topic, partition), Pending { offset, reset })| OffsetCommit {
                group,
                topic,
                partition,
                offset,
                reset,
            })
            .collect()
    }

    /// Puts back a batch whose Raft write failed, keeping any newer position added meanwhile.
    pub fn restore(&self, batch: Vec<OffsetCommit>) {
        for c in batch {
            self.add(&c.group, &c.topic, c.partition, c.offset, c.reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_position_and_takes_all_at_once() {
        let pending = PendingCommits::default();
        pending.add("g", "t", 0, 5, 0);
        pending.add("g", "t", 0, 3, 0);
        pending.add("g", "t", 1, 7, 0);
        assert_eq!(pending.get("g", "t", 0, 0), Some(5));
        let batch = pending.take();
        assert_eq!(batch.len(), 2);
        assert!(pending.take().is_empty());
        pending.add("g", "t", 0, 9, 0);
        pending.restore(batch);
        assert_eq!(pending.get("g", "t", 0, 0), Some(9));
        assert_eq!(pending.get("g", "t", 1, 0), Some(7));
    }

    #[test]
    fn a_position_read_after_a_reset_replaces_one_read_before_it_even_if_lower() {
        let pending = PendingCommits::default();
        pending.add("g", "t", 0, 50, 0);
        pending.add("g", "t", 0, 12, 1);
        pending.add("g", "t", 0, 60, 0);
        assert_eq!(pending.get("g", "t", 0, 0), None, "what was read before the reset does not count");
        assert_eq!(pending.get("g", "t", 0, 1), Some(12));
        let taken = pending.take();
        assert_eq!((taken[0].offset, taken[0].reset), (12, 1));
    }
}
