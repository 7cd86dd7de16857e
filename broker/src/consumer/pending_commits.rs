//! Auto-commits waiting to be written to Raft. Polls only record positions here; a
//! background flush turns everything gathered in one interval into a single Raft entry.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::consensus::cluster_state::OffsetCommit;

type Key = (String, String, u32);

#[derive(Default)]
pub struct PendingCommits {
    offsets: Mutex<BTreeMap<Key, u64>>,
}

impl PendingCommits {
    pub fn add(&self, group: &str, topic: &str, partition: u32, offset: u64) {
        let mut offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        let slot = offsets.entry((group.to_string(), topic.to_string(), partition)).or_insert(0);
        *slot = (*slot).max(offset);
    }

    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        let offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        offsets.get(&(group.to_string(), topic.to_string(), partition)).copied()
    }

    pub fn take(&self) -> Vec<OffsetCommit> {
        let taken = std::mem::take(&mut *self.offsets.lock().unwrap_or_else(|p| p.into_inner()));
        taken
            .into_iter()
            .map(|((group, topic, partition), offset)| OffsetCommit { group, topic, partition, offset })
            .collect()
    }

    /// Puts back a batch whose Raft write failed, keeping any newer position added meanwhile.
    pub fn restore(&self, batch: Vec<OffsetCommit>) {
        for c in batch {
            self.add(&c.group, &c.topic, c.partition, c.offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_position_and_takes_all_at_once() {
        let pending = PendingCommits::default();
        pending.add("g", "t", 0, 5);
        pending.add("g", "t", 0, 3);
        pending.add("g", "t", 1, 7);
        assert_eq!(pending.get("g", "t", 0), Some(5));
        let batch = pending.take();
        assert_eq!(batch.len(), 2);
        assert!(pending.take().is_empty());
        pending.add("g", "t", 0, 9);
        pending.restore(batch);
        assert_eq!(pending.get("g", "t", 0), Some(9));
        assert_eq!(pending.get("g", "t", 1), Some(7));
    }
}
