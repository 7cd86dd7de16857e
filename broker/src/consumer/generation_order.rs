//! Per-key order across resizes (PolarStreams' parent-generation rule, for any re-cut): a
//! group reads a partition only once it has consumed every partition of the previous
//! generation whose tokens overlap it (its parents), to their sealed ends, and those only
//! once it could read them. Records of one key written before a resize are in the parents,
//! those written after it in the child, so a key's records are never read out of order.
//! A pure function of the replicated state: every broker decides alike.

use std::collections::BTreeSet;

use crate::consensus::cluster_state::ClusterState;

/// The partitions of `topic` that `group` may not read yet.
pub fn blocked(state: &ClusterState, group: &str, topic: &str) -> BTreeSet<u32> {
    let mut blocked = BTreeSet::new();
    let mut finished = BTreeSet::new();
    // Generations in order, so every parent is decided before its children.
    for partition in state.layout.all_partitions() {
        if !state.layout.parents(partition).iter().all(|parent| finished.contains(parent)) {
            blocked.insert(partition);
            continue;
        }
        let Some(end) = state.sealed_end(topic, partition) else { continue };
        if end == 0 || state.committed(group, topic, partition).is_some_and(|offset| offset >= end) {
            finished.insert(partition);
        }
    }
    blocked
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::consensus::cluster_state::{Command, OffsetCommit};
    use crate::partitioning::Ring;

    /// 1 broker × 2 ranges grown to 2 brokers (4 partitions, 2..6) and then to 3 (6, 6..12).
    fn grown_twice() -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(Command::AgreeRing { ring: Ring::new(1, 2), names: vec!["a".into()] });
        for (generation, brokers) in [(0, 2), (1, 3)] {
            s.apply(Command::AddBroker { ordinal: brokers - 1, name: format!("b{brokers}") });
            s.apply(Command::Resize { generation, brokers });
        }
        s
    }

    fn seal(s: &mut ClusterState, partition: u32, end: u64) {
        let ends = BTreeMap::from([("t".to_string(), end)]);
        s.apply(Command::Seal { partition, epoch: 0, ends });
    }

    fn commit(s: &mut ClusterState, partition: u32, offset: u64) {
        s.apply(Command::Commit(vec![OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition,
            offset,
            reset: 0,
        }]));
    }

    fn blocked_list(s: &ClusterState) -> Vec<u32> {
        blocked(s, "g", "t").into_iter().collect()
    }

    #[test]
    fn a_child_waits_until_its_parents_are_sealed_and_consumed() {
        let mut s = grown_twice();
        assert_eq!(blocked_list(&s), (2..12).collect::<Vec<_>>(), "only generation 0 is readable while unsealed");
        seal(&mut s, 0, 10);
        seal(&mut s, 1, 0);
        // Partition 1 was empty: its children (4, 5) are readable; partition 0's wait for 10.
        assert_eq!(blocked_list(&s), vec![2, 3, 6, 7, 8, 9, 10, 11]);
        commit(&mut s, 0, 9);
        assert_eq!(blocked_list(&s), vec![2, 3, 6, 7, 8, 9, 10, 11], "one record of partition 0 is not consumed");
        commit(&mut s, 0, 10);
        assert_eq!(blocked_list(&s), (6..12).collect::<Vec<_>>(), "generation 2 waits for generation 1's seals");
        for p in 2..6 {
            seal(&mut s, p, 0);
        }
        assert_eq!(blocked_list(&s), Vec::<u32>::new());
        let other: Vec<u32> = blocked(&s, "other-group", "t").into_iter().collect();
        assert_eq!(
            other,
            vec![2, 3, 6, 7, 8],
            "a group that read nothing reads partition 0 first, and what follows it"
        );
        assert!(blocked(&s, "g", "other-topic").is_empty(), "no records of it were sealed anywhere");
    }

    #[test]
    fn a_grandchild_waits_for_its_grandparents_even_when_its_parents_are_empty() {
        let mut s = grown_twice();
        seal(&mut s, 0, 5);
        seal(&mut s, 1, 0);
        for p in 2..6 {
            seal(&mut s, p, 0);
        }
        // Partition 6 covers the first sixth of the tokens: parent 2, grandparent 0 (unread).
        assert!(blocked(&s, "g", "t").contains(&6));
        assert!(!blocked(&s, "g", "t").contains(&11), "its tokens are all in partition 1, which was empty");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the resizes, seals and commits: when a group may read a partition, every
        /// older partition holding one of its tokens (so any key of it) is sealed and consumed
        /// to its end, so no key's newer record is read before an older one.
        #[test]
        fn a_readable_partition_has_every_older_partition_of_its_tokens_consumed(
            sizes in proptest::collection::vec(1u32..7, 2..5),
            sealed_ends in proptest::collection::vec(proptest::option::of(0u64..3), 64),
            committed in proptest::collection::vec(proptest::option::of(0u64..3), 64),
            tokens in proptest::collection::vec(proptest::prelude::any::<i64>(), 20),
        ) {
            let mut s = ClusterState::default();
            s.apply(Command::AgreeRing { ring: Ring::new(sizes[0], 2), names: vec!["b0".into()] });
            for (generation, &brokers) in sizes.iter().enumerate().skip(1) {
                for ordinal in 0..brokers {
                    s.apply(Command::AddBroker { ordinal, name: format!("b{ordinal}") });
                }
                s.apply(Command::Resize { generation: generation as u32 - 1, brokers });
            }
            for p in s.layout.all_partitions() {
                if let Some(end) = sealed_ends[p as usize % 64] {
                    seal(&mut s, p, end);
                }
                if let Some(offset) = committed[p as usize % 64] {
                    commit(&mut s, p, offset);
                }
            }
            let blocked = blocked(&s, "g", "t");
            let generations: Vec<_> = s.layout.generations().map(|(_, g)| g).collect();
            for token in tokens {
                let path: Vec<u32> = generations.iter().map(|g| g.first + g.ring.partition_of_token(token)).collect();
                for (i, p) in path.iter().enumerate() {
                    if blocked.contains(p) {
                        continue;
                    }
                    for older in &path[..i] {
                        let end = s.sealed_end("t", *older);
                        proptest::prop_assert!(end.is_some(), "{p} readable but {older} is not sealed");
                        let end = end.unwrap_or_default();
                        let done = end == 0 || s.committed("g", "t", *older).is_some_and(|c| c >= end);
                        proptest::prop_assert!(done, "{p} readable but {older} is not consumed to {end}");
                    }
                }
            }
        }
    }
}
