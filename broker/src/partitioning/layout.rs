//! The ring generations a cluster has served. Each resize opens a generation: a new ring
//! (another broker count, the same ranges per broker) whose partitions get new numbers after
//! those of every earlier generation, so a partition number names one partition for good
//! (its directory, its committed offsets, its leadership). Records stay in the partition they
//! were written to; nothing moves when the ring changes.
//!
//! Per-key order across a change: a key's token lies in exactly one partition of each
//! generation, so the partitions of generation g whose token ranges overlap a partition of
//! generation g + 1 (its parents) hold everything written for its keys before it existed.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::{PartitionInfo, Ring};

/// Copies of each partition (fewer while the ring has fewer brokers).
pub const REPLICATION_FACTOR: u32 = 3;

const TOKEN_SPACE: u128 = 1 << 64;

/// One generation: its ring and the number of its first partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    pub ring: Ring,
    pub first: u32,
}

impl Generation {
    pub fn partitions(&self) -> Range<u32> {
        self.first..self.first + self.ring.partitions()
    }

    /// Positions (token − i64::MIN) of the tokens of `partition`, a partition of this generation.
    fn positions(&self, partition: u32) -> Range<u128> {
        let count = self.ring.partitions() as u128;
        let index = (partition - self.first) as u128;
        // The partition of position x is ⌊x·count / 2⁶⁴⌋ (Ring::partition_of_token), so
        // partition i starts at ⌈i·2⁶⁴ / count⌉.
        (index * TOKEN_SPACE).div_ceil(count)..((index + 1) * TOKEN_SPACE).div_ceil(count)
    }
}

/// Every generation, oldest first; the last one is current. Empty until the cluster agreed
/// on its first ring.
///
/// Invariant: generation g + 1 starts where generation g's partitions end, and every
/// generation has the same ranges per broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    generations: Vec<Generation>,
}

impl Layout {
    pub fn new(ring: Ring) -> Layout {
        Layout { generations: vec![Generation { ring, first: 0 }] }
    }

    pub fn is_agreed(&self) -> bool {
        !self.generations.is_empty()
    }

    /// The current generation's number and shape.
    pub fn current(&self) -> Option<(u32, Generation)> {
        let last = self.generations.last()?;
        Some((self.generations.len() as u32 - 1, *last))
    }

    /// The current generation's number (0 before any ring was agreed).
    pub fn generation(&self) -> u32 {
        self.generations.len().saturating_sub(1) as u32
    }

    pub fn current_ring(&self) -> Option<Ring> {
        self.generations.last().map(|g| g.ring)
    }

    /// Opens a generation of `brokers` brokers (same ranges); false before any ring exists.
    pub fn resize(&mut self, brokers: u32) -> bool {
        let Some(last) = self.generations.last().copied() else { return false };
        let ring = Ring::new(brokers, last.ring.ranges());
        self.generations.push(Generation { ring, first: last.first + last.ring.partitions() });
        true
    }

    /// Every partition number in use, of every generation.
    pub fn all_partitions(&self) -> Range<u32> {
        0..self.generations.last().map_or(0, |g| g.first + g.ring.partitions())
    }

    /// The current generation's partitions.
    pub fn current_partitions(&self) -> Range<u32> {
        self.generations.last().map_or(0..0, Generation::partitions)
    }

    pub fn generations(&self) -> impl Iterator<Item = (u32, Generation)> + '_ {
        self.generations.iter().enumerate().map(|(n, g)| (n as u32, *g))
    }

    /// The generation `partition` belongs to, with its number.
    pub fn generation_of(&self, partition: u32) -> Option<(u32, Generation)> {
        self.generations().find(|(_, g)| g.partitions().contains(&partition))
    }

    pub fn is_current(&self, partition: u32) -> bool {
        self.current_partitions().contains(&partition)
    }

    /// The partition of the current generation holding `key`.
    pub fn partition_of_key(&self, key: &[u8]) -> Option<u32> {
        let last = self.generations.last()?;
        Some(last.first + last.ring.partition_of_key(key))
    }

    /// The current partitions whose ring owner is broker `broker` (empty if it is not in the ring).
    pub fn partitions_of_broker(&self, broker: u32) -> Range<u32> {
        match self.generations.last() {
            Some(g) if broker < g.ring.brokers() => {
                let local = g.ring.partitions_of_broker(broker);
                g.first + local.start..g.first + local.end
            }
            _ => 0..0,
        }
    }

    /// The ring owner of `partition` in its generation.
    pub fn owner(&self, partition: u32) -> Option<u32> {
        let (_, g) = self.generation_of(partition)?;
        Some(g.ring.broker_of(partition - g.first))
    }

    /// PolarStreams' chunk fields of `partition`, from its generation's ring.
    pub fn info(&self, partition: u32) -> Option<PartitionInfo> {
        let (number, g) = self.generation_of(partition)?;
        Some(g.ring.info(partition - g.first, number))
    }

    /// The brokers of `partition`'s generation holding its copies: its ring owner and the
    /// next brokers along that ring.
    pub fn replicas(&self, partition: u32) -> Vec<u32> {
        let Some((_, g)) = self.generation_of(partition) else { return Vec::new() };
        let brokers = g.ring.brokers();
        let owner = g.ring.broker_of(partition - g.first);
        (0..REPLICATION_FACTOR.min(brokers)).map(|step| (owner + step) % brokers).collect()
    }

    /// The partitions of the previous generation whose tokens overlap `partition`'s: every
    /// record of its keys written before `partition`'s generation opened is in one of them.
    pub fn parents(&self, partition: u32) -> Vec<u32> {
        let Some((number, g)) = self.generation_of(partition) else { return Vec::new() };
        let Some(previous) = number.checked_sub(1).map(|n| self.generations[n as usize]) else { return Vec::new() };
        let mine = g.positions(partition);
        previous.partitions().filter(|p| overlap(&previous.positions(*p), &mine)).collect()
    }
}

fn overlap(a: &Range<u128>, b: &Range<u128>) -> bool {
    a.start < b.end && b.start < a.end
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grown(sizes: &[u32]) -> Layout {
        let mut layout = Layout::new(Ring::new(sizes[0], 4));
        for &brokers in &sizes[1..] {
            assert!(layout.resize(brokers));
        }
        layout
    }

    #[test]
    fn generations_number_their_partitions_after_the_previous_ones() {
        let layout = grown(&[3, 6, 3]);
        assert_eq!(layout.all_partitions(), 0..48);
        assert_eq!(layout.current_partitions(), 36..48);
        assert_eq!(layout.generation(), 2);
        assert_eq!(layout.generation_of(12).map(|(n, _)| n), Some(1));
        assert_eq!(layout.owner(12), Some(0));
        assert_eq!(layout.owner(35), Some(5));
        assert_eq!(layout.replicas(35), vec![5, 0, 1], "the copies follow its own generation's ring");
        assert_eq!(layout.partitions_of_broker(2), 44..48);
        assert_eq!(layout.partitions_of_broker(3), 0..0, "broker 3 is not in the current ring");
        assert_eq!(layout.info(12).map(|i| i.token), Some(i64::MIN));
        assert_eq!(Layout::default().partition_of_key(b"k"), None, "no ring agreed yet");
    }

    #[test]
    fn replicas_are_the_owner_and_the_next_brokers_of_the_partitions_ring() {
        assert_eq!(Layout::new(Ring::new(5, 4)).replicas(0), vec![0, 1, 2]);
        assert_eq!(Layout::new(Ring::new(5, 4)).replicas(19), vec![4, 0, 1], "wraps around");
        assert_eq!(Layout::new(Ring::new(2, 4)).replicas(5), vec![1, 0]);
        assert_eq!(Layout::new(Ring::new(1, 4)).replicas(3), vec![0]);
    }

    #[test]
    fn doubling_splits_each_partition_in_two_and_halving_joins_them() {
        let layout = grown(&[3, 6, 3]);
        assert_eq!(layout.parents(0), Vec::<u32>::new(), "the first generation has no parents");
        assert_eq!(layout.parents(12), vec![0]);
        assert_eq!(layout.parents(13), vec![0]);
        assert_eq!(layout.parents(14), vec![1]);
        assert_eq!(layout.parents(36), vec![12, 13]);
        assert_eq!(layout.parents(47), vec![34, 35]);
    }

    #[test]
    fn an_uneven_recut_gives_a_partition_every_overlapping_parent() {
        let layout = grown(&[3, 4]);
        // 12 partitions re-cut into 16: new partition 1 covers [1/16, 2/16), which overlaps old
        // partition 0 [0, 1/12) and old partition 1 [1/12, 2/12).
        assert_eq!(layout.parents(13), vec![0, 1]);
        assert_eq!(layout.parents(12), vec![0]);
        assert_eq!(layout.parents(27), vec![11]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the sequence of sizes, a token's partition in each generation has its
        /// partition of the previous generation among its parents, and every parent shares
        /// a token with it.
        #[test]
        fn parents_are_exactly_the_overlapping_partitions(
            sizes in proptest::collection::vec(1u32..9, 2..6),
            tokens in proptest::collection::vec(any::<i64>(), 1..50),
        ) {
            let layout = grown(&sizes);
            let generations: Vec<Generation> = layout.generations().map(|(_, g)| g).collect();
            for token in tokens {
                for pair in generations.windows(2) {
                    let (old, new) = (pair[0], pair[1]);
                    let child = new.first + new.ring.partition_of_token(token);
                    let parent = old.first + old.ring.partition_of_token(token);
                    prop_assert!(layout.parents(child).contains(&parent));
                }
            }
            for (_, g) in layout.generations().skip(1) {
                for child in g.partitions() {
                    let range = g.positions(child);
                    for parent in layout.parents(child) {
                        let (_, old) = layout.generation_of(parent).unwrap();
                        let shared = range.start.max(old.positions(parent).start);
                        let token = (shared as i128 + i64::MIN as i128) as i64;
                        prop_assert_eq!(old.first + old.ring.partition_of_token(token), parent);
                        prop_assert_eq!(g.first + g.ring.partition_of_token(token), child);
                    }
                }
            }
        }
    }
}
