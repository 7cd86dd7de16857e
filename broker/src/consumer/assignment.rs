//! Dealing a group's partitions to its members. A pure function of the replicated state,
//! so every broker computes the same assignment without talking to the others.

use std::collections::{BTreeMap, BTreeSet};

use super::generation_order::blocked;
use crate::consensus::cluster_state::ClusterState;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

/// The partitions of `group` dealt to each member: each generation's partitions of each topic
/// go round-robin to the members subscribed to it (sorted by id), continuing the deal across
/// topics so members get equal shares, one generation after the other, so a resize adds to
/// the deal without changing who has the older partitions. Members past the partition count
/// get nothing.
pub fn assign(state: &ClusterState, group: &str) -> BTreeMap<String, Vec<TopicPartition>> {
    let members = state.members(group);
    let topics: BTreeSet<&str> = members.iter().flat_map(|m| m.topics.iter().map(String::as_str)).collect();
    let mut dealt: BTreeMap<String, Vec<TopicPartition>> = members.iter().map(|m| (m.id.clone(), Vec::new())).collect();
    for (_, generation) in state.layout.generations() {
        let mut turn = 0usize;
        for &topic in &topics {
            let subscribed: Vec<&str> =
                members.iter().filter(|m| m.topics.iter().any(|t| t == topic)).map(|m| m.id.as_str()).collect();
            for partition in generation.partitions() {
                let member = subscribed[turn % subscribed.len()];
                turn += 1;
                if let Some(list) = dealt.get_mut(member) {
                    list.push(TopicPartition { topic: topic.to_string(), partition });
                }
            }
        }
    }
    dealt
}

/// The partitions of one consumer that its group may read now (empty when it is not
/// registered): those dealt to it, but those waiting for an older generation's ([`blocked`]).
pub fn assigned_to(state: &ClusterState, consumer_id: &str) -> Vec<TopicPartition> {
    let Some(consumer) = state.consumers.get(consumer_id) else { return Vec::new() };
    let mine = assign(state, &consumer.group).remove(consumer_id).unwrap_or_default();
    let blocked: BTreeMap<&str, BTreeSet<u32>> =
        consumer.topics.iter().map(|t| (t.as_str(), blocked(state, &consumer.group, t))).collect();
    mine.into_iter().filter(|tp| !blocked.get(tp.topic.as_str()).is_some_and(|b| b.contains(&tp.partition))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::cluster_state::{consumer, Command};
    use crate::partitioning::Ring;

    /// A state whose ring has `partitions` partitions (one broker).
    fn with_partitions(partitions: u32) -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(Command::AgreeRing { ring: Ring::new(1, partitions), names: vec!["a".into()] });
        s
    }

    fn register(state: &mut ClusterState, id: &str, group: &str, topics: &[&str]) {
        state.apply(Command::Register(consumer(id, group, topics)));
    }

    #[test]
    fn members_get_disjoint_partitions_covering_all() {
        let mut s = with_partitions(4);
        for id in ["c", "a", "b"] {
            register(&mut s, id, "g", &["t1", "t2"]);
        }
        register(&mut s, "other", "h", &["t1"]);
        let dealt = assign(&s, "g");
        let all: Vec<&TopicPartition> = dealt.values().flatten().collect();
        let unique: BTreeSet<&TopicPartition> = all.iter().copied().collect();
        assert_eq!(all.len(), 8);
        assert_eq!(unique.len(), 8, "no partition dealt twice");
        assert!(dealt.values().all(|v| v.len() == 2 || v.len() == 3));
        assert_eq!(assign(&s, "h")["other"].len(), 4, "another group is dealt separately");
    }

    #[test]
    fn topics_go_only_to_their_subscribers() {
        let mut s = with_partitions(2);
        register(&mut s, "a", "g", &["x"]);
        register(&mut s, "b", "g", &["y"]);
        let dealt = assign(&s, "g");
        assert!(dealt["a"].iter().all(|tp| tp.topic == "x"));
        assert!(dealt["b"].iter().all(|tp| tp.topic == "y"));
        assert_eq!(dealt["a"].len() + dealt["b"].len(), 4);
    }

    #[test]
    fn extra_members_get_nothing() {
        let mut s = with_partitions(2);
        for id in ["a", "b", "c"] {
            register(&mut s, id, "g", &["t"]);
        }
        assert_eq!(assigned_to(&s, "c"), Vec::new());
        assert_eq!(assigned_to(&s, "a").len(), 1);
        assert_eq!(assigned_to(&s, "unknown"), Vec::new());
    }

    #[test]
    fn a_resize_adds_to_the_deal_and_keeps_the_older_partitions_where_they_were() {
        let mut s = with_partitions(4);
        for id in ["a", "b"] {
            register(&mut s, id, "g", &["t", "u"]);
        }
        let before = assign(&s, "g");
        s.apply(Command::AddBroker { ordinal: 1, name: "b".into() });
        s.apply(Command::Resize { generation: 0, brokers: 2 });
        let after = assign(&s, "g");
        for (member, older) in &before {
            assert_eq!(&after[member][..older.len()], &older[..], "{member} keeps its partitions");
            assert_eq!(after[member].len(), older.len() + 8, "and gets half of the 16 new ones");
        }
        assert!(assigned_to(&s, "a").iter().all(|tp| tp.partition < 4), "the new ones wait for the old ones' seals");
    }
}
