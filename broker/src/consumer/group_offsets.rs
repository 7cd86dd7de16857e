//! Group offsets for operators (SPEC §11): the groups, a group's committed offsets against
//! its partitions' ends (its lag), resetting them, and the lag of the partitions this broker
//! leads for its metrics. Committed offsets come from the Raft state, ends from each
//! partition's leader ([`Bounds`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::assignment::assign;
use crate::bounds::{Bounds, Offsets};
use crate::consensus::cluster_state::{ClusterState, Command, CommandResult};
use crate::consensus::RaftNode;
use crate::error::ApiError;
use crate::replication::Replication;
use crate::store::validate_topic_name;

/// A group and how many members it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group: String,
    pub members: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub topics: Vec<String>,
}

/// A group's members and, per topic it reads or has offsets in, every partition's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub members: Vec<Member>,
    pub topics: BTreeMap<String, Vec<PartitionOffsets>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: u32,
    pub generation: u32,
    /// The broker that leads it.
    pub leader: u32,
    /// The member the partition is dealt to, if any.
    pub member: Option<String>,
    /// The next offset the group reads; `None` until it first commits one (it then reads
    /// from the first retained record).
    pub committed: Option<u64>,
    /// Start and end; `None` when the partition's leader did not answer in time.
    pub bounds: Option<Offsets>,
}

impl PartitionOffsets {
    /// Records the group has yet to read, if the end is known.
    pub fn lag(&self) -> Option<u64> {
        self.bounds.map(|b| lag(self.committed, b.start, b.end))
    }
}

/// Records between where the group reads next and the end: from the committed offset, or
/// from the first retained record when there is none or retention removed what it points at.
pub fn lag(committed: Option<u64>, start: u64, end: u64) -> u64 {
    end.saturating_sub(committed.unwrap_or(start).max(start))
}

/// Where a reset moves the offsets (SPEC §11 `to` and `value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The first retained record.
    Earliest,
    /// The end: only records produced from now on are read.
    Latest,
    /// This offset, which must lie between the partition's start and end.
    Offset(u64),
    /// The first record appended at or after this time (ms since the Unix epoch); the end if none was.
    Timestamp(i64),
    /// The committed offset moved by this many records (back if negative), kept within start and end.
    Shift(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRequest {
    pub topic: String,
    /// The partitions to move; `None` is every partition of every generation.
    pub partitions: Option<Vec<u32>>,
    pub to: ResetTo,
}

/// One partition's offset before and after a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedOffset {
    pub partition: u32,
    pub current: Option<u64>,
    pub new: u64,
}

/// The new offset of one partition, or why it cannot be moved there. A shift is relative to
/// the committed offset (the start when there is none) and kept within the partition's
/// bounds; an explicit offset outside them is refused, as a read by position is.
pub fn plan_offset(to: ResetTo, partition: u32, current: Option<u64>, bounds: Offsets) -> Result<u64, ApiError> {
    let Offsets { start, end, at_timestamp, .. } = bounds;
    match to {
        ResetTo::Earliest => Ok(start),
        ResetTo::Latest => Ok(end),
        ResetTo::Offset(offset) if (start..=end).contains(&offset) => Ok(offset),
        ResetTo::Offset(offset) => Err(ApiError::ResetOutOfRange { partition, offset, start, end }),
        ResetTo::Timestamp(_) => at_timestamp
            .map(|offset| offset.clamp(start, end))
            .ok_or_else(|| ApiError::Internal(format!("partition {partition}'s leader gave no offset for the time"))),
        ResetTo::Shift(by) => {
            let moved = i128::from(current.unwrap_or(start)) + i128::from(by);
            Ok(moved.clamp(i128::from(start), i128::from(end)) as u64)
        }
    }
}

/// The lag of one partition this broker leads, for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedLag {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub lag: u64,
}

pub struct GroupOffsets {
    raft: RaftNode,
    replication: Arc<Replication>,
    bounds: Arc<Bounds>,
}

/// How many members a refusal names before it only counts them.
const MEMBERS_NAMED: usize = 5;

impl GroupOffsets {
    pub fn new(raft: RaftNode, replication: Arc<Replication>, bounds: Arc<Bounds>) -> GroupOffsets {
        GroupOffsets { raft, replication, bounds }
    }

    /// Every group with members or committed offsets, by name. Read after catching up with
    /// the Raft leader, so any broker answers alike.
    pub async fn list(&self) -> Result<Vec<GroupSummary>, ApiError> {
        self.raft.catch_up_with_leader().await?;
        Ok(self.raft.read(|s| {
            let mut groups: BTreeMap<&str, usize> = s.offsets.keys().map(|g| (g.as_str(), 0)).collect();
            for consumer in s.consumers.values() {
                *groups.entry(consumer.group.as_str()).or_default() += 1;
            }
            groups.into_iter().map(|(group, members)| GroupSummary { group: group.to_string(), members }).collect()
        }))
    }

    /// The group's members and offsets: every partition of every topic a member reads or the
    /// group has offsets in, with its leader's bounds.
    pub async fn describe(&self, group: &str) -> Result<GroupDescription, ApiError> {
        self.raft.catch_up_with_leader().await?;
        let found = self.raft.read(|s| {
            if !s.group_exists(group) {
                return None;
            }
            let members: Vec<Member> =
                s.members(group).iter().map(|c| Member { id: c.id.clone(), topics: c.topics.clone() }).collect();
            let mut topics: BTreeSet<String> = members.iter().flat_map(|m| m.topics.iter().cloned()).collect();
            topics.extend(s.offsets.get(group).into_iter().flat_map(|t| t.keys().cloned()));
            let dealt: BTreeMap<(String, u32), String> = assign(s, group)
                .into_iter()
                .flat_map(|(member, tps)| tps.into_iter().map(move |tp| ((tp.topic, tp.partition), member.clone())))
                .collect();
            Some((members, topics.into_iter().collect::<Vec<_>>(), dealt))
        });
        let Some((members, topics, mut dealt)) = found else { return Err(ApiError::UnknownGroup(group.into())) };
        let bounds = self.bounds.topics_bounds(&topics, None).await;
        let topics = self.raft.read(|s| {
            bounds
                .into_iter()
                .map(|(topic, partitions)| {
                    let rows = partitions
                        .into_iter()
                        .map(|b| PartitionOffsets {
                            partition: b.partition,
                            generation: b.generation,
                            leader: b.leader,
                            member: dealt.remove(&(topic.clone(), b.partition)),
                            committed: s.committed(group, &topic, b.partition),
                            bounds: b.offsets,
                        })
                        .collect();
                    (topic, rows)
                })
                .collect()
        });
        Ok(GroupDescription { group: group.to_string(), members, topics })
    }

    /// Moves the group's offsets of one topic (`dry_run`: only says where to). Refused while
    /// the group has members unless `force`, which also moves the members: their cursors
    /// start again from the new offsets (the reset count, see `ClusterState::commit`). A dry
    /// run answers what the reset would, refusal included. A group that does not exist yet
    /// is created with the offsets.
    pub async fn reset(
        &self,
        group: &str,
        request: &ResetRequest,
        dry_run: bool,
        force: bool,
    ) -> Result<Vec<PlannedOffset>, ApiError> {
        validate_topic_name(&request.topic)?;
        self.raft.catch_up_with_leader().await?;
        let (members, all) = self
            .raft
            .read(|s| (s.members(group).iter().map(|c| c.id.clone()).collect::<Vec<_>>(), s.layout.all_partitions()));
        if !members.is_empty() && !force {
            return Err(group_has_members(group, members));
        }
        let chosen: BTreeSet<u32> = match &request.partitions {
            None => all.clone().collect(),
            Some(list) if list.is_empty() => {
                return Err(ApiError::BadRequest("partitions must name at least one partition (or be left out)".into()))
            }
            Some(list) => list.iter().copied().collect(),
        };
        if let Some(unknown) = chosen.iter().find(|p| !all.contains(p)) {
            return Err(ApiError::BadRequest(format!(
                "there is no partition {unknown}: the partitions are 0 to {}",
                all.end.saturating_sub(1)
            )));
        }
        let timestamp = match request.to {
            ResetTo::Timestamp(ms) => Some(ms),
            _ => None,
        };
        let bounds = self.bounds.partition_bounds(&request.topic, timestamp).await;
        let mut plan = Vec::with_capacity(chosen.len());
        for b in bounds.into_iter().filter(|b| chosen.contains(&b.partition)) {
            let offsets = b.offsets.ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "the leader of partition {} (broker {}) did not say where it starts and ends",
                    b.partition, b.leader
                ))
            })?;
            let current = self.raft.read(|s| s.committed(group, &request.topic, b.partition));
            let new = plan_offset(request.to, b.partition, current, offsets)?;
            plan.push(PlannedOffset { partition: b.partition, current, new });
        }
        if dry_run {
            return Ok(plan);
        }
        let offsets = plan.iter().map(|p| (p.partition, p.new)).collect();
        let command = Command::ResetOffsets { group: group.to_string(), topic: request.topic.clone(), offsets, force };
        match self.raft.propose(command).await? {
            CommandResult::OffsetsReset { count } => {
                tracing::info!(%group, topic = %request.topic, partitions = plan.len(), to = ?request.to, force,
                    resets = count, "group offsets reset");
                Ok(plan)
            }
            // A member registered between the check above and the reset's turn in the log.
            CommandResult::ResetRefused { members } => Err(group_has_members(group, members)),
            other => Err(ApiError::Internal(format!("unexpected reset result {other:?}"))),
        }
    }

    /// The lag of every group, in every partition this broker serves as leader and holds
    /// records of, of every topic the group reads or has offsets in: each partition's lag is
    /// counted by its leader alone, so the sum over the brokers is the group's.
    pub fn led_lag(&self) -> Vec<LedLag> {
        let leadership = self.replication.leadership();
        let served: Vec<u32> = leadership.served().into_iter().map(|(p, _)| p).collect();
        let wanted: Vec<(String, String, u32, Option<u64>)> = self.raft.read(|s| {
            group_topics(s)
                .into_iter()
                .flat_map(|(group, topic)| {
                    served.iter().map(move |&p| {
                        let committed = s.committed(&group, &topic, p);
                        (group.clone(), topic.clone(), p, committed)
                    })
                })
                .collect()
        });
        wanted
            .into_iter()
            .filter_map(|(group, topic, partition, committed)| {
                let (start, end) = self.replication.read_bounds(&topic, partition)?;
                Some(LedLag { group, topic, partition, lag: lag(committed, start, end) })
            })
            .collect()
    }
}

/// Every (group, topic) where the group has a member reading the topic or offsets in it.
fn group_topics(s: &ClusterState) -> BTreeSet<(String, String)> {
    let mut pairs: BTreeSet<(String, String)> = s
        .offsets
        .iter()
        .flat_map(|(group, topics)| topics.keys().map(move |topic| (group.clone(), topic.clone())))
        .collect();
    pairs.extend(s.consumers.values().flat_map(|c| c.topics.iter().map(move |t| (c.group.clone(), t.clone()))));
    pairs
}

fn group_has_members(group: &str, members: Vec<String>) -> ApiError {
    let count = members.len();
    let mut named = members.into_iter().take(MEMBERS_NAMED).collect::<Vec<_>>().join(", ");
    if count > MEMBERS_NAMED {
        named.push_str(&format!(" and {} more", count - MEMBERS_NAMED));
    }
    ApiError::GroupHasMembers { group: group.to_string(), members: named }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Offsets = Offsets { start: 10, end: 50, at_timestamp: Some(30), bytes: 0 };

    fn plan(to: ResetTo, current: Option<u64>) -> Result<u64, ApiError> {
        plan_offset(to, 3, current, BOUNDS)
    }

    #[test]
    fn each_kind_of_reset_lands_within_the_partition() {
        assert_eq!(plan(ResetTo::Earliest, Some(40)).ok(), Some(10));
        assert_eq!(plan(ResetTo::Latest, Some(40)).ok(), Some(50));
        assert_eq!(plan(ResetTo::Timestamp(1_700_000_000_000), None).ok(), Some(30));
        for offset in [10, 25, 50] {
            assert_eq!(plan(ResetTo::Offset(offset), None).ok(), Some(offset), "{offset} is within the bounds");
        }
        assert_eq!(plan(ResetTo::Shift(-5), Some(40)).ok(), Some(35));
        assert_eq!(plan(ResetTo::Shift(5), Some(40)).ok(), Some(45));
        assert_eq!(plan(ResetTo::Shift(-100), Some(40)).ok(), Some(10), "a shift stops at the start");
        assert_eq!(plan(ResetTo::Shift(100), Some(40)).ok(), Some(50), "and at the end");
        assert_eq!(plan(ResetTo::Shift(3), None).ok(), Some(13), "from the start when nothing was committed");
        assert_eq!(plan(ResetTo::Shift(i64::MIN), Some(u64::MAX)).ok(), Some(50), "no overflow either way");
    }

    #[test]
    fn an_offset_outside_the_partition_is_refused_with_its_bounds() {
        for offset in [9, 51, u64::MAX] {
            let refused = plan(ResetTo::Offset(offset), Some(20)).expect_err("outside");
            assert!(
                matches!(refused, ApiError::ResetOutOfRange { partition: 3, start: 10, end: 50, .. }),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn lag_counts_from_the_committed_offset_or_the_start() {
        assert_eq!(lag(Some(30), 10, 50), 20);
        assert_eq!(lag(None, 10, 50), 40, "never committed: all it will read");
        assert_eq!(lag(Some(2), 10, 50), 40, "retention removed what it points at");
        assert_eq!(lag(Some(60), 10, 50), 0, "a leader catching up may end before the commit");
    }
}
