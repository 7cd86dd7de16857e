//! Sealing: once a resize opened a new generation, the leader of each partition of an older
//! one records where the partition ends for good. Its writes already stopped (a write permit
//! is only given for the current generation); the leader waits for the writes in flight and
//! for a majority of copies to hold everything, then proposes `Seal` with its epoch, which
//! Raft applies only while that epoch is current. If the leader dies first, the next one
//! (which took over every acknowledged record) seals instead. Readers read a sealed partition
//! up to its sealed end, and a group moves on to the new generation's partitions only after
//! reaching it (`consumer::generation_order`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::leader::Replication;
use crate::consensus::cluster_state::{Command, CommandResult};
use crate::error::ApiError;
use crate::timing::HAND_OVER_WAIT;

/// Pause after a seal that could not be made before it is tried again.
const RETRY_SEAL: Duration = Duration::from_millis(200);

impl Replication {
    /// Seals every partition of an older generation this broker serves, until `stop` fires;
    /// woken by Raft's changes (a resize, a takeover) and by a failed attempt's pause.
    pub async fn run_sealing(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let running: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
        let mut changes = self.leadership.changes();
        let retry = Arc::new(Notify::new());
        loop {
            let me = self.leadership.me();
            let due: Vec<(u32, u64)> = self.leadership.raft().read(|s| {
                s.unsealed().map(|p| (p, s.leader(p))).filter(|(_, l)| l.broker == me).map(|(p, l)| (p, l.epoch)).collect()
            });
            for (partition, epoch) in due {
                let serving = self.leadership.serving_epoch(partition) == Some(epoch);
                if !serving || !running.lock().unwrap_or_else(|p| p.into_inner()).insert(partition) {
                    continue;
                }
                let (this, running, retry) = (self.clone(), running.clone(), retry.clone());
                tokio::spawn(async move {
                    let result = this.seal(partition, epoch).await;
                    if let Err(e) = &result {
                        tracing::warn!(partition, epoch, "cannot seal the partition yet: {e}");
                        tokio::time::sleep(RETRY_SEAL).await;
                    }
                    running.lock().unwrap_or_else(|p| p.into_inner()).remove(&partition);
                    if result.is_err() {
                        retry.notify_one();
                    }
                });
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = retry.notified() => {}
                _ = stop.changed() => return,
            }
        }
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
