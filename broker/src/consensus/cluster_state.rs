//! The replicated state machine's data: consumer registrations, groups, committed offsets
//! and who leads each partition. Every broker applies the same Raft log to this, so every broker computes the
//! same view (and the same partition assignment) without asking anyone.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use super::cluster_shape::{BrokerEntry, BrokerState};
use super::queue_groups::{PartitionAcks, QueueGroups, QueueSetOutcome, QueueSettings};
use super::revocations::{Revocations, Revoked};
use super::topics::{TopicOutcome, TopicPatch, TopicSettings, TopicState, Topics};
use crate::partitioning::{Layout, Ring};

/// Where a brand-new group starts reading (SPEC §4 `onNewGroup`, §11 `startFromTimestamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum StartPolicy {
    #[default]
    Latest,
    Earliest,
    /// The first record appended at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// One registered consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub id: String,
    pub group: String,
    /// Topics in registration order; compared as a set for "Already registered".
    pub topics: Vec<String>,
    pub policy: StartPolicy,
}

/// A committed offset: the next offset the group will read in `topic`/`partition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// The partition's reset count ([`ClusterState::reset_count`]) the position was read
    /// under: a commit of a position read before a reset is ignored, so neither an auto-commit
    /// pending on some broker nor a cursor read before the reset can undo it. Entries written
    /// before resets existed have none (0), which is every partition's count until its first reset.
    #[serde(default)]
    pub reset: u64,
}

/// The resets of one group's offsets ([`Command::ResetOffsets`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupResets {
    /// Resets of the group so far: a poll waiting for records notices one by this.
    pub count: u64,
    /// topic → partition → the `count` of the reset that last moved its offset.
    pub partitions: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// Who leads a partition (the same partition of every topic), and in which leader epoch.
/// Epoch 0 is the ring owner, which leads until the first change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLeader {
    pub broker: u32,
    pub epoch: u64,
}

/// A change to the cluster state. Each is one Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Register(Consumer),
    /// Offsets from auto-commits and explicit commits, batched.
    Commit(Vec<OffsetCommit>),
    /// Commit (possibly nothing) and unregister in one entry, so a goodbye is atomic.
    Goodbye {
        consumer_id: String,
        offsets: Vec<OffsetCommit>,
    },
    /// Consumers that timed out; those already gone are ignored.
    Expire {
        consumer_ids: Vec<String>,
    },
    /// Moves a partition's leadership; applied only if `epoch` is the current epoch + 1, so
    /// two controllers racing cannot both win and epochs never repeat.
    SetLeader {
        partition: u32,
        broker: u32,
        epoch: u64,
    },
    /// The Raft leader's group housekeeping, carrying its wall clock (ms since the Unix epoch)
    /// and retention so every broker decides alike: a group with offsets but no member starts
    /// its idle clock at `now_ms`; one idle for `retention_ms` loses its offsets.
    SweepGroups {
        now_ms: u64,
        retention_ms: u64,
    },
    /// The first ring and its brokers' names: the first one proposed is kept (a cluster's
    /// shape then changes only by [`Command::Resize`], not by a broker started with other settings).
    AgreeRing {
        ring: Ring,
        names: Vec<String>,
    },
    /// A broker beyond the ring asked to join: it is `joining` until a resize takes it in.
    AddBroker {
        ordinal: u32,
        name: String,
    },
    /// Opens the next generation with `brokers` brokers; applied only if `generation` is the
    /// current one (two resizes racing cannot both win) and every broker it names has joined.
    Resize {
        generation: u32,
        brokers: u32,
    },
    /// The final ends, per topic, of a partition of an older generation, from its leader in
    /// `epoch` (applied only if that is still its epoch): it takes no write from now on.
    Seal {
        partition: u32,
        epoch: u64,
        ends: BTreeMap<String, u64>,
    },
    /// Gives a sealed partition other copies and moves its leadership to `leader` in `epoch`
    /// (applied only if that is the current epoch + 1, as for `SetLeader`): how a shrink
    /// copies what leaving brokers hold to the brokers that stay, then drops them.
    MoveCopies {
        partition: u32,
        copies: Vec<u32>,
        leader: u32,
        epoch: u64,
    },
    /// A leaving broker that holds nothing any more (and left the Raft group) is removable.
    RemoveBroker {
        ordinal: u32,
    },
    /// Sets the group's committed offsets of `topic` to `offsets` (partition → offset), also
    /// backwards, and counts a reset of each of those partitions, so that commits of positions
    /// read before it are ignored and cursors start again from the new offsets. Refused while
    /// the group has members unless `force`: the check is made here, where it cannot race a
    /// registration.
    ResetOffsets {
        group: String,
        topic: String,
        offsets: BTreeMap<u32, u64>,
        force: bool,
    },
    /// Refuses the token `id` until `until` (its expiry, seconds since the Unix epoch; unknown:
    /// a year); `now` is the proposer's clock, by which every broker drops the same expired
    /// revocations.
    RevokeToken {
        id: String,
        until: Option<u64>,
        now: u64,
    },
    /// Creates queue group `group` with `settings`, or (unless `only_create`) changes it.
    SetQueue {
        group: String,
        settings: QueueSettings,
        only_create: bool,
    },
    /// Acknowledgements of a queue group's records, batched, each counted only if its epoch
    /// is still its partition's.
    QueueAck {
        group: String,
        acks: Vec<PartitionAcks>,
    },
    /// Creates `topic` with `settings` (kept as it is if it exists; see [`Topics::create`]).
    CreateTopic {
        topic: String,
        settings: TopicSettings,
        any_settings: bool,
    },
    ChangeTopic {
        topic: String,
        patch: TopicPatch,
    },
    /// Starts deleting `topic`: every broker the cluster knows must remove its files. Groups
    /// lose their offsets of it and queue groups the topic.
    DeleteTopic {
        topic: String,
    },
    /// Broker `broker` removed the files of `topic`, which is being deleted.
    TopicRemoved {
        topic: String,
        broker: u32,
    },
}

/// What applying a [`Command`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Registered {
        new_group: bool,
    },
    AlreadyRegistered,
    /// Same consumer id registered with another group or other topics.
    Conflict,
    Committed,
    GoodbyeDone {
        found: bool,
    },
    Expired {
        removed: Vec<String>,
    },
    LeaderSet {
        applied: bool,
    },
    GroupsSwept {
        /// Groups whose idle clock started.
        idle: usize,
        /// Groups whose offsets were removed.
        removed: Vec<String>,
    },
    /// The first generation's ring (the one proposed, or the one agreed before it).
    RingAgreed(Ring),
    /// Whether a command of a resize ([`Command::AddBroker`], [`Command::Resize`],
    /// [`Command::Seal`], [`Command::MoveCopies`], [`Command::RemoveBroker`]) changed anything.
    Applied(bool),
    /// The offsets were set; `count` is the group's reset count now.
    OffsetsReset {
        count: u64,
    },
    /// Nothing was set: the group has these members and the reset was not forced.
    ResetRefused {
        members: Vec<String>,
    },
    TokenRevoked(Revoked),
    QueueSet(QueueSetOutcome),
    /// Per [`PartitionAcks`], whether it counted.
    QueueAcked(Vec<bool>),
    Topic(TopicOutcome),
}

/// The applied state: what every broker agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub consumers: BTreeMap<String, Consumer>,
    /// group -> topic -> partition -> committed offset.
    pub offsets: BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>,
    /// Bumped on every membership change, so pollers can tell an assignment went stale.
    pub membership_version: u64,
    /// Partitions whose leadership moved away from epoch 0 (the ring owner).
    #[serde(default)]
    pub leaders: BTreeMap<u32, PartitionLeader>,
    /// group -> when (the sweeping leader's clock, ms since the Unix epoch) it was first seen
    /// with offsets and no member since its last member or commit. A snapshot from before
    /// this field starts every idle group's clock at the next sweep.
    #[serde(default)]
    pub idle_groups: BTreeMap<String, u64>,
    /// The ring generations, the current one last (none before the first was agreed).
    #[serde(default)]
    pub layout: Layout,
    /// Every broker the cluster knows, by ordinal, with its name and what it does.
    #[serde(default)]
    pub brokers: BTreeMap<u32, BrokerEntry>,
    /// Partitions of older generations that were sealed: topic → final end offset.
    #[serde(default)]
    pub sealed: BTreeMap<u32, BTreeMap<String, u64>>,
    /// Sealed partitions whose copies moved in a shrink: their brokers, instead of the ring's.
    #[serde(default)]
    pub moved_copies: BTreeMap<u32, Vec<u32>>,
    /// group -> its resets, for the groups whose offsets were ever reset (removed with the
    /// group's offsets). A snapshot from before resets existed has none.
    #[serde(default)]
    pub resets: BTreeMap<String, GroupResets>,
    /// Tokens refused before their expiry. A snapshot from before revocations has none.
    #[serde(default)]
    pub revoked_tokens: Revocations,
    /// Queue groups' settings and acknowledgements. A snapshot from before queues has none.
    #[serde(default)]
    pub queues: QueueGroups,
    /// Topics created or written since topics were kept here, with their settings. A
    /// snapshot from before has none: a topic is added by its next produce.
    #[serde(default)]
    pub topics: Topics,
}

impl ClusterState {
    pub fn apply(&mut self, command: Command) -> CommandResult {
        match command {
            Command::Register(consumer) => self.register(consumer),
            Command::Commit(offsets) => {
                self.commit(offsets);
                CommandResult::Committed
            }
            Command::Goodbye { consumer_id, offsets } => {
                self.commit(offsets);
                let found = self.consumers.remove(&consumer_id).is_some();
                if found {
                    self.membership_version += 1;
                }
                CommandResult::GoodbyeDone { found }
            }
            Command::Expire { consumer_ids } => {
                let removed: Vec<String> =
                    consumer_ids.into_iter().filter(|id| self.consumers.remove(id).is_some()).collect();
                if !removed.is_empty() {
                    self.membership_version += 1;
                }
                CommandResult::Expired { removed }
            }
            Command::SetLeader { partition, broker, epoch } => {
                let current = self.leaders.get(&partition).map_or(0, |l| l.epoch);
                let applied = epoch == current + 1;
                if applied {
                    self.leaders.insert(partition, PartitionLeader { broker, epoch });
                }
                CommandResult::LeaderSet { applied }
            }
            Command::SweepGroups { now_ms, retention_ms } => self.sweep_groups(now_ms, retention_ms),
            Command::AgreeRing { ring, names } => CommandResult::RingAgreed(self.agree_ring(ring, names)),
            Command::AddBroker { ordinal, name } => CommandResult::Applied(self.add_broker(ordinal, name)),
            Command::Resize { generation, brokers } => CommandResult::Applied(self.resize(generation, brokers)),
            Command::Seal { partition, epoch, ends } => CommandResult::Applied(self.seal(partition, epoch, ends)),
            Command::MoveCopies { partition, copies, leader, epoch } => {
                CommandResult::Applied(self.move_copies(partition, copies, leader, epoch))
            }
            Command::RemoveBroker { ordinal } => {
                let removed = self.remove_broker(ordinal);
                if removed {
                    self.topics.broker_left(ordinal);
                }
                CommandResult::Applied(removed)
            }
            Command::ResetOffsets { group, topic, offsets, force } => self.reset_offsets(group, topic, offsets, force),
            Command::RevokeToken { id, until, now } => {
                CommandResult::TokenRevoked(self.revoked_tokens.revoke(id, until, now))
            }
            Command::SetQueue { group, settings, only_create } => {
                CommandResult::QueueSet(self.queues.set(group, settings, only_create))
            }
            Command::CreateTopic { topic, settings, any_settings } => {
                CommandResult::Topic(self.topics.create(topic, settings, any_settings))
            }
            Command::ChangeTopic { topic, patch } => CommandResult::Topic(self.topics.change(&topic, patch)),
            Command::DeleteTopic { topic } => CommandResult::Topic(self.delete_topic(&topic)),
            Command::TopicRemoved { topic, broker } => {
                self.topics.removed(&topic, broker);
                CommandResult::Applied(true)
            }
            Command::QueueAck { group, acks } => {
                let leaders = &self.leaders;
                let epoch = |p: u32| leaders.get(&p).map_or(0, |l| l.epoch);
                CommandResult::QueueAcked(self.queues.ack(&group, &acks, epoch))
            }
        }
    }

    /// Groups with offsets and no member whose idle clock has not started.
    fn unclocked_idle_groups(&self) -> impl Iterator<Item = &String> {
        let with_members: BTreeSet<&str> = self.consumers.values().map(|c| c.group.as_str()).collect();
        self.offsets.keys().filter(move |g| !with_members.contains(g.as_str()) && !self.idle_groups.contains_key(*g))
    }

    /// Whether a [`Command::SweepGroups`] at `now_ms` would change anything, so the leader
    /// proposes one only then.
    pub fn groups_to_sweep(&self, now_ms: u64, retention_ms: u64) -> bool {
        self.unclocked_idle_groups().next().is_some()
            || self.idle_groups.values().any(|since| now_ms.saturating_sub(*since) >= retention_ms)
    }

    /// A clock that went backwards (a new leader's runs behind) only delays removal.
    fn sweep_groups(&mut self, now_ms: u64, retention_ms: u64) -> CommandResult {
        let started: Vec<String> = self.unclocked_idle_groups().cloned().collect();
        let idle = started.len();
        self.idle_groups.extend(started.into_iter().map(|g| (g, now_ms)));
        let removed: Vec<String> = self
            .idle_groups
            .iter()
            .filter(|(_, since)| now_ms.saturating_sub(**since) >= retention_ms)
            .map(|(g, _)| g.clone())
            .collect();
        for group in &removed {
            self.idle_groups.remove(group);
            self.offsets.remove(group);
            self.resets.remove(group);
        }
        CommandResult::GroupsSwept { idle, removed }
    }

    /// The leader of `partition`: its ring owner until leadership first moved, and no broker
    /// (`u32::MAX`) for a partition no generation has.
    pub fn leader(&self, partition: u32) -> PartitionLeader {
        self.leaders
            .get(&partition)
            .copied()
            .unwrap_or_else(|| PartitionLeader { broker: self.layout.owner(partition).unwrap_or(u32::MAX), epoch: 0 })
    }

    fn register(&mut self, consumer: Consumer) -> CommandResult {
        if let Some(existing) = self.consumers.get(&consumer.id) {
            let same_topics =
                existing.topics.iter().collect::<BTreeSet<_>>() == consumer.topics.iter().collect::<BTreeSet<_>>();
            return if existing.group == consumer.group && same_topics {
                CommandResult::AlreadyRegistered
            } else {
                CommandResult::Conflict
            };
        }
        let new_group = !self.group_exists(&consumer.group);
        self.idle_groups.remove(&consumer.group);
        self.consumers.insert(consumer.id.clone(), consumer);
        self.membership_version += 1;
        CommandResult::Registered { new_group }
    }

    /// A group exists while it has members or committed offsets.
    pub fn group_exists(&self, group: &str) -> bool {
        self.offsets.contains_key(group) || self.consumers.values().any(|c| c.group == group)
    }

    /// Committed offsets only move forward: a late auto-commit from a consumer that lost
    /// the partition in a rebalance must not rewind the group. Only a reset moves them back,
    /// and a commit of a position read before the partition's last reset is ignored (it would
    /// undo the reset: it is either behind the new offset, which the max would keep anyway,
    /// or ahead of it, which is what the reset meant to go back from).
    fn commit(&mut self, offsets: Vec<OffsetCommit>) {
        for c in offsets {
            // A position in a topic being deleted would outlive it into a new one of its name.
            let deleting = self.topics.get(&c.topic).is_some_and(|t| t.state != TopicState::Live);
            if deleting || c.reset != self.reset_count(&c.group, &c.topic, c.partition) {
                continue;
            }
            self.idle_groups.remove(&c.group);
            let slot =
                self.offsets.entry(c.group).or_default().entry(c.topic).or_default().entry(c.partition).or_insert(0);
            *slot = (*slot).max(c.offset);
        }
    }

    fn reset_offsets(
        &mut self,
        group: String,
        topic: String,
        offsets: BTreeMap<u32, u64>,
        force: bool,
    ) -> CommandResult {
        let members: Vec<String> = self.members(&group).iter().map(|c| c.id.clone()).collect();
        if !members.is_empty() && !force {
            return CommandResult::ResetRefused { members };
        }
        self.idle_groups.remove(&group);
        let resets = self.resets.entry(group.clone()).or_default();
        resets.count += 1;
        let count = resets.count;
        let reset = resets.partitions.entry(topic.clone()).or_default();
        let committed = self.offsets.entry(group).or_default().entry(topic).or_default();
        for (partition, offset) in offsets {
            reset.insert(partition, count);
            committed.insert(partition, offset);
        }
        CommandResult::OffsetsReset { count }
    }

    /// [`Command::DeleteTopic`]: the brokers the cluster knows (not removed) hold its files;
    /// what the cluster knew of it goes now, so a topic created again under the name starts
    /// afresh. A group that read it or holds offsets of it counts a reset of each of its
    /// partitions, as a reset to nothing: positions read before (a cursor, a pending
    /// auto-commit) are never committed, and its pollers start again from no offset.
    fn delete_topic(&mut self, topic: &str) -> TopicOutcome {
        let holders = self.brokers.iter().filter(|(_, b)| b.state != BrokerState::Removable).map(|(&o, _)| o).collect();
        let outcome = self.topics.delete(topic, holders);
        if outcome != TopicOutcome::Deleting {
            return outcome;
        }
        let readers: BTreeSet<String> = self
            .consumers
            .values()
            .filter(|c| c.topics.iter().any(|t| t == topic))
            .map(|c| c.group.clone())
            .chain(self.offsets.iter().filter(|(_, t)| t.contains_key(topic)).map(|(g, _)| g.clone()))
            .collect();
        let partitions: Vec<u32> = self.layout.generations().flat_map(|(_, g)| g.partitions()).collect();
        for group in readers {
            let resets = self.resets.entry(group.clone()).or_default();
            resets.count += 1;
            let count = resets.count;
            resets.partitions.insert(topic.to_string(), partitions.iter().map(|&p| (p, count)).collect());
        }
        for topics in self.offsets.values_mut() {
            topics.remove(topic);
        }
        for ends in self.sealed.values_mut() {
            ends.remove(topic);
        }
        self.queues.topic_deleted(topic);
        outcome
    }

    /// Which reset of its group last moved `partition`'s offset (0: none did). A position is
    /// committed only under the count it was read under.
    pub fn reset_count(&self, group: &str, topic: &str, partition: u32) -> u64 {
        self.resets.get(group).and_then(|r| r.partitions.get(topic)?.get(&partition)).copied().unwrap_or(0)
    }

    /// Resets of `group` so far.
    pub fn group_resets(&self, group: &str) -> u64 {
        self.resets.get(group).map_or(0, |r| r.count)
    }

    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        self.offsets.get(group)?.get(topic)?.get(&partition).copied()
    }

    /// Members of `group`, sorted by id (the order assignment deals in).
    pub fn members(&self, group: &str) -> Vec<&Consumer> {
        self.consumers.values().filter(|c| c.group == group).collect()
    }
}

/// A `startFromLatest` consumer, for tests across the crate.
#[cfg(test)]
pub(crate) fn consumer(id: &str, group: &str, topics: &[&str]) -> Consumer {
    Consumer {
        id: id.into(),
        group: group.into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        policy: StartPolicy::Latest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_twice_is_already_registered_and_other_params_conflict() {
        let mut s = ClusterState::default();
        assert_eq!(
            s.apply(Command::Register(consumer("c1", "g", &["a", "b"]))),
            CommandResult::Registered { new_group: true }
        );
        assert_eq!(s.apply(Command::Register(consumer("c1", "g", &["b", "a"]))), CommandResult::AlreadyRegistered);
        assert_eq!(s.apply(Command::Register(consumer("c1", "g", &["a"]))), CommandResult::Conflict);
        assert_eq!(
            s.apply(Command::Register(consumer("c2", "g", &["a"]))),
            CommandResult::Registered { new_group: false }
        );
    }

    #[test]
    fn a_deposed_leader_s_queue_acks_do_not_count_once_the_next_epoch_is_applied() {
        let mut s = ClusterState::default();
        let settings = QueueSettings::defaults(vec!["jobs".into()]);
        let set = Command::SetQueue { group: "g".into(), settings, only_create: true };
        assert_eq!(s.apply(set), CommandResult::QueueSet(QueueSetOutcome::Created));
        let ack = |epoch, offsets: &[u64]| Command::QueueAck {
            group: "g".into(),
            acks: vec![PartitionAcks {
                topic: "jobs".into(),
                partition: 2,
                epoch,
                floor: 0,
                offsets: offsets.to_vec(),
            }],
        };
        assert_eq!(s.apply(ack(0, &[0, 1])), CommandResult::QueueAcked(vec![true]));
        s.apply(Command::SetLeader { partition: 2, broker: 1, epoch: 1 });
        assert_eq!(s.apply(ack(0, &[2])), CommandResult::QueueAcked(vec![false]), "epoch 0's leader was deposed");
        assert_eq!(s.apply(ack(1, &[3])), CommandResult::QueueAcked(vec![true]));
        let acked = s.queues.acked("g", "jobs", 2).cloned().unwrap_or_default();
        assert_eq!((acked.floor, acked.above), (2, [3].into()));
    }

    #[test]
    fn commits_never_go_backwards() {
        let mut s = ClusterState::default();
        let at = |offset| OffsetCommit { group: "g".into(), topic: "t".into(), partition: 1, offset, reset: 0 };
        s.apply(Command::Commit(vec![at(10)]));
        s.apply(Command::Commit(vec![at(7)]));
        assert_eq!(s.committed("g", "t", 1), Some(10));
    }

    #[test]
    fn goodbye_commits_then_removes() {
        let mut s = ClusterState::default();
        s.apply(Command::Register(consumer("c1", "g", &["t"])));
        let offsets = vec![OffsetCommit { group: "g".into(), topic: "t".into(), partition: 0, offset: 5, reset: 0 }];
        let r = s.apply(Command::Goodbye { consumer_id: "c1".into(), offsets });
        assert_eq!(r, CommandResult::GoodbyeDone { found: true });
        assert!(s.consumers.is_empty());
        assert_eq!(s.committed("g", "t", 0), Some(5));
        assert!(s.group_exists("g"), "a group with offsets survives its last member");
    }

    const RETENTION: u64 = 1_000;

    fn sweep(s: &mut ClusterState, now_ms: u64) -> CommandResult {
        s.apply(Command::SweepGroups { now_ms, retention_ms: RETENTION })
    }

    fn commit_at(s: &mut ClusterState, offset: u64) {
        s.apply(Command::Commit(vec![OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset,
            reset: 0,
        }]));
    }

    /// g has read up to 5 and its only member has left.
    fn left_group() -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(Command::Register(consumer("c1", "g", &["t"])));
        commit_at(&mut s, 5);
        s.apply(Command::Goodbye { consumer_id: "c1".into(), offsets: Vec::new() });
        s
    }

    #[test]
    fn a_group_with_a_member_keeps_its_offsets_however_old_they_are() {
        let mut s = ClusterState::default();
        s.apply(Command::Register(consumer("c1", "g", &["t"])));
        commit_at(&mut s, 5);
        assert!(!s.groups_to_sweep(u64::MAX, RETENTION), "nothing for the leader to propose");
        assert_eq!(sweep(&mut s, 0), CommandResult::GroupsSwept { idle: 0, removed: vec![] });
        assert_eq!(sweep(&mut s, u64::MAX), CommandResult::GroupsSwept { idle: 0, removed: vec![] });
        assert_eq!(s.committed("g", "t", 0), Some(5));
    }

    #[test]
    fn a_group_idle_for_the_retention_loses_its_offsets_and_is_new_again() {
        let mut s = left_group();
        assert!(s.groups_to_sweep(10_000, RETENTION), "its idle clock has to start");
        assert_eq!(sweep(&mut s, 10_000), CommandResult::GroupsSwept { idle: 1, removed: vec![] });
        assert!(!s.groups_to_sweep(10_000 + RETENTION - 1, RETENTION));
        assert_eq!(sweep(&mut s, 10_000 + RETENTION - 1), CommandResult::GroupsSwept { idle: 0, removed: vec![] });
        assert_eq!(s.committed("g", "t", 0), Some(5), "kept until the retention has passed");
        assert!(s.groups_to_sweep(10_000 + RETENTION, RETENTION));
        let swept = sweep(&mut s, 10_000 + RETENTION);
        assert_eq!(swept, CommandResult::GroupsSwept { idle: 0, removed: vec!["g".into()] });
        assert_eq!(s.committed("g", "t", 0), None);
        assert!(s.offsets.is_empty() && s.idle_groups.is_empty());
        assert!(!s.groups_to_sweep(u64::MAX, RETENTION), "nothing left to sweep");
        let again = s.apply(Command::Register(consumer("c2", "g", &["t"])));
        assert_eq!(again, CommandResult::Registered { new_group: true }, "onNewGroup applies again");
    }

    #[test]
    fn a_commit_or_a_member_while_idle_restarts_the_clock() {
        let mut s = left_group();
        sweep(&mut s, 0);
        // A late auto-commit of the member that left.
        commit_at(&mut s, 7);
        assert_eq!(sweep(&mut s, RETENTION), CommandResult::GroupsSwept { idle: 1, removed: vec![] });
        s.apply(Command::Register(consumer("c2", "g", &["t"])));
        s.apply(Command::Expire { consumer_ids: vec!["c2".into()] });
        assert_eq!(sweep(&mut s, 2 * RETENTION), CommandResult::GroupsSwept { idle: 1, removed: vec![] });
        assert_eq!(sweep(&mut s, 3 * RETENTION - 1), CommandResult::GroupsSwept { idle: 0, removed: vec![] });
        assert_eq!(s.committed("g", "t", 0), Some(7));
        assert_eq!(sweep(&mut s, 3 * RETENTION), CommandResult::GroupsSwept { idle: 0, removed: vec!["g".into()] });
    }

    #[test]
    fn a_sweeping_clock_behind_the_last_one_removes_nothing() {
        let mut s = left_group();
        sweep(&mut s, 50_000);
        assert!(!s.groups_to_sweep(10_000, RETENTION));
        assert_eq!(sweep(&mut s, 10_000), CommandResult::GroupsSwept { idle: 0, removed: vec![] });
        assert_eq!(s.committed("g", "t", 0), Some(5));
    }

    /// Snapshots written before idle clocks existed have no `idle_groups`: they load, and
    /// their idle groups start their clocks at the next sweep rather than expiring at once.
    #[test]
    fn a_state_without_idle_clocks_loads_and_its_idle_groups_start_their_clocks() {
        let old = r#"{"consumers":{},"offsets":{"g":{"t":{"0":5}}},"membership_version":2}"#;
        let mut s: ClusterState = serde_json::from_str(old).expect("an old state loads");
        assert_eq!(s.committed("g", "t", 0), Some(5));
        assert_eq!(sweep(&mut s, u64::MAX), CommandResult::GroupsSwept { idle: 1, removed: vec![] });
        assert_eq!(s.committed("g", "t", 0), Some(5));
    }

    fn reset(s: &mut ClusterState, offsets: &[(u32, u64)], force: bool) -> CommandResult {
        let offsets = offsets.iter().copied().collect();
        s.apply(Command::ResetOffsets { group: "g".into(), topic: "t".into(), offsets, force })
    }

    fn read_at(partition: u32, offset: u64, reset: u64) -> OffsetCommit {
        OffsetCommit { group: "g".into(), topic: "t".into(), partition, offset, reset }
    }

    /// The race of issue 13 item 4: a reset backwards while auto-commits of positions read
    /// before it are still pending on some broker (and members hold cursors ahead of it).
    #[test]
    fn a_reset_moves_offsets_back_and_commits_read_before_it_cannot_undo_it() {
        let mut s = ClusterState::default();
        s.apply(Command::Register(consumer("c1", "g", &["t"])));
        s.apply(Command::Commit(vec![read_at(0, 50, 0), read_at(1, 40, 0)]));
        assert_eq!(reset(&mut s, &[(0, 10)], true), CommandResult::OffsetsReset { count: 1 });
        assert_eq!(s.committed("g", "t", 0), Some(10), "moved backwards");
        assert_eq!((s.reset_count("g", "t", 0), s.reset_count("g", "t", 1), s.group_resets("g")), (1, 0, 1));

        // Late commits of positions read before the reset, from a pending batch or a cursor.
        s.apply(Command::Commit(vec![read_at(0, 60, 0)]));
        s.apply(Command::Goodbye { consumer_id: "c1".into(), offsets: vec![read_at(0, 55, 0), read_at(1, 45, 0)] });
        assert_eq!(s.committed("g", "t", 0), Some(10), "a commit read before the reset is ignored");
        assert_eq!(s.committed("g", "t", 1), Some(45), "a partition the reset did not touch commits as before");

        // Positions read after the reset commit as usual, forward only.
        s.apply(Command::Commit(vec![read_at(0, 12, 1)]));
        s.apply(Command::Commit(vec![read_at(0, 11, 1)]));
        assert_eq!(s.committed("g", "t", 0), Some(12));

        // A second reset makes the first one's positions stale in turn.
        assert_eq!(reset(&mut s, &[(0, 3), (1, 3)], false), CommandResult::OffsetsReset { count: 2 });
        s.apply(Command::Commit(vec![read_at(0, 20, 1)]));
        assert_eq!((s.committed("g", "t", 0), s.committed("g", "t", 1)), (Some(3), Some(3)));
        assert_eq!(s.reset_count("g", "t", 1), 2);
    }

    #[test]
    fn a_reset_of_a_group_with_members_needs_force() {
        let mut s = ClusterState::default();
        s.apply(Command::Register(consumer("c1", "g", &["t"])));
        commit_at(&mut s, 5);
        assert_eq!(reset(&mut s, &[(0, 0)], false), CommandResult::ResetRefused { members: vec!["c1".into()] });
        assert_eq!((s.committed("g", "t", 0), s.group_resets("g")), (Some(5), 0), "nothing changed");
        assert_eq!(reset(&mut s, &[(0, 0)], true), CommandResult::OffsetsReset { count: 1 });
        assert_eq!(s.committed("g", "t", 0), Some(0));
    }

    #[test]
    fn a_reset_creates_a_group_and_starts_its_retention_afresh_and_the_sweep_forgets_it() {
        let mut s = ClusterState::default();
        assert_eq!(reset(&mut s, &[(2, 7)], false), CommandResult::OffsetsReset { count: 1 });
        assert!(s.group_exists("g"));
        assert_eq!(sweep(&mut s, 0), CommandResult::GroupsSwept { idle: 1, removed: vec![] });
        reset(&mut s, &[(2, 8)], false);
        assert!(s.idle_groups.is_empty(), "a reset counts as a commit for the retention");
        sweep(&mut s, RETENTION);
        assert_eq!(sweep(&mut s, 2 * RETENTION), CommandResult::GroupsSwept { idle: 0, removed: vec!["g".into()] });
        assert!(s.resets.is_empty(), "a removed group's resets go with its offsets");
        s.apply(Command::Commit(vec![read_at(2, 4, 0)]));
        assert_eq!(s.committed("g", "t", 2), Some(4), "a new group of the same name commits from 0 resets");
    }

    /// Log entries and snapshots written before resets existed load, with no reset anywhere.
    #[test]
    fn commits_and_states_from_before_resets_load_as_never_reset() {
        let entry = r#"{"Commit":[{"group":"g","topic":"t","partition":0,"offset":5}]}"#;
        let command: Command = serde_json::from_str(entry).expect("an old commit entry loads");
        assert_eq!(command, Command::Commit(vec![read_at(0, 5, 0)]));
        let old = r#"{"consumers":{},"offsets":{"g":{"t":{"0":5}}},"membership_version":2}"#;
        let mut s: ClusterState = serde_json::from_str(old).expect("an old state loads");
        s.apply(command);
        assert_eq!((s.committed("g", "t", 0), s.group_resets("g")), (Some(5), 0));
    }

    #[test]
    fn leadership_moves_only_to_the_next_epoch() {
        let mut s = ClusterState::default();
        s.apply(Command::AgreeRing { ring: Ring::new(3, 2), names: vec!["a".into(), "b".into(), "c".into()] });
        assert_eq!(s.leader(3), PartitionLeader { broker: 1, epoch: 0 }, "the ring owner leads at first");
        assert_eq!(s.leader(6).broker, u32::MAX, "no generation has partition 6");
        assert_eq!(
            s.apply(Command::SetLeader { partition: 3, broker: 2, epoch: 1 }),
            CommandResult::LeaderSet { applied: true }
        );
        assert_eq!(
            s.apply(Command::SetLeader { partition: 3, broker: 0, epoch: 1 }),
            CommandResult::LeaderSet { applied: false },
            "a second controller proposing the same epoch loses"
        );
        assert_eq!(s.leader(3), PartitionLeader { broker: 2, epoch: 1 });
    }

    #[test]
    fn a_deleted_topic_waits_for_every_broker_and_takes_what_groups_knew_of_it() {
        let mut s = ClusterState::default();
        s.apply(Command::AgreeRing { ring: Ring::new(3, 2), names: vec!["a".into(), "b".into(), "c".into()] });
        let create =
            Command::CreateTopic { topic: "t".into(), settings: TopicSettings::default(), any_settings: false };
        assert_eq!(s.apply(create.clone()), CommandResult::Topic(TopicOutcome::Created));
        s.apply(Command::Commit(vec![read_at(0, 5, 0)]));
        s.apply(Command::SetQueue {
            group: "q".into(),
            settings: QueueSettings::defaults(vec!["t".into(), "u".into()]),
            only_create: false,
        });
        assert_eq!(s.apply(Command::DeleteTopic { topic: "t".into() }), CommandResult::Topic(TopicOutcome::Deleting));
        assert_eq!(s.committed("g", "t", 0), None, "the group's offsets of it are gone");
        assert_eq!(s.queues.get("q").map(|q| q.settings.topics.clone()), Some(vec!["u".to_string()]));
        s.apply(Command::Commit(vec![read_at(0, 9, 0)]));
        assert_eq!(s.committed("g", "t", 0), None, "a late auto-commit does not bring it back");
        assert_eq!(s.apply(create.clone()), CommandResult::Topic(TopicOutcome::Deleting));
        for broker in 0..3 {
            assert!(s.topics.get("t").is_some(), "broker {broker} has not removed its files yet");
            s.apply(Command::TopicRemoved { topic: "t".into(), broker });
        }
        assert_eq!(s.topics.get("t"), None);
        assert_eq!(s.apply(create), CommandResult::Topic(TopicOutcome::Created), "the name is free again");
        s.apply(Command::Commit(vec![read_at(0, 9, 0)]));
        assert_eq!(s.committed("g", "t", 0), None, "a position of the old topic is not the new one's");
        s.apply(Command::Commit(vec![read_at(0, 2, s.reset_count("g", "t", 0))]));
        assert_eq!(s.committed("g", "t", 0), Some(2), "one read since is");
    }
}
