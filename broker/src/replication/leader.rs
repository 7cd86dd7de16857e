//! The leader side: one replicator task per (topic partition, follower, epoch) streams the
//! leader's records to the follower in offset order, from wherever the follower's copy ends
//! (so a follower that was down catches up by itself). Before that it compares leader epochs
//! and has the follower cut any tail this leader does not have. New records go to followers
//! from memory while the leader's own fsync runs (pipelined), older ones from disk. Produces
//! wait until a majority of copies hold their records fsync'd (the leader's copy counts once its
//! fsync is done); consumers read only that far (the high watermark).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::copy_log::StoredCopy;
use super::copy_protocol::{agree_on_end, Copied, CopySource, FollowerLink, SendError, MAX_TIME_RUNS, SEND_BYTES};
use super::in_sync::InSync;
use super::leadership::Leadership;
use super::peer_client::RemoteCopy;
use super::replica_set::others_needed;
use crate::cluster::Peers;
use crate::consensus::RaftChanges;
use crate::error::ApiError;
use crate::memory::{Budget, Reservation};
use crate::store::{Appended, Conditions, EpochStart, Pipelined, ProducerWrite, Runs, Storage, StorageError, TimeRun};
use crate::timing::{ACK_TIMEOUT, MEMORY_WAIT};

/// Pause before retrying an unreachable follower.
const RETRY: Duration = Duration::from_millis(200);
/// A replicator with nothing to send wakes when the leader appends or Raft's state changes;
/// this is only a safety net should a wake-up be missed.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// The share of the replication budget one partition's tail may keep beyond what all of its
/// followers hold: past it, its oldest durable records are dropped and a slow follower reads
/// them from disk instead, so one partition with a follower down cannot take the whole budget.
const TAIL_SHARE: usize = 8;

pub(super) struct PartitionCopies {
    pub epoch: u64,
    pub followers: Vec<u32>,
    ends: Mutex<Ends>,
    /// End of the prefix that a majority of copies hold (never moves back within an epoch).
    pub(super) majority_end: watch::Sender<u64>,
    /// Wakes the replicators when the leader appended something.
    appended: Notify,
    /// Wakes those waiting for a copy to catch up, whenever one's end moved.
    pub(super) moved: Notify,
    /// The broker-wide wake-up of readers waiting for records (`Replication::readable`).
    readable: Arc<Notify>,
    /// Set when the topic's files were removed here: its replicators stop.
    dropped: std::sync::atomic::AtomicBool,
    /// Which followers keep up (for `runnel_partition_under_replicated`).
    in_sync: Mutex<InSync>,
}

struct TailBatch {
    records: Vec<Bytes>,
    time: i64,
    key_token: Option<i64>,
    stamp: Option<Arc<ProducerWrite>>,
    _held: Reservation,
}

#[derive(Default)]
struct Ends {
    /// Where each follower's copy is known to end.
    followers: Vec<u64>,
    /// Where the leader's fsync'd copy ends.
    leader: u64,
    /// Batches accepted by the leader's writer, by base offset, not yet held by every follower,
    /// each with its append time, key token and producer stamp and its memory from the
    /// replication budget.
    /// A batch the budget had no room for is not kept: its followers read it from disk once it
    /// is durable.
    tail: BTreeMap<u64, TailBatch>,
    tail_bytes: usize,
    /// Most bytes this partition's tail keeps once they are durable here.
    tail_limit: usize,
}

impl Ends {
    fn tail_end(&self) -> Option<u64> {
        self.tail.iter().next_back().map(|(base, batch)| base + batch.records.len() as u64)
    }

    /// Keeps a batch for the followers, if the replication budget has room for it.
    fn keep(
        &mut self,
        (base, time): (u64, i64),
        batch: (Vec<Bytes>, Option<i64>, Option<ProducerWrite>),
        budget: &Budget,
    ) {
        let (records, key_token, stamp) = batch;
        let bytes = records.iter().map(Bytes::len).sum::<usize>();
        if let Some(held) = budget.try_reserve(bytes) {
            self.tail_bytes += bytes;
            let stamp = stamp.map(Arc::new);
            self.tail.insert(base, TailBatch { records, time, key_token, stamp, _held: held });
        }
    }

    /// Drops the batches from `base` on (promised by the writer, then not written).
    fn forget_from(&mut self, base: u64) {
        let dropped = self.tail.split_off(&base);
        self.tail_bytes -= dropped.values().flat_map(|b| &b.records).map(Bytes::len).sum::<usize>();
    }

    /// Drops batches every follower holds, and old durable ones beyond the memory bound.
    fn prune(&mut self) {
        let everyone = self.followers.iter().copied().min().unwrap_or(u64::MAX);
        while let Some((&base, batch)) = self.tail.iter().next() {
            let end = base + batch.records.len() as u64;
            let over = self.tail_bytes > self.tail_limit && end <= self.leader;
            if end > everyone && !over {
                break;
            }
            self.tail_bytes -= batch.records.iter().map(Bytes::len).sum::<usize>();
            self.tail.remove(&base);
        }
    }
}

impl PartitionCopies {
    fn ends(&self) -> std::sync::MutexGuard<'_, Ends> {
        self.ends.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recomputes the majority end after one copy's end moved.
    fn update(&self, change: impl FnOnce(&mut Ends)) {
        let mut ends = self.ends();
        change(&mut ends);
        ends.prune();
        let mut all: Vec<u64> = ends.followers.clone();
        all.push(ends.leader);
        all.sort_unstable_by(|a, b| b.cmp(a));
        let needed = others_needed(ends.followers.len()) + 1;
        if let Some(&reached) = all.get(needed - 1) {
            let readable = self.majority_end.send_if_modified(|current| {
                let moved = reached > *current;
                *current = (*current).max(reached);
                moved
            });
            if readable {
                self.readable.notify_waiters();
            }
        }
        self.moved.notify_waiters();
    }

    fn caught_up(&self, index: usize) {
        self.in_sync.lock().unwrap_or_else(|p| p.into_inner()).caught_up(index);
    }

    /// Where follower `broker`'s copy is known to end.
    pub fn end_of(&self, broker: u32) -> Option<u64> {
        let index = self.followers.iter().position(|b| *b == broker)?;
        self.ends().followers.get(index).copied()
    }

    /// In-memory records from `from` on (up to [`SEND_BYTES`], never part of an idempotent
    /// request: see `store::producers`), if the tail holds `from`.
    fn tail_from(&self, from: u64) -> Option<(Vec<Bytes>, Vec<TimeRun>)> {
        let ends = self.ends();
        let (&base, first) = ends.tail.range(..=from).next_back()?;
        let skip = (from - base) as usize;
        if skip >= first.records.len() {
            return None;
        }
        let mut out: Vec<Bytes> = first.records[skip..].to_vec();
        let mut runs = Runs::bounded(MAX_TIME_RUNS);
        runs.add(out.len() as u32, (first.time, first.key_token), first.stamp.clone());
        let mut bytes: usize = out.iter().map(Bytes::len).sum();
        let mut next = base + first.records.len() as u64;
        while bytes < SEND_BYTES {
            let Some(batch) = ends.tail.get(&next) else { break };
            if !runs.add(batch.records.len() as u32, (batch.time, batch.key_token), batch.stamp.clone()) {
                break;
            }
            bytes += batch.records.iter().map(Bytes::len).sum::<usize>();
            next += batch.records.len() as u64;
            out.extend(batch.records.iter().cloned());
        }
        let times = runs.into_runs();
        Some((out, times))
    }
}

pub struct Replication {
    pub(super) storage: Storage,
    pub(super) peers: Peers,
    pub(super) leadership: Leadership,
    partitions: Mutex<HashMap<(String, u32), Arc<PartitionCopies>>>,
    /// What the leaders' tails keep in memory for followers, and what replicators read and
    /// frame to send.
    memory: Budget,
    /// Set at shutdown, the broker's one "shutting down" flag: the controller gives this broker
    /// no new partitions, its client ports refuse new writes and report not ready, and waiting
    /// polls answer.
    draining: watch::Sender<bool>,
    /// Notified whenever records become readable in any partition this broker leads (a
    /// majority of copies holds more): long-polls wait on it instead of asking again.
    readable: Arc<Notify>,
}

impl Replication {
    /// `memory` bounds the records leaders keep in memory for their followers and what
    /// replicators read and frame to send.
    pub fn new(storage: Storage, peers: Peers, leadership: Leadership, memory: Budget) -> Arc<Replication> {
        Arc::new(Replication {
            storage,
            peers,
            leadership,
            partitions: Mutex::new(HashMap::new()),
            memory,
            draining: watch::channel(false).0,
            readable: Arc::new(Notify::new()),
        })
    }

    /// The broker is shutting down: from now on it reports itself draining (see `draining`).
    pub fn begin_draining(&self) {
        self.draining.send_replace(true);
    }

    pub fn draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves once the broker starts shutting down.
    pub async fn drain_started(&self) {
        let mut draining = self.draining.subscribe();
        let _ = draining.wait_for(|d| *d).await;
    }

    /// Notified whenever more records became readable in a partition this broker leads; a
    /// waiter enables its `notified()` before it looks, so it misses none.
    pub fn readable(&self) -> &Notify {
        &self.readable
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Why this broker must not serve: its ring is not the one the cluster agreed in Raft.
    pub fn ring_conflict(&self) -> Option<String> {
        self.leadership.raft().read(|s| self.peers.disagreement(s))
    }

    /// Where this broker's copy of a topic partition ends, and the epoch of its newest record.
    /// This broker's copy of a topic partition, as the replication protocol sees it.
    pub(super) fn local<'a>(&'a self, topic: &'a str, partition: u32) -> StoredCopy<'a> {
        StoredCopy { storage: &self.storage, topic, partition }
    }

    /// Appends on this broker (the partition's leader) and returns once a majority of the
    /// partition's copies hold the records fsync'd. [`ApiError::NotLeader`] means nothing was
    /// stored and the caller may send the records to the new leader.
    pub async fn append(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
        records: Vec<Bytes>,
        conditions: Conditions,
    ) -> Result<Appended, ApiError> {
        let permit = self.leadership.write_permit(partition).ok_or(ApiError::NotLeader(partition))?;
        let epoch = permit.epoch;
        let copies = self.copies(topic, partition, epoch);
        let sent = (!copies.followers.is_empty()).then(|| records.clone());
        let (producer, key_token) = (conditions.producer.clone(), conditions.key_token);
        let pipelined = match self.storage.append_pipelined(topic, partition, records, epoch, conditions).await {
            Err(StorageError::StaleEpoch { .. }) => return Err(ApiError::NotLeader(partition)),
            other => other?,
        };
        let (base, time, durable) = match pipelined {
            Pipelined::Promised { base, time, durable } => (base, time, durable),
            // A repeat: answered like the original once a majority holds that.
            Pipelined::Stored(original) => {
                drop(permit);
                return self.acknowledged(&copies, partition, epoch, original).await;
            }
        };
        if let Some(records) = sent {
            let stamp = producer.map(|stamp| ProducerWrite { stamp, first: base });
            copies.update(|ends| ends.keep((base, time), (records, key_token, stamp), &self.memory));
            copies.appended.notify_waiters();
        }
        let appended = match durable.await.map_err(|_| StorageError::Closed).and_then(|r| r) {
            Ok(appended) => appended,
            Err(e) => {
                // Not written here, so never sent on: the log failed the partition, and the
                // followers must not be given records at offsets this copy does not hold.
                copies.update(|ends| ends.forget_from(base));
                return Err(e.into());
            }
        };
        drop(permit);
        let end = appended.base_offset + u64::from(appended.count);
        copies.update(|ends| ends.leader = ends.leader.max(end));
        // A batch the tail had no room for is sent from disk now that it is durable here.
        copies.appended.notify_waiters();
        self.acknowledged(&copies, partition, epoch, appended).await
    }

    /// `appended` once a majority of the partition's copies hold it.
    async fn acknowledged(
        &self,
        copies: &PartitionCopies,
        partition: u32,
        epoch: u64,
        appended: Appended,
    ) -> Result<Appended, ApiError> {
        let end = appended.base_offset + u64::from(appended.count);
        if copies.followers.is_empty() {
            return Ok(appended);
        }
        let mut majority = copies.majority_end.subscribe();
        let mut changes = self.leadership.changes();
        let deadline = tokio::time::sleep(ACK_TIMEOUT);
        tokio::pin!(deadline);
        // Woken by the majority moving, by Raft's state changing (the leadership may have
        // moved), or by the deadline: nothing is polled.
        loop {
            tokio::select! {
                // The sender lives in `copies`, which this holds: the wait cannot fail.
                _ = majority.wait_for(|r| *r >= end) => return Ok(appended),
                changed = changes.changed() => if changed.is_err() {
                    return Err(ApiError::Unavailable("the broker is shutting down".into()));
                },
                _ = &mut deadline => return Err(ApiError::Unavailable(format!(
                    "partition {partition} could not reach a majority of its replicas (stored on the leader only; a retry may duplicate)"
                ))),
            }
            if !self.leadership.leads(partition, epoch) {
                return Err(ApiError::Unavailable(format!(
                    "partition {partition} changed leader before a majority held the records (a retry may duplicate them)"
                )));
            }
        }
    }

    /// Topic partitions with replication state here.
    pub fn replicated_partitions(&self) -> usize {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The topic partitions this broker leads (among those with replication state: written or
    /// read since it took them over) with a follower that has not caught up for
    /// [`crate::timing::UNDER_REPLICATED_AFTER`], sorted.
    pub fn under_replicated(&self) -> Vec<(String, u32)> {
        let partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let mut lagging: Vec<(String, u32)> = partitions
            .iter()
            .filter(|((_, p), copies)| {
                self.leadership.leads(*p, copies.epoch)
                    && !copies.dropped.load(std::sync::atomic::Ordering::Acquire)
                    && copies.in_sync.lock().unwrap_or_else(|p| p.into_inner()).under_replicated()
            })
            .map(|(key, _)| key.clone())
            .collect();
        lagging.sort_unstable();
        lagging
    }

    /// Offsets below this may be served to consumers: a majority of copies hold them. A topic
    /// partition this broker does not hold has none, and gets no replication state.
    pub fn readable_end(self: &Arc<Self>, topic: &str, partition: u32) -> u64 {
        let Some(epoch) = self.leadership.serving_epoch(partition) else { return 0 };
        if self.storage.bounds(topic, partition).is_none() {
            return 0;
        }
        let copies = self.copies(topic, partition, epoch);
        let reached = if copies.followers.is_empty() {
            self.storage.end(topic, partition)
        } else {
            *copies.majority_end.borrow()
        };
        // A sealed partition ends where it was sealed, whatever a later leader's log holds.
        let sealed = self.leadership.raft().read(|s| s.sealed_end(topic, partition));
        sealed.map_or(reached, |end| reached.min(end))
    }

    /// (first retained offset, readable end) of a partition this broker leads and holds; the
    /// start is never past the end (retention may have removed more than a majority holds).
    pub fn read_bounds(self: &Arc<Self>, topic: &str, partition: u32) -> Option<(u64, u64)> {
        let (start, _) = self.storage.bounds(topic, partition)?;
        let end = self.readable_end(topic, partition);
        Some((start.min(end), end))
    }

    /// The copies of `topic`/`partition` in `epoch`, starting their replicators on first use.
    pub(super) fn copies(self: &Arc<Self>, topic: &str, partition: u32, epoch: u64) -> Arc<PartitionCopies> {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(copies) = partitions.get(&(topic.to_string(), partition)).filter(|c| c.epoch == epoch) {
            return copies.clone();
        }
        // Partitions whose epoch this broker no longer leads: their replicators have stopped.
        partitions.retain(|(_, p), copies| self.leadership.leads(*p, copies.epoch));
        let followers = self.leadership.others(partition);
        let copies_of_others = followers.len();
        let leader = self.storage.end(topic, partition);
        let copies = Arc::new(PartitionCopies {
            epoch,
            ends: Mutex::new(Ends {
                followers: vec![0; copies_of_others],
                leader,
                tail_limit: self.memory.size() / TAIL_SHARE,
                ..Ends::default()
            }),
            followers,
            majority_end: watch::channel(0).0,
            appended: Notify::new(),
            moved: Notify::new(),
            readable: self.readable.clone(),
            dropped: Default::default(),
            in_sync: Mutex::new(InSync::new(copies_of_others)),
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
        let mut changes = self.leadership.changes();
        while self.leadership.leads(partition, epoch) && !copies.dropped.load(std::sync::atomic::Ordering::Acquire) {
            let follower_end = match known_end {
                Some(end) => end,
                None => match self.agree_with(follower, &topic, partition, &copies).await {
                    Ok(end) => end,
                    Err(reason) => {
                        tracing::debug!(%topic, partition, follower, "replica not in step yet: {reason}");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
            };
            // Retention deleted what comes after the follower's end (a new or wiped copy, or one
            // down for longer than the retention): it starts again where this log starts.
            let start = self.storage.bounds(&topic, partition).map_or(0, |(start, _)| start);
            if follower_end < start {
                let link = RemoteCopy { replication: &self, broker: follower, topic: &topic, partition };
                match link.restart_at(start, epoch).await {
                    Ok(end) => {
                        tracing::info!(%topic, partition, follower, from = follower_end, start,
                            "the replica restarts at this log's start: retention deleted what it lacked");
                        known_end = Some(end);
                    }
                    Err(reason) => {
                        tracing::debug!(%topic, partition, follower, "replica restart failed: {reason}");
                        known_end = None;
                        tokio::time::sleep(RETRY).await;
                    }
                }
                continue;
            }
            let appended = copies.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let durable_end = self.storage.end(&topic, partition);
            copies.update(|ends| {
                if let Some(slot) = ends.followers.get_mut(index) {
                    *slot = follower_end;
                }
            });
            known_end = Some(follower_end);
            let local_end = durable_end.max(copies.ends().tail_end().unwrap_or(0));
            if follower_end >= local_end {
                copies.caught_up(index);
                idle(&mut changes, appended.as_mut()).await;
                continue;
            }
            let sent = match copies.tail_from(follower_end) {
                // Written in this epoch, maybe not fsync'd here yet. The records are paid for
                // in the tail; their framed copy is not.
                Some((records, times)) => {
                    let framed = records.iter().map(|v| v.len() + 4).sum::<usize>();
                    let epochs = vec![EpochStart { epoch, start: follower_end }];
                    self.reserve_for(&topic, partition, follower, framed)
                        .await
                        .map(|held| (Copied { records, epochs, times }, held))
                }
                // The next batch is accepted but not in the tail (not handed to it yet, or no
                // room there): sent from disk once durable here.
                None if follower_end >= durable_end => {
                    copies.caught_up(index);
                    idle(&mut changes, appended.as_mut()).await;
                    continue;
                }
                // What is read, and its framed copy.
                None => match self.reserve_for(&topic, partition, follower, 2 * SEND_BYTES).await {
                    Some(held) => {
                        self.read_durable(&topic, partition, follower, follower_end).await.map(|copied| (copied, held))
                    }
                    None => None,
                },
            };
            let Some((copied, _held)) = sent else { continue };
            let link = RemoteCopy { replication: &self, broker: follower, topic: &topic, partition };
            match link.replicate(follower_end, epoch, &copied.epochs, &copied.records, &copied.times).await {
                Ok(end) => {
                    if end >= local_end {
                        copies.caught_up(index);
                    }
                    known_end = Some(end);
                }
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

    /// `bytes` of the replication budget for one send, waiting at most [`MEMORY_WAIT`].
    async fn reserve_for(&self, topic: &str, partition: u32, follower: u32, bytes: usize) -> Option<Reservation> {
        match self.memory.reserve(bytes, MEMORY_WAIT).await {
            Ok(held) => Some(held),
            Err(busy) => {
                tracing::debug!(%topic, partition, follower, "replication waits for memory: {busy}");
                None
            }
        }
    }

    /// Records from `from` read from this broker's disk, with their epochs.
    async fn read_durable(&self, topic: &str, partition: u32, follower: u32, from: u64) -> Option<Copied> {
        match self.local(topic, partition).read_from(from).await {
            Ok(copied) if !copied.records.is_empty() => Some(copied),
            Ok(_) => {
                tracing::error!(%topic, partition, follower, from,
                    "the records this replica needs are gone from the leader (retention); it cannot catch up");
                tokio::time::sleep(RETRY * 10).await;
                None
            }
            Err(e) => {
                tracing::warn!(%topic, partition, "cannot read for replication: {e}");
                tokio::time::sleep(RETRY).await;
                None
            }
        }
    }

    /// Finds where the follower's copy agrees with this log (see [`agree_on_end`]).
    async fn agree_with(
        &self,
        follower: u32,
        topic: &str,
        partition: u32,
        copies: &PartitionCopies,
    ) -> Result<u64, String> {
        let link = RemoteCopy { replication: self, broker: follower, topic, partition };
        agree_on_end(&self.local(topic, partition), copies.epoch, || copies.ends().tail_end(), &link).await
    }
}

/// Waits until the leader appends (`appended`), Raft's state changes (the leadership may have
/// moved), or [`IDLE_WAIT`] passes.
async fn idle(changes: &mut RaftChanges, appended: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) {
    // A closed watch (Raft stopped) would resolve at once, every time.
    let raft_running = changes.has_changed().is_ok();
    tokio::select! {
        _ = appended => {}
        _ = changes.changed(), if raft_running => {}
        _ = tokio::time::sleep(IDLE_WAIT) => {}
    }
}

/// A deleted topic's copies stop being sent, and a topic created again under the name starts
/// with new ones.
impl crate::topics::HoldsTopics for Replication {
    fn forget_topic(&self, topic: &str) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        partitions.retain(|(t, _), copies| {
            let keep = t != topic;
            if !keep {
                copies.dropped.store(true, std::sync::atomic::Ordering::Release);
                copies.appended.notify_waiters();
            }
            keep
        });
    }
}
