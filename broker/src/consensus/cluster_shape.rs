//! The cluster's shape in the replicated state: the brokers it knows, the ring generations,
//! and the partitions of older generations that were sealed. A resize is a sequence of these
//! entries, so every broker sees the same shape at the same log position.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::topics::TopicState;

use super::cluster_state::{ClusterState, PartitionLeader};
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

    pub(super) fn seal(&mut self, partition: u32, epoch: u64, mut ends: BTreeMap<String, u64>) -> bool {
        let older = self.layout.generation_of(partition).is_some() && !self.layout.is_current(partition);
        if !older || self.sealed.contains_key(&partition) || self.leader(partition).epoch != epoch {
            return false;
        }
        // A topic being deleted keeps no end: one created again under its name starts empty.
        ends.retain(|topic, _| self.topics.get(topic).is_none_or(|t| t.state == TopicState::Live));
        self.sealed.insert(partition, ends);
        true
    }

    pub(super) fn move_copies(&mut self, partition: u32, copies: Vec<u32>, leader: u32, epoch: u64) -> bool {
        let applies = self.sealed.contains_key(&partition)
            && copies.contains(&leader)
            && epoch == self.leader(partition).epoch + 1
            && copies.iter().all(|b| self.brokers.get(b).is_some_and(|b| b.state != BrokerState::Removable));
        if applies {
            self.moved_copies.insert(partition, copies);
            self.leaders.insert(partition, PartitionLeader { broker: leader, epoch });
        }
        applies
    }

    pub(super) fn remove_broker(&mut self, ordinal: u32) -> bool {
        let leaving = self.brokers.get(&ordinal).is_some_and(|b| b.state == BrokerState::Leaving);
        if !leaving || !self.holds_nothing(ordinal) {
            return false;
        }
        if let Some(entry) = self.brokers.get_mut(&ordinal) {
            entry.state = BrokerState::Removable;
        }
        true
    }

    /// Whether `broker` neither holds a copy of any partition nor leads one.
    pub fn holds_nothing(&self, broker: u32) -> bool {
        self.layout.all_partitions().all(|p| self.leader(p).broker != broker && !self.replicas(p).contains(&broker))
    }

    /// The brokers holding copies of `partition`: its ring owner and the next ones (or, once
    /// they moved in a shrink, the brokers they moved to), its leader among them.
    pub fn replicas(&self, partition: u32) -> Vec<u32> {
        self.moved_copies.get(&partition).cloned().unwrap_or_else(|| self.layout.replicas(partition))
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

    /// Why a resize to `brokers` brokers is refused now (SPEC §9), if it is.
    pub fn resize_refusal(&self, brokers: u32) -> Option<String> {
        let ring = self.layout.current_ring()?;
        let known =
            (0..).take_while(|o| self.brokers.get(o).is_some_and(|b| b.state != BrokerState::Removable)).count();
        if brokers == ring.brokers() {
            return None;
        }
        if brokers == 0 {
            return Some("a cluster needs at least one broker".into());
        }
        if brokers as usize > known {
            return Some(format!(
                "the cluster knows {known} brokers (ordinals 0 to {}): start the others before growing to {brokers}",
                known.saturating_sub(1)
            ));
        }
        self.resize_under_way().map(|why| format!("another resize is under way: {why}"))
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
        assert_eq!(
            s.apply(Command::AgreeRing { ring: Ring::new(3, 4), names }),
            CommandResult::RingAgreed(Ring::new(3, 4))
        );
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
            assert_eq!(
                s.apply(Command::Seal { partition: p, epoch: 0, ends: BTreeMap::new() }),
                CommandResult::Applied(true)
            );
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

    #[test]
    fn copies_move_only_for_a_sealed_partition_in_the_next_epoch_and_a_broker_holding_one_is_not_removable() {
        let mut s = three();
        add(&mut s, 3);
        s.apply(Command::Resize { generation: 0, brokers: 4 });
        for p in 0..12 {
            s.apply(Command::Seal { partition: p, epoch: 0, ends: BTreeMap::new() });
        }
        s.apply(Command::Resize { generation: 1, brokers: 3 });
        // Partition 24 (generation 1, owner 3) has its copies on 3, 0, 1.
        assert_eq!(s.replicas(24), vec![3, 0, 1]);
        let to_three = |copies: Vec<u32>, leader, epoch| Command::MoveCopies { partition: 24, copies, leader, epoch };
        assert_eq!(s.apply(to_three(vec![0, 1, 2], 0, 1)), CommandResult::Applied(false), "24 is not sealed");
        s.apply(Command::Seal { partition: 24, epoch: 0, ends: BTreeMap::new() });
        assert_eq!(s.apply(Command::RemoveBroker { ordinal: 3 }), CommandResult::Applied(false), "3 holds copies");
        assert_eq!(s.apply(to_three(vec![0, 1, 2], 3, 1)), CommandResult::Applied(false), "the leader has no copy");
        assert_eq!(s.apply(to_three(vec![0, 1, 2], 0, 2)), CommandResult::Applied(false), "not the next epoch");
        assert_eq!(s.apply(to_three(vec![0, 1, 2], 0, 1)), CommandResult::Applied(true));
        assert_eq!(s.replicas(24), vec![0, 1, 2]);
        assert_eq!(s.leader(24), PartitionLeader { broker: 0, epoch: 1 });
        assert!(!s.holds_nothing(3), "other partitions of generation 1 still have copies on 3");
        let on_three: Vec<u32> = (12..28).filter(|p| s.replicas(*p).contains(&3)).collect();
        for p in on_three {
            let epoch = s.leader(p).epoch;
            s.apply(Command::Seal { partition: p, epoch, ends: BTreeMap::new() });
            let epoch = epoch + 1;
            s.apply(Command::MoveCopies { partition: p, copies: vec![0, 1, 2], leader: 0, epoch });
        }
        assert!(s.holds_nothing(3));
        assert_eq!(s.apply(Command::RemoveBroker { ordinal: 3 }), CommandResult::Applied(true));
        assert_eq!(s.brokers[&3].state, BrokerState::Removable);
        assert_eq!(s.brokers_in(BrokerState::Leaving).count(), 0);
        assert_eq!(add(&mut s, 3), CommandResult::Applied(true), "a removed broker may join again");
    }

    #[test]
    fn a_resize_is_refused_below_one_above_the_known_brokers_and_while_another_runs() {
        let mut s = three();
        assert_eq!(s.resize_refusal(3), None, "the same size is a no-op");
        assert!(s.resize_refusal(0).is_some_and(|why| why.contains("at least one")));
        assert!(s.resize_refusal(4).is_some_and(|why| why.contains("knows 3 brokers")));
        assert_eq!(s.resize_refusal(2), None);
        s.apply(Command::Resize { generation: 0, brokers: 2 });
        assert!(s.resize_refusal(3).is_some_and(|why| why.contains("under way")), "generation 0 is not sealed");
        assert_eq!(s.resize_refusal(2), None, "the same size again");
    }
}
