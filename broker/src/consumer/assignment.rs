//! Dealing a group's partitions to its members. A pure function of the replicated state,
//! so every broker computes the same assignment without talking to the others.

use std::collections::{BTreeMap, BTreeSet};

use crate::consensus::cluster_state::ClusterState;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// The partitions of `group` dealt to each member: partitions of each topic go round-robin to
/// the members subscribed to it (sorted by id), continuing the deal across topics so members
/// get equal shares. Members past the partition count get nothing.
pub fn assign(state: &ClusterState, group: &str, partitions_per_topic: u32) -> BTreeMap<String, Vec<TopicPartition>> {
    let members = state.members(group);
    let topics: BTreeSet<&str> = members.iter().flat_map(|m| m.topics.iter().map(String::as_str)).collect();
    let mut dealt: BTreeMap<String, Vec<TopicPartition>> = members.iter().map(|m| (m.id.clone(), Vec::new())).collect();
    let mut turn = 0usize;
    for topic in topics {
        let subscribed: Vec<&str> =
            members.iter().filter(|m| m.topics.iter().any(|t| t == topic)).map(|m| m.id.as_str()).collect();
        for partition in 0..partitions_per_topic {
            let member = subscribed[turn % subscribed.len()];
            turn += 1;
            if let Some(list) = dealt.get_mut(member) {
                list.push(TopicPartition { topic: topic.to_string(), partition });
            }
        }
    }
    dealt
}

/// The partitions of one consumer (empty when it is not registered).
pub fn assigned_to(state: &ClusterState, consumer_id: &str, partitions_per_topic: u32) -> Vec<TopicPartition> {
    let Some(consumer) = state.consumers.get(consumer_id) else { return Vec::new() };
    assign(state, &consumer.group, partitions_per_topic).remove(consumer_id).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::cluster_state::{consumer, Command};

    fn register(state: &mut ClusterState, id: &str, group: &str, topics: &[&str]) {
        state.apply(Command::Register(consumer(id, group, topics)));
    }

    #[test]
    fn members_get_disjoint_partitions_covering_all() {
        let mut s = ClusterState::default();
        for id in ["c", "a", "b"] {
            register(&mut s, id, "g", &["t1", "t2"]);
        }
        register(&mut s, "other", "h", &["t1"]);
        let dealt = assign(&s, "g", 4);
        let all: Vec<&TopicPartition> = dealt.values().flatten().collect();
        let unique: BTreeSet<&TopicPartition> = all.iter().copied().collect();
        assert_eq!(all.len(), 8);
        assert_eq!(unique.len(), 8, "no partition dealt twice");
        assert!(dealt.values().all(|v| v.len() == 2 || v.len() == 3));
        assert_eq!(assign(&s, "h", 4)["other"].len(), 4, "another group is dealt separately");
    }

    #[test]
    fn topics_go_only_to_their_subscribers() {
        let mut s = ClusterState::default();
        register(&mut s, "a", "g", &["x"]);
        register(&mut s, "b", "g", &["y"]);
        let dealt = assign(&s, "g", 2);
        assert!(dealt["a"].iter().all(|tp| tp.topic == "x"));
        assert!(dealt["b"].iter().all(|tp| tp.topic == "y"));
        assert_eq!(dealt["a"].len() + dealt["b"].len(), 4);
    }

    #[test]
    fn extra_members_get_nothing() {
        let mut s = ClusterState::default();
        for id in ["a", "b", "c"] {
            register(&mut s, id, "g", &["t"]);
        }
        assert_eq!(assigned_to(&s, "c", 2), Vec::new());
        assert_eq!(assigned_to(&s, "a", 2).len(), 1);
        assert_eq!(assigned_to(&s, "unknown", 2), Vec::new());
    }
}
