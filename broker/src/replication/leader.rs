//! The leader side: one replicator task per (partition, follower) streams the leader's
//! fsync'd records to the follower in offset order, from wherever the follower's copy ends
//! (so a follower that was down catches up by itself). Produces wait until a majority of
//! copies hold their records; consumers read only that far (the high watermark).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::follower_api::ReplicaEnd;
use super::replica_set::{followers_needed, followers_of};
use crate::cluster::{encode_frames, Peers};
use crate::error::ApiError;
use crate::partitioning::Ring;
use crate::store::{Appended, Storage};

/// A produce waits at most this long for a majority of copies before it gets 503.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying an unreachable follower.
const RETRY: Duration = Duration::from_millis(200);
/// A replicator with nothing to send re-checks at least this often.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Most record bytes in one replication request.
const SEND_BYTES: usize = 1024 * 1024;

struct PartitionCopies {
    followers: Vec<u32>,
    /// Where each follower's copy is known to end.
    ends: Mutex<Vec<u64>>,
    /// End of the prefix that a majority of copies hold (never moves back).
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
        let needed = followers_needed(sorted.len());
        if let Some(&reached) = sorted.get(needed.saturating_sub(1)) {
            self.majority_end.send_if_modified(|current| {
                let moved = reached > *current;
                *current = (*current).max(reached);
                moved
            });
        }
    }
}

enum SendError {
    /// The follower's copy ends elsewhere.
    Mismatch(u64),
    Unreachable(String),
}

pub struct Replication {
    storage: Storage,
    peers: Peers,
    ring: Ring,
    partitions: Mutex<HashMap<(String, u32), Arc<PartitionCopies>>>,
}

impl Replication {
    pub fn new(storage: Storage, peers: Peers, ring: Ring) -> Arc<Replication> {
        Arc::new(Replication { storage, peers, ring, partitions: Mutex::new(HashMap::new()) })
    }

    /// Appends on this broker (the partition's leader) and returns once a majority of the
    /// partition's copies hold the records fsync'd.
    pub async fn append(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
        records: Vec<Bytes>,
    ) -> Result<Appended, ApiError> {
        let appended = self.storage.append(topic, partition, records).await?;
        let copies = self.copies(topic, partition);
        if copies.followers.is_empty() {
            return Ok(appended);
        }
        copies.appended.notify_waiters();
        let end = appended.base_offset + u64::from(appended.count);
        let mut majority = copies.majority_end.subscribe();
        let reached = tokio::time::timeout(ACK_TIMEOUT, async { majority.wait_for(|r| *r >= end).await.is_ok() }).await;
        match reached {
            Ok(true) => Ok(appended),
            _ => Err(ApiError::Unavailable(format!(
                "partition {partition} could not reach a majority of its replicas (stored on the leader only; a retry may duplicate)"
            ))),
        }
    }

    /// Offsets below this may be served to consumers: a majority of copies hold them.
    pub fn readable_end(self: &Arc<Self>, topic: &str, partition: u32) -> u64 {
        let copies = self.copies(topic, partition);
        if copies.followers.is_empty() {
            return self.storage.bounds(topic, partition).map_or(0, |(_, end)| end);
        }
        let reached = *copies.majority_end.borrow();
        reached
    }

    fn copies(self: &Arc<Self>, topic: &str, partition: u32) -> Arc<PartitionCopies> {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(copies) = partitions.get(&(topic.to_string(), partition)) {
            return copies.clone();
        }
        let followers = followers_of(&self.ring, self.peers.count(), partition);
        let copies = Arc::new(PartitionCopies {
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
        let mut known_end: Option<u64> = None;
        loop {
            let follower_end = match known_end {
                Some(end) => end,
                None => match self.ask_end(follower, &topic, partition).await {
                    Ok(end) => end,
                    Err(reason) => {
                        tracing::debug!(%topic, partition, follower, "replica unreachable: {reason}");
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
                if follower_end > local_end {
                    tracing::error!(%topic, partition, follower, follower_end, local_end,
                        "a replica holds more than its leader; it is not counted until the leader catches up");
                }
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
            match self.send(follower, &topic, partition, follower_end, &values).await {
                Ok(end) => known_end = Some(end),
                Err(SendError::Mismatch(end)) => known_end = Some(end),
                Err(SendError::Unreachable(reason)) => {
                    tracing::debug!(%topic, partition, follower, "replication failed: {reason}");
                    known_end = None;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    async fn ask_end(&self, follower: u32, topic: &str, partition: u32) -> Result<u64, String> {
        let url = self.peers.url(follower, &format!("/cluster/end/{topic}/{partition}"));
        let response = self.peers.http().get(url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        response.json::<ReplicaEnd>().await.map(|r| r.end).map_err(|e| e.to_string())
    }

    async fn send(
        &self,
        follower: u32,
        topic: &str,
        partition: u32,
        base: u64,
        records: &[Bytes],
    ) -> Result<u64, SendError> {
        let url = self.peers.url(follower, &format!("/cluster/replicate/{topic}/{partition}?base={base}"));
        let response = self
            .peers
            .http()
            .post(url)
            .body(encode_frames(records))
            .send()
            .await
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        let status = response.status();
        let end = response.json::<ReplicaEnd>().await.map(|r| r.end);
        match (status.as_u16(), end) {
            (200, Ok(end)) => Ok(end),
            (409, Ok(end)) => Err(SendError::Mismatch(end)),
            (_, _) => Err(SendError::Unreachable(format!("answered {status}"))),
        }
    }
}
