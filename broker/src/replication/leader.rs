//! The leader side: one replicator task per (topic partition, follower, epoch) streams the
//! leader's fsync'd records to the follower in offset order, from wherever the follower's
//! copy ends (so a follower that was down catches up by itself). Before that it compares leader
//! epochs and has the follower cut any tail this leader does not have. Produces wait until a
//! majority of copies hold their records; consumers read only that far (the high watermark).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::leadership::Leadership;
use super::peer_api::{CopyState, EPOCHS_HEADER};
use super::replica_set::others_needed;
use crate::cluster::{encode_frames, Peers};
use crate::error::ApiError;
use crate::store::{Appended, EpochStart, Storage, StorageError};

/// A produce waits at most this long for a majority of copies before it gets 503.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying an unreachable follower.
const RETRY: Duration = Duration::from_millis(200);
/// A replicator with nothing to send re-checks at least this often.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Most record bytes in one replication request.
pub(super) const SEND_BYTES: usize = 1024 * 1024;

pub(super) struct PartitionCopies {
    pub epoch: u64,
    pub followers: Vec<u32>,
    /// Where each follower's copy is known to end.
    pub ends: Mutex<Vec<u64>>,
    /// End of the prefix that a majority of copies hold (never moves back within an epoch).
    majority_end: watch::Sender<u64>,
    /// Wakes the replicators when the leader appended something.
    appended: Notify,
}

impl PartitionCopies {
    fn record(&self, index: usize, end: u64) {
        let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = ends.get_mut(index) {
            *slot = end;
        }
        let mut sorted = ends.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let needed = others_needed(sorted.len());
        if let Some(&reached) = sorted.get(needed.saturating_sub(1)) {
            self.majority_end.send_if_modified(|current| {
                let moved = reached > *current;
                *current = (*current).max(reached);
                moved
            });
        }
    }

    /// Where follower `broker`'s copy is known to end.
    pub fn end_of(&self, broker: u32) -> Option<u64> {
        let index = self.followers.iter().position(|b| *b == broker)?;
        self.ends.lock().unwrap_or_else(|p| p.into_inner()).get(index).copied()
    }
}

enum SendError {
    /// The follower's copy ends elsewhere.
    Mismatch,
    /// The follower knows a later leader epoch: this broker no longer leads.
    Fenced,
    Unreachable(String),
}

pub struct Replication {
    pub(super) storage: Storage,
    pub(super) peers: Peers,
    pub(super) leadership: Leadership,
    partitions: Mutex<HashMap<(String, u32), Arc<PartitionCopies>>>,
}

impl Replication {
    pub fn new(storage: Storage, peers: Peers, leadership: Leadership) -> Arc<Replication> {
        Arc::new(Replication { storage, peers, leadership, partitions: Mutex::new(HashMap::new()) })
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Appends on this broker (the partition's leader) and returns once a majority of the
    /// partition's copies hold the records fsync'd. [`ApiError::NotLeader`] means nothing was
    /// stored and the caller may send the records to the new leader.
    pub async fn append(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
        records: Vec<Bytes>,
    ) -> Result<Appended, ApiError> {
        let permit = self.leadership.write_permit(partition).ok_or(ApiError::NotLeader(partition))?;
        let epoch = permit.epoch;
        let appended = match self.storage.append(topic, partition, records, epoch).await {
            Err(StorageError::StaleEpoch { .. }) => return Err(ApiError::NotLeader(partition)),
            other => other?,
        };
        drop(permit);
        let copies = self.copies(topic, partition, epoch);
        if copies.followers.is_empty() {
            return Ok(appended);
        }
        copies.appended.notify_waiters();
        let end = appended.base_offset + u64::from(appended.count);
        let mut majority = copies.majority_end.subscribe();
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        loop {
            let reached = tokio::time::timeout(IDLE_WAIT, majority.wait_for(|r| *r >= end)).await;
            if matches!(reached, Ok(Ok(_))) {
                return Ok(appended);
            }
            if !self.leadership.leads(partition, epoch) {
                return Err(ApiError::Unavailable(format!(
                    "partition {partition} changed leader before a majority held the records (a retry may duplicate them)"
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::Unavailable(format!(
                    "partition {partition} could not reach a majority of its replicas (stored on the leader only; a retry may duplicate)"
                )));
            }
        }
    }

    /// Offsets below this may be served to consumers: a majority of copies hold them.
    pub fn readable_end(self: &Arc<Self>, topic: &str, partition: u32) -> u64 {
        let Some(epoch) = self.leadership.serving_epoch(partition) else { return 0 };
        let copies = self.copies(topic, partition, epoch);
        if copies.followers.is_empty() {
            return self.storage.bounds(topic, partition).map_or(0, |(_, end)| end);
        }
        let reached = *copies.majority_end.borrow();
        reached
    }

    /// The copies of `topic`/`partition` in `epoch`, starting their replicators on first use.
    pub(super) fn copies(self: &Arc<Self>, topic: &str, partition: u32, epoch: u64) -> Arc<PartitionCopies> {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(copies) = partitions.get(&(topic.to_string(), partition)).filter(|c| c.epoch == epoch) {
            return copies.clone();
        }
        let followers = self.leadership.others(partition);
        let copies = Arc::new(PartitionCopies {
            epoch,
            ends: Mutex::new(vec![0; followers.len()]),
            followers,
            majority_end: watch::channel(0).0,
            appended: Notify::new(),
        });
        for index in 0..copies.followers.len() {
            tokio::spawn(self.clone().replicate_to(copies.clone(), topic.to_string(), partition, index));
        }
        partitions.insert((topic.to_string(), partition), copies.clone());
        copies
    }

    async fn replicate_to(self: Arc<Self>, copies: Arc<PartitionCopies>, topic: String, partition: u32, index: usize) {
        let follower = copies.followers[index];
        let epoch = copies.epoch;
        let mut known_end: Option<u64> = None;
        while self.leadership.leads(partition, epoch) {
            let follower_end = match known_end {
                Some(end) => end,
                None => match self.agree_on_end(follower, &topic, partition, epoch).await {
                    Ok(end) => end,
                    Err(reason) => {
                        tracing::debug!(%topic, partition, follower, "replica not in step yet: {reason}");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
            };
            let appended = copies.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let local_end = self.storage.bounds(&topic, partition).map_or(0, |(_, end)| end);
            copies.record(index, follower_end.min(local_end));
            known_end = Some(follower_end);
            if follower_end >= local_end {
                let _ = tokio::time::timeout(IDLE_WAIT, appended).await;
                continue;
            }
            let read = match self.storage.read(&topic, partition, follower_end, SEND_BYTES).await {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(%topic, partition, "cannot read for replication: {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            if read.records.first().is_none_or(|r| r.offset != follower_end) {
                tracing::error!(%topic, partition, follower, follower_end,
                    "the records this replica needs are gone from the leader (retention); it cannot catch up");
                tokio::time::sleep(RETRY * 10).await;
                continue;
            }
            let values: Vec<Bytes> = read.records.into_iter().map(|r| r.value).collect();
            let end = follower_end + values.len() as u64;
            let epochs = self.storage.epochs_covering(&topic, partition, follower_end, end);
            match self.send(follower, &topic, partition, (follower_end, epoch), &values, &epochs).await {
                Ok(end) => known_end = Some(end),
                Err(SendError::Mismatch) => known_end = None,
                Err(SendError::Fenced) => {
                    tracing::info!(%topic, partition, follower, epoch, "a replica knows a newer leader; stepping back");
                    tokio::time::sleep(RETRY).await;
                    known_end = None;
                }
                Err(SendError::Unreachable(reason)) => {
                    tracing::debug!(%topic, partition, follower, "replication failed: {reason}");
                    known_end = None;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Finds where the follower's copy agrees with this log: asks for its end and last epoch,
    /// and has it cut whatever follows the end of that epoch here (the leader-epoch rule).
    async fn agree_on_end(&self, follower: u32, topic: &str, partition: u32, epoch: u64) -> Result<u64, String> {
        loop {
            let state = self.copy_state(follower, topic, partition).await?;
            if state.last_epoch > epoch {
                return Err(format!("the replica has records of epoch {}, newer than {epoch}", state.last_epoch));
            }
            let agreed = self.storage.end_of_epoch(topic, partition, state.last_epoch);
            if agreed >= state.end {
                return Ok(state.end);
            }
            tracing::info!(%topic, partition, follower, from = agreed, to = state.end, "replica has a tail this leader lacks; cutting it");
            let url =
                self.peers.url(follower, &format!("/cluster/truncate/{topic}/{partition}?to={agreed}&epoch={epoch}"));
            let response = self.peers.http().post(url).send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("truncate answered {}", response.status()));
            }
        }
    }

    pub(super) async fn copy_state(&self, broker: u32, topic: &str, partition: u32) -> Result<CopyState, String> {
        let url = self.peers.url(broker, &format!("/cluster/end/{topic}/{partition}"));
        let response = self.peers.http().get(url).timeout(RETRY * 5).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        response.json::<CopyState>().await.map_err(|e| e.to_string())
    }

    async fn send(
        &self,
        follower: u32,
        topic: &str,
        partition: u32,
        (base, epoch): (u64, u64),
        records: &[Bytes],
        epochs: &[EpochStart],
    ) -> Result<u64, SendError> {
        let url =
            self.peers.url(follower, &format!("/cluster/replicate/{topic}/{partition}?base={base}&epoch={epoch}"));
        let response = self
            .peers
            .http()
            .post(url)
            .header(EPOCHS_HEADER, super::peer_api::format_epochs(epochs))
            .body(encode_frames(records))
            .send()
            .await
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        let status = response.status();
        match (status.as_u16(), response.json::<CopyState>().await) {
            (200, Ok(state)) => Ok(state.end),
            (409, _) => Err(SendError::Mismatch),
            (412, _) => Err(SendError::Fenced),
            _ => Err(SendError::Unreachable(format!("answered {status}"))),
        }
    }
}
