//! Sealing: once a resize opened a new generation, the leader of each partition of an older
//! one records where the partition ends for good. Its writes already stopped (a write permit
//! is only given for the current generation); the leader waits for the writes in flight and
//! for a majority of copies to hold everything, then proposes `Seal` with its epoch, which
//! Raft applies only while that epoch is current. If the leader dies first, the next one
//! (which took over every acknowledged record) seals instead. Readers read a sealed partition
//! up to its sealed end, and a group moves on to the new generation's partitions only after
//! reaching it (`consumer::generation_order`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::leader::Replication;
use super::partition_tasks::for_each_due;
use crate::consensus::cluster_state::{Command, CommandResult};
use crate::error::ApiError;
use crate::timing::HAND_OVER_WAIT;

impl Replication {
    /// Seals every partition of an older generation this broker serves, until `stop` fires.
    pub async fn run_sealing(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let due = || {
            let me = self.leadership.me();
            let led: Vec<(u32, u64)> = self.leadership.raft().read(|s| {
                s.unsealed()
                    .map(|p| (p, s.leader(p)))
                    .filter(|(_, l)| l.broker == me)
                    .map(|(p, l)| (p, l.epoch))
                    .collect()
            });
            led.into_iter().filter(|(p, epoch)| self.leadership.serving_epoch(*p) == Some(*epoch)).collect()
        };
        let work = |partition, epoch| {
            let this = self.clone();
            async move { this.seal(partition, epoch).await.map_err(|e| e.to_string()) }
        };
        for_each_due("seal the partition", self.leadership.changes(), stop, due, work).await;
    }

    /// Reads wait while the seal is made (the partition is marked as being handed off), so no
    /// poll reads past an end that is not final yet.
    async fn seal(self: &Arc<Self>, partition: u32, epoch: u64) -> Result<(), ApiError> {
        if !self.leadership.begin_hand_off(partition) {
            return Ok(());
        }
        let result = self.seal_when_copied(partition, epoch).await;
        self.leadership.end_hand_off(partition);
        result
    }

    async fn seal_when_copied(self: &Arc<Self>, partition: u32, epoch: u64) -> Result<(), ApiError> {
        let deadline = Instant::now() + HAND_OVER_WAIT;
        self.wait_for_writes(partition, deadline).await?;
        let mut ends = BTreeMap::new();
        for topic in self.storage.topics_with(partition) {
            let end = self.storage.end(&topic, partition);
            let copies = self.copies(&topic, partition, epoch);
            if !copies.followers.is_empty() {
                let mut majority = copies.majority_end.subscribe();
                let held = tokio::time::timeout_at(deadline, majority.wait_for(|reached| *reached >= end)).await;
                if !matches!(held, Ok(Ok(_))) {
                    return Err(ApiError::Unavailable(format!(
                        "a majority of the copies of {topic}/{partition} do not hold its end {end}"
                    )));
                }
            }
            if end > 0 {
                ends.insert(topic, end);
            }
        }
        let topics = ends.len();
        match self.leadership.raft().propose(Command::Seal { partition, epoch, ends }).await? {
            CommandResult::Applied(true) => {
                tracing::info!(partition, epoch, topics, "sealed the partition of an older generation");
                Ok(())
            }
            _ if self.leadership.raft().read(|s| s.sealed.contains_key(&partition)) => Ok(()),
            _ => Err(ApiError::Unavailable(format!("partition {partition}'s leadership changed before its seal"))),
        }
    }

    /// Waits until no local write to `partition` runs any more (new ones are refused already).
    pub(super) async fn wait_for_writes(&self, partition: u32, deadline: Instant) -> Result<(), ApiError> {
        while self.leadership.writes_in_flight(partition) > 0 {
            if Instant::now() >= deadline {
                return Err(ApiError::Unavailable(format!("writes to partition {partition} did not finish in time")));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}
