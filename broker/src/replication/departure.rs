//! Leaving brokers hand over what they hold. After a shrink, the partitions of the new ring
//! have no copy on a leaving broker, and the older generations' partitions are sealed; the
//! leader of each sealed partition with a copy on a leaving broker then moves it, one step
//! per Raft entry, each in a new leader epoch (so every copy follows the new set):
//!
//! 1. widen: fewer copies than the replication factor (as far as the staying brokers allow)
//!    on staying brokers → add staying brokers (`MoveCopies`); the leader's replicators copy
//!    the partition to them (only what is still retained);
//! 2. hand over: a leaving leader hands the partition to a staying copy once that holds all;
//! 3. narrow: a staying leader, once every staying copy holds all, drops the leaving copies.
//!
//! A leaving broker that then holds nothing is removed from Raft and listed `removable`.

use std::sync::Arc;

use super::leader::Replication;
use super::partition_tasks::for_each_due;
use crate::consensus::cluster_state::{BrokerState, ClusterState, Command, CommandResult};
use crate::partitioning::REPLICATION_FACTOR;

/// The next move of a sealed partition's copies off the leaving brokers.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    Widen { copies: Vec<u32> },
    HandOver { to: u32 },
    Narrow { copies: Vec<u32> },
}

/// What `leader` does next about `partition`, if it has a copy on a leaving broker.
pub(super) fn next_step(state: &ClusterState, leader: u32, partition: u32) -> Option<Step> {
    let leaving = |b: &u32| state.brokers.get(b).is_some_and(|e| e.state == BrokerState::Leaving);
    let copies = state.replicas(partition);
    if !state.sealed.contains_key(&partition) || !copies.iter().any(leaving) {
        return None;
    }
    let staying: Vec<u32> = state.brokers_in(BrokerState::Serving).collect();
    let kept: Vec<u32> = copies.iter().copied().filter(|b| staying.contains(b)).collect();
    let wanted = (REPLICATION_FACTOR as usize).min(staying.len());
    if kept.len() < wanted {
        // Spread the new copies: start at a broker that depends on the partition.
        let start = partition as usize % staying.len().max(1);
        let added = staying.iter().cycle().skip(start).take(staying.len()).filter(|b| !copies.contains(b));
        let mut widened = copies.clone();
        widened.extend(added.take(wanted - kept.len()));
        return Some(Step::Widen { copies: widened });
    }
    if leaving(&leader) {
        return kept.first().map(|&to| Step::HandOver { to });
    }
    Some(Step::Narrow { copies: kept })
}

impl Replication {
    /// Moves the copies of every sealed partition this broker leads off the leaving brokers,
    /// until `stop` fires.
    pub async fn run_departures(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let due = || {
            let me = self.leadership.me();
            let led: Vec<(u32, u64)> = self.leadership.raft().read(|s| {
                s.sealed
                    .keys()
                    .map(|p| (*p, s.leader(*p)))
                    .filter(|(p, l)| l.broker == me && next_step(s, me, *p).is_some())
                    .map(|(p, l)| (p, l.epoch))
                    .collect()
            });
            led.into_iter().filter(|(p, epoch)| self.leadership.serving_epoch(*p) == Some(*epoch)).collect()
        };
        let work = |partition, epoch| {
            let this = self.clone();
            async move { this.depart(partition, epoch).await }
        };
        for_each_due("move the partition's copies", self.leadership.changes(), stop, due, work).await;
    }

    async fn depart(self: &Arc<Self>, partition: u32, epoch: u64) -> Result<(), String> {
        let me = self.leadership.me();
        let Some(step) = self.leadership.raft().read(|s| next_step(s, me, partition)) else { return Ok(()) };
        let move_copies = |copies: Vec<u32>| Command::MoveCopies { partition, copies, leader: me, epoch: epoch + 1 };
        let command = match step {
            Step::Widen { copies } => move_copies(copies),
            Step::HandOver { to } => {
                self.wait_until_held(partition, epoch, &[to]).await?;
                return self.hand_over(partition, to).await.map_err(|e| e.to_string());
            }
            Step::Narrow { copies } => {
                let others: Vec<u32> = copies.iter().copied().filter(|b| *b != me).collect();
                self.wait_until_held(partition, epoch, &others).await?;
                move_copies(copies)
            }
        };
        match self.leadership.raft().propose(command.clone()).await.map_err(|e| e.to_string())? {
            CommandResult::Applied(true) => {
                tracing::info!(partition, epoch = epoch + 1, ?command, "moved a sealed partition's copies");
                Ok(())
            }
            _ => Err(format!("partition {partition}'s leadership changed meanwhile")),
        }
    }

    /// Waits (without stopping reads) until each of `brokers` holds every record of
    /// `partition` this broker has, starting the replicators of topics no one read lately.
    async fn wait_until_held(self: &Arc<Self>, partition: u32, epoch: u64, brokers: &[u32]) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + crate::timing::HAND_OVER_WAIT;
        for topic in self.storage.topics_with(partition) {
            let end = self.storage.end(&topic, partition);
            let copies = self.copies(&topic, partition, epoch);
            loop {
                let moved = copies.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                let behind: Vec<u32> =
                    brokers.iter().copied().filter(|b| copies.end_of(*b).is_none_or(|theirs| theirs < end)).collect();
                if behind.is_empty() {
                    break;
                }
                if tokio::time::timeout_at(deadline, moved).await.is_err() {
                    return Err(format!("brokers {behind:?} do not hold {topic}/{partition} up to {end} yet"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::partitioning::Ring;

    /// Six brokers shrunk to three, with generation 1's partition `sealed` sealed.
    fn shrunk(sealed: u32) -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(Command::AgreeRing { ring: Ring::new(3, 1), names: ["a", "b", "c"].map(String::from).to_vec() });
        for ordinal in 3..6 {
            s.apply(Command::AddBroker { ordinal, name: format!("b{ordinal}") });
        }
        s.apply(Command::Resize { generation: 0, brokers: 6 });
        for p in 0..3 {
            s.apply(Command::Seal { partition: p, epoch: 0, ends: BTreeMap::new() });
        }
        s.apply(Command::Resize { generation: 1, brokers: 3 });
        s.apply(Command::Seal { partition: sealed, epoch: 0, ends: BTreeMap::new() });
        s
    }

    #[test]
    fn a_partition_only_leaving_brokers_hold_gets_staying_copies_then_a_staying_leader_then_loses_the_others() {
        // Partition 7 (generation 1, owner 4) is on 4, 5, 0.
        let mut s = shrunk(7);
        assert_eq!(s.replicas(7), vec![4, 5, 0]);
        let widen = next_step(&s, 4, 7);
        assert_eq!(widen, Some(Step::Widen { copies: vec![4, 5, 0, 1, 2] }), "three copies on staying brokers");
        s.apply(Command::MoveCopies { partition: 7, copies: vec![4, 5, 0, 1, 2], leader: 4, epoch: 1 });
        assert_eq!(next_step(&s, 4, 7), Some(Step::HandOver { to: 0 }));
        s.apply(Command::SetLeader { partition: 7, broker: 0, epoch: 2 });
        assert_eq!(next_step(&s, 0, 7), Some(Step::Narrow { copies: vec![0, 1, 2] }));
        s.apply(Command::MoveCopies { partition: 7, copies: vec![0, 1, 2], leader: 0, epoch: 3 });
        assert_eq!(next_step(&s, 0, 7), None, "nothing left on a leaving broker");
    }

    #[test]
    fn only_sealed_partitions_with_a_copy_on_a_leaving_broker_move() {
        let s = shrunk(6);
        assert_eq!(next_step(&s, 3, 8), None, "partition 8 is not sealed yet");
        assert_eq!(next_step(&s, 0, 9), None, "the new ring's partitions are on staying brokers");
        // Partition 6 (owner 3) is on 3, 4, 5: all leaving.
        assert_eq!(next_step(&s, 3, 6), Some(Step::Widen { copies: vec![3, 4, 5, 0, 1, 2] }));
    }
}
