//! The cluster's shape in the replicated state: the brokers it knows, the ring generations,
//! and the partitions of older generations that were sealed. A resize is a sequence of these
//! entries, so every broker sees the same shape at the same log position.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cluster_state::ClusterState;
use crate::partitioning::{Layout, Ring};

/// What a broker does in the cluster (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerState {
    /// Known (it asked to join), not yet in the ring.
    Joining,
    /// In the current ring.
    Serving,
    /// Left the ring in a shrink; still holds copies others may need.
    Leaving,
    /// Holds nothing the cluster needs: it may be stopped.
    Removable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEntry {
    /// The host its peers reach it at.
    pub name: String,
    pub state: BrokerState,
}

impl ClusterState {
    /// Keeps the first ring proposed, with the names of its brokers.
    pub(super) fn agree_ring(&mut self, ring: Ring, names: Vec<String>) -> Ring {
        if let Some((_, first)) = self.layout.generations().next() {
            return first.ring;
        }
        self.layout = Layout::new(ring);
        self.brokers = (0..ring.brokers())
            .map(|ordinal| {
                let name = names.get(ordinal as usize).cloned().unwrap_or_default();
                (ordinal, BrokerEntry { name, state: BrokerState::Serving })
            })
            .collect();
        ring
    }

    /// A broker not known yet (or one that was removed) joins as `joining`.
    pub(super) fn add_broker(&mut self, ordinal: u32, name: String) -> bool {
        if self.brokers.get(&ordinal).is_some_and(|b| b.state != BrokerState::Removable) || !self.layout.is_agreed() {
            return false;
        }
        self.brokers.insert(ordinal, BrokerEntry { name, state: BrokerState::Joining });
        true
    }

    pub(super) fn resize(&mut self, generation: u32, brokers: u32) -> bool {
        let Some(ring) = self.layout.current_ring() else { return false };
        let all_known = (0..brokers).all(|o| self.brokers.get(&o).is_some_and(|b| b.state != BrokerState::Removable));
        if generation != self.layout.generation() || brokers == 0 || brokers == ring.brokers() || !all_known {
            return false;
        }
        self.layout.resize(brokers);
        for (&ordinal, entry) in self.brokers.iter_mut() {
            if ordinal < brokers {
                entry.state = BrokerState::Serving;
            } else if entry.state == BrokerState::Serving {
                entry.state = BrokerState::Leaving;
            }
        }
        true
    }

    pub(super) fn seal(&mut self, partition: u32, epoch: u64, ends: BTreeMap<String, u64>) -> bool {
        let older = self.layout.generation_of(partition).is_some() && !self.layout.is_current(partition);
        if !older || self.sealed.contains_key(&partition) || self.leader(partition).epoch != epoch {
            return false;
        }
        self.sealed.insert(partition, ends);
        true
    }

    /// The brokers holding copies of `partition`, its ring owner first.
    pub fn replicas(&self, partition: u32) -> Vec<u32> {
        self.layout.replicas(partition)
    }

    /// Where a sealed partition's `topic` ends for good (`None` while it is not sealed).
    pub fn sealed_end(&self, topic: &str, partition: u32) -> Option<u64> {
        self.sealed.get(&partition).map(|ends| ends.get(topic).copied().unwrap_or(0))
    }

    /// Partitions of older generations not sealed yet.
    pub fn unsealed(&self) -> impl Iterator<Item = u32> + '_ {
        let current = self.layout.current_partitions();
        self.layout.all_partitions().filter(move |p| !current.contains(p) && !self.sealed.contains_key(p))
    }

    /// Brokers in `state`.
    pub fn brokers_in(&self, state: BrokerState) -> impl Iterator<Item = u32> + '_ {
        self.brokers.iter().filter(move |(_, b)| b.state == state).map(|(o, _)| *o)
    }

    /// Why no other resize may start now, if one is still under way.
    pub fn resize_under_way(&self) -> Option<String> {
        if let Some(partition) = self.unsealed().next() {
            return Some(format!("partition {partition} of an older generation is not sealed yet"));
        }
        let leaving: Vec<u32> = self.brokers_in(BrokerState::Leaving).collect();
        (!leaving.is_empty()).then(|| format!("brokers {leaving:?} are still leaving"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::cluster_state::{Command, CommandResult};

    fn three() -> ClusterState {
        let mut s = ClusterState::default();
        let names = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(s.apply(Command::AgreeRing { ring: Ring::new(3, 4), names }), CommandResult::RingAgreed(Ring::new(3, 4)));
        s
    }

    fn add(s: &mut ClusterState, ordinal: u32) -> CommandResult {
        s.apply(Command::AddBroker { ordinal, name: format!("b{ordinal}") })
    }

    #[test]
    fn the_first_ring_proposed_is_the_one_kept() {
        let mut s = three();
        let longer = Command::AgreeRing { ring: Ring::new(4, 4), names: vec!["x".into(); 4] };
        assert_eq!(s.apply(longer), CommandResult::RingAgreed(Ring::new(3, 4)));
        assert_eq!(s.layout.current_ring(), Some(Ring::new(3, 4)), "a broker with a longer list changes nothing");
        assert_eq!(s.brokers[&1], BrokerEntry { name: "b".into(), state: BrokerState::Serving });
        let old: ClusterState = serde_json::from_str(r#"{"consumers":{},"offsets":{},"membership_version":0}"#)
            .expect("a state from before the ring was agreed loads");
        assert!(!old.layout.is_agreed());
    }

    #[test]
    fn a_resize_needs_every_broker_it_names_and_the_current_generation() {
        let mut s = three();
        let resize = |generation, brokers| Command::Resize { generation, brokers };
        assert_eq!(s.apply(resize(0, 4)), CommandResult::Applied(false), "broker 3 has not joined");
        assert_eq!(add(&mut s, 3), CommandResult::Applied(true));
        assert_eq!(add(&mut s, 3), CommandResult::Applied(false), "already known");
        assert_eq!(s.brokers[&3].state, BrokerState::Joining);
        assert_eq!(s.apply(resize(0, 3)), CommandResult::Applied(false), "the same size");
        assert_eq!(s.apply(resize(0, 4)), CommandResult::Applied(true));
        assert_eq!(s.apply(resize(0, 4)), CommandResult::Applied(false), "generation 0 is no longer current");
        assert_eq!(s.layout.generation(), 1);
        assert_eq!(s.brokers[&3].state, BrokerState::Serving);
        assert_eq!(s.layout.current_partitions(), 12..28);
        assert!(s.resize_under_way().is_some_and(|why| why.contains("partition 0")), "generation 0 is not sealed");
        // Shrinking back: broker 3 leaves.
        for p in 0..12 {
            assert_eq!(s.apply(Command::Seal { partition: p, epoch: 0, ends: BTreeMap::new() }), CommandResult::Applied(true));
        }
        assert_eq!(s.resize_under_way(), None);
        assert_eq!(s.apply(resize(1, 3)), CommandResult::Applied(true));
        assert_eq!(s.brokers[&3].state, BrokerState::Leaving);
        assert_eq!(s.brokers[&0].state, BrokerState::Serving);
    }

    #[test]
    fn only_the_current_leader_seals_an_older_partition_and_only_once() {
        let mut s = three();
        add(&mut s, 3);
        s.apply(Command::Resize { generation: 0, brokers: 4 });
        let ends = BTreeMap::from([("t".to_string(), 42)]);
        let seal = |partition, epoch| Command::Seal { partition, epoch, ends: ends.clone() };
        assert_eq!(s.apply(seal(12, 0)), CommandResult::Applied(false), "partition 12 is current");
        s.apply(Command::SetLeader { partition: 5, broker: 2, epoch: 1 });
        assert_eq!(s.apply(seal(5, 0)), CommandResult::Applied(false), "a deposed leader cannot seal");
        assert_eq!(s.apply(seal(5, 1)), CommandResult::Applied(true));
        assert_eq!(s.apply(seal(5, 1)), CommandResult::Applied(false), "sealed once");
        assert_eq!(s.sealed_end("t", 5), Some(42));
        assert_eq!(s.sealed_end("other", 5), Some(0), "a topic with no records there ends at 0");
        assert_eq!(s.sealed_end("t", 4), None);
        assert_eq!(s.unsealed().count(), 11);
    }
}
