//! Read positions of consumer groups on this broker. A cursor belongs to the member that
//! read it last; when another member takes the partition over (rebalance, timeout), it
//! restarts from the group's committed offset, so records delivered but not committed are
//! delivered again rather than skipped. A cursor read before its partition's offset was reset
//! restarts from the committed offset too: that is how a forced reset moves its members.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::assignment::TopicPartition;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub owner: String,
    /// Next offset to read: the position reached by the owner's last poll.
    pub next: u64,
    /// The last position queued for commit, so unchanged cursors are not committed again.
    pub committed: u64,
    /// The leader epoch the cursor was read in; after leadership moved away and back, the
    /// group's committed offset is newer than anything this broker remembers.
    pub epoch: u64,
    /// The partition's reset count (`ClusterState::reset_count`) the cursor was started under.
    pub reset: u64,
}

/// A position a cursor reached and has not queued for commit yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub tp: TopicPartition,
    pub offset: u64,
    /// The reset count it was read under.
    pub reset: u64,
}

pub type GroupCursors = HashMap<TopicPartition, Cursor>;

/// One lock per group: polls of one group are serialised (they share cursors), polls of
/// different groups run in parallel.
#[derive(Default)]
pub struct Cursors {
    groups: Mutex<HashMap<String, Arc<tokio::sync::Mutex<GroupCursors>>>>,
}

impl Cursors {
    pub fn group(&self, group: &str) -> Arc<tokio::sync::Mutex<GroupCursors>> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.entry(group.to_string()).or_default().clone()
    }

    /// Groups with cursors here.
    pub fn len(&self) -> usize {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Drops the cursors of groups that no longer have members here.
    pub fn retain_groups(&self, keep: impl Fn(&str) -> bool) {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).retain(|g, _| keep(g));
    }
}

/// Positions owned by `consumer` that moved since they were last committed, each at most its
/// cap in `caps` (records the consumer has not processed); marks them committed.
pub fn take_uncommitted(cursors: &mut GroupCursors, consumer: &str, caps: &[(TopicPartition, u64)]) -> Vec<Reached> {
    cursors
        .iter_mut()
        .filter(|(_, c)| c.owner == consumer)
        .filter_map(|(tp, c)| {
            let cap = caps.iter().find(|(capped, _)| capped == tp).map_or(u64::MAX, |(_, cap)| *cap);
            let position = c.next.min(cap);
            (position > c.committed).then(|| {
                c.committed = position;
                Reached { tp: tp.clone(), offset: position, reset: c.reset }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owners_moved_cursors_are_taken_once() {
        let tp = |p| TopicPartition { topic: "t".into(), partition: p };
        let mut cursors = GroupCursors::new();
        cursors.insert(tp(0), Cursor { owner: "a".into(), next: 10, committed: 4, epoch: 0, reset: 2 });
        cursors.insert(tp(1), Cursor { owner: "a".into(), next: 3, committed: 3, epoch: 0, reset: 0 });
        cursors.insert(tp(2), Cursor { owner: "b".into(), next: 9, committed: 0, epoch: 0, reset: 0 });
        let reached = |offset| vec![Reached { tp: tp(0), offset, reset: 2 }];
        assert_eq!(take_uncommitted(&mut cursors, "a", &[(tp(0), 6)]), reached(6), "capped");
        assert_eq!(take_uncommitted(&mut cursors, "a", &[]), reached(10));
        assert!(take_uncommitted(&mut cursors, "a", &[]).is_empty());
    }
}
