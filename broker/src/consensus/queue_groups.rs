//! Queue groups in the Raft state (SPEC §14): each group's settings and, per partition of its
//! topics, which records are acknowledged: all below a floor and some above it. That is all
//! that must survive a failover; leases live on the partition's leader only.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Most queue groups the cluster keeps; creating another is refused.
pub const MAX_QUEUE_GROUPS: usize = 1_000;
/// How far above its floor a partition's acknowledged offsets may be. A leader leases at
/// most `RUNNEL_QUEUE_MAX_IN_FLIGHT` (at most this) records past the floor, so only a faulty
/// proposal goes further; those offsets are ignored, which keeps each partition's set bounded.
pub const MAX_ACKED_AHEAD: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSettings {
    pub topics: Vec<String>,
    pub ack_wait_ms: u64,
    /// Deliveries before a record goes to the dead-letter topic; -1: unlimited.
    pub max_deliver: i64,
    pub dead_letter_topic: Option<String>,
    /// One lease at a time per key, in offset order.
    pub ordered: bool,
}

impl QueueSettings {
    /// SPEC §14's defaults, over `topics`.
    pub fn defaults(topics: Vec<String>) -> QueueSettings {
        QueueSettings { topics, ack_wait_ms: 30_000, max_deliver: -1, dead_letter_topic: None, ordered: false }
    }
}

/// The acknowledged records of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckedRange {
    /// Every record below it is acknowledged.
    pub floor: u64,
    /// Acknowledged records above the floor (never the floor itself).
    pub above: BTreeSet<u64>,
}

impl AckedRange {
    /// Raises the floor to `floor` (the leader's: below it all is acknowledged or removed by
    /// retention) and records `offsets`; false, recording nothing, if one lies too far ahead.
    fn ack(&mut self, floor: u64, offsets: &[u64]) -> bool {
        let floor = self.floor.max(floor);
        if offsets.iter().any(|&o| o >= floor + MAX_ACKED_AHEAD) {
            return false;
        }
        self.floor = floor;
        self.above = self.above.split_off(&floor);
        self.above.extend(offsets.iter().filter(|&&o| o >= floor));
        while self.above.remove(&self.floor) {
            self.floor += 1;
        }
        true
    }

    pub fn contains(&self, offset: u64) -> bool {
        offset < self.floor || self.above.contains(&offset)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueGroup {
    pub settings: QueueSettings,
    /// topic → partition → what is acknowledged.
    pub acked: BTreeMap<String, BTreeMap<u32, AckedRange>>,
}

/// A leader's acknowledgements of one partition, made while it led it in `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAcks {
    pub topic: String,
    pub partition: u32,
    pub epoch: u64,
    /// The leader's floor: every record below it is acknowledged or was removed by retention.
    pub floor: u64,
    pub offsets: Vec<u64>,
}

/// What [`QueueGroups::set`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueSetOutcome {
    Created,
    Changed,
    /// The group has these settings (unchanged, or kept because only creation was asked).
    Kept(QueueSettings),
    /// [`MAX_QUEUE_GROUPS`] exist.
    Full,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueGroups {
    groups: BTreeMap<String, QueueGroup>,
}

impl QueueGroups {
    pub fn get(&self, group: &str) -> Option<&QueueGroup> {
        self.groups.get(group)
    }

    /// Creates `group` with `settings`, or changes it to them unless `only_create`. A topic
    /// the new settings drop loses what was acknowledged of it.
    pub fn set(&mut self, group: String, settings: QueueSettings, only_create: bool) -> QueueSetOutcome {
        let full = self.groups.len() >= MAX_QUEUE_GROUPS;
        match self.groups.get_mut(&group) {
            Some(existing) if only_create || existing.settings == settings => {
                QueueSetOutcome::Kept(existing.settings.clone())
            }
            Some(existing) => {
                existing.acked.retain(|topic, _| settings.topics.contains(topic));
                existing.settings = settings;
                QueueSetOutcome::Changed
            }
            None if full => QueueSetOutcome::Full,
            None => {
                self.groups.insert(group, QueueGroup { settings, acked: BTreeMap::new() });
                QueueSetOutcome::Created
            }
        }
    }

    /// Records `acks` of `group` whose epoch `current_epoch` says is still the partition's
    /// (a deposed leader's acknowledgements never count: its successor may have leased those
    /// records again); for each, whether it counted.
    pub fn ack(&mut self, group: &str, acks: &[PartitionAcks], current_epoch: impl Fn(u32) -> u64) -> Vec<bool> {
        let Some(queue) = self.groups.get_mut(group) else { return vec![false; acks.len()] };
        acks.iter()
            .map(|a| {
                a.epoch == current_epoch(a.partition)
                    && queue.settings.topics.contains(&a.topic)
                    && queue
                        .acked
                        .entry(a.topic.clone())
                        .or_default()
                        .entry(a.partition)
                        .or_default()
                        .ack(a.floor, &a.offsets)
            })
            .collect()
    }

    /// `topic` was deleted: no group reads it any more (a group left without topics stays,
    /// for its settings).
    pub fn topic_deleted(&mut self, topic: &str) {
        for group in self.groups.values_mut() {
            group.settings.topics.retain(|t| t != topic);
            group.acked.remove(topic);
        }
    }

    /// What is acknowledged of `topic`'s `partition` in `group` (nothing for an unknown one).
    pub fn acked(&self, group: &str, topic: &str, partition: u32) -> Option<&AckedRange> {
        self.groups.get(group).and_then(|g| g.acked.get(topic)).and_then(|t| t.get(&partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(partition: u32, epoch: u64, offsets: &[u64]) -> PartitionAcks {
        PartitionAcks { topic: "jobs".into(), partition, epoch, floor: 0, offsets: offsets.to_vec() }
    }

    fn acked(queues: &QueueGroups, partition: u32) -> AckedRange {
        queues.acked("g", "jobs", partition).cloned().unwrap_or_default()
    }

    #[test]
    fn acks_move_the_floor_over_contiguous_offsets_and_only_in_the_current_epoch() {
        let mut queues = QueueGroups::default();
        assert_eq!(
            queues.set("g".into(), QueueSettings::defaults(vec!["jobs".into()]), true),
            QueueSetOutcome::Created
        );
        let epoch_of = |p: u32| if p == 0 { 3 } else { 0 };
        assert_eq!(
            queues.ack("g", &[acks(0, 3, &[1, 2]), acks(0, 2, &[0]), acks(1, 0, &[0])], epoch_of),
            [true, false, true]
        );
        assert_eq!(acked(&queues, 0), AckedRange { floor: 0, above: [1, 2].into() });
        queues.ack("g", &[acks(0, 3, &[0])], epoch_of);
        assert_eq!(acked(&queues, 0), AckedRange { floor: 3, above: BTreeSet::new() });
        assert_eq!(queues.ack("g", &[acks(0, 3, &[4, 3 + MAX_ACKED_AHEAD])], epoch_of), [false], "too far ahead");
        assert_eq!(acked(&queues, 0), AckedRange { floor: 3, above: BTreeSet::new() }, "nothing of it recorded");
        // Retention removed records up to 500: the leader's floor moved past them.
        let past_retention = PartitionAcks { floor: 500, ..acks(0, 3, &[501]) };
        assert_eq!(queues.ack("g", &[past_retention], epoch_of), [true]);
        assert_eq!(acked(&queues, 0), AckedRange { floor: 500, above: [501].into() });
        assert!(queues.acked("g", "jobs", 0).is_some_and(|a| a.contains(499) && a.contains(501) && !a.contains(500)));
        assert_eq!(queues.ack("other", &[acks(0, 3, &[5])], epoch_of), [false], "no such group");
        let other_topic = PartitionAcks { topic: "mail".into(), ..acks(0, 3, &[0]) };
        assert_eq!(queues.ack("g", &[other_topic], epoch_of), [false], "not a topic of the group");
    }

    #[test]
    fn settings_are_created_once_changed_on_request_and_bounded_in_number() {
        let mut queues = QueueGroups::default();
        let jobs = QueueSettings::defaults(vec!["jobs".into(), "mail".into()]);
        queues.set("g".into(), jobs.clone(), true);
        queues.ack("g", &[acks(0, 0, &[0])], |_| 0);
        let slower = QueueSettings { ack_wait_ms: 60_000, ..jobs.clone() };
        assert_eq!(queues.set("g".into(), slower.clone(), true), QueueSetOutcome::Kept(jobs.clone()));
        assert_eq!(queues.set("g".into(), slower.clone(), false), QueueSetOutcome::Changed);
        assert_eq!(queues.set("g".into(), slower.clone(), false), QueueSetOutcome::Kept(slower));
        let mail_only = QueueSettings::defaults(vec!["mail".into()]);
        queues.set("g".into(), mail_only, false);
        assert_eq!(acked(&queues, 0), AckedRange::default(), "a dropped topic's acks go");
        for i in 1..MAX_QUEUE_GROUPS {
            queues.set(format!("g{i}"), jobs.clone(), true);
        }
        assert_eq!(queues.set("one-more".into(), jobs, true), QueueSetOutcome::Full);
    }
}
