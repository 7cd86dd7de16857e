//! Leasing (`next`): from the partitions of the group's topics that this broker leads, records
//! the windows offer, read from storage, up to the batch size and the byte bound; waiting, when
//! none is available, for new records, a lease that ends or a record given back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Notify;

use super::ack_token::AckToken;
use super::dead_letter::DeadRecord;
use super::window::{Candidate, LeaseRules, LeaseWindow, RecordKey};
use crate::cluster::Peers;
use crate::consensus::cluster_state::{Command, CommandResult};
use crate::consensus::queue_groups::{QueueSetOutcome, QueueSettings};
use crate::consensus::RaftNode;
use crate::error::ApiError;
use crate::memory::{Budget, Reservation};
use crate::metrics::QueueMetrics;
use crate::produce::ProduceService;
use crate::replication::Replication;
use crate::store::{Storage, StoredRecord};
use crate::timing::MEMORY_WAIT;

/// The bounds of leasing.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Records of one partition leased or waiting past its acknowledged floor
    /// (`RUNNEL_QUEUE_MAX_IN_FLIGHT`): `next` returns fewer when a partition reaches it.
    pub max_in_flight: usize,
    /// Most records one `next` leases.
    pub max_batch: usize,
    /// Most record bytes one `next` returns (`RUNNEL_POLL_MAX_BYTES`; at least one record).
    pub max_bytes: usize,
    /// Longest `wait` (`RUNNEL_POLL_WAIT_MAX_MS`).
    pub wait_max: Duration,
}

/// A leased record as `next` returns it.
#[derive(Debug, Clone)]
pub struct LeasedRecord {
    pub ack_token: String,
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub delivery_count: u32,
    pub value: Bytes,
}

/// Counts of the group on this broker's partitions (Sequin's `info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    /// Records not leased yet (new, given back or whose lease ended).
    pub num_pending: u64,
    /// Records leased and not acknowledged.
    pub num_ack_pending: u64,
}

pub struct NextBatch {
    pub records: Vec<LeasedRecord>,
    pub info: QueueInfo,
    /// What the records' bytes hold of the reads budget until the answer is sent.
    pub held: Reservation,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct WindowKey {
    pub group: String,
    pub topic: String,
    pub partition: u32,
}

/// A window, and the leader epoch it belongs to: one of another epoch is rebuilt from Raft.
pub(super) struct PartitionQueue {
    pub epoch: u64,
    pub window: LeaseWindow,
}

pub struct QueueService {
    pub(super) raft: RaftNode,
    pub(super) replication: Arc<Replication>,
    storage: Storage,
    pub(super) produce: Arc<ProduceService>,
    pub(super) peers: Peers,
    reads: Budget,
    pub limits: QueueLimits,
    /// The windows of the partitions this broker leads, per group and topic.
    windows: Mutex<HashMap<WindowKey, PartitionQueue>>,
    /// A record was given back or could not be acknowledged: a waiting `next` looks again.
    pub(super) given_back: Notify,
    /// Lease numbers: from a random start, so a token never names a lease of another group,
    /// broker or broker run.
    lease_ids: AtomicU64,
    /// Rotates the partition a `next` starts with, so no partition waits behind the others.
    turn: AtomicUsize,
    pub(super) metrics: Arc<QueueMetrics>,
}

impl QueueService {
    pub fn new(
        (raft, replication, storage): (RaftNode, Arc<Replication>, Storage),
        (produce, peers): (Arc<ProduceService>, Peers),
        reads: Budget,
        limits: QueueLimits,
        metrics: Arc<QueueMetrics>,
    ) -> QueueService {
        let mut seed = [0u8; 8];
        // A fixed start only risks a stale token naming a new lease of the same record.
        let _ = getrandom::fill(&mut seed);
        QueueService {
            raft,
            replication,
            storage,
            produce,
            peers,
            reads,
            limits,
            windows: Mutex::default(),
            given_back: Notify::new(),
            lease_ids: AtomicU64::new(u64::from_le_bytes(seed) >> 1),
            turn: AtomicUsize::new(0),
            metrics,
        }
    }

    /// The group's settings from the applied Raft state.
    pub fn settings(&self, group: &str) -> Option<QueueSettings> {
        self.raft.read(|s| s.queues.get(group).map(|g| g.settings.clone()))
    }

    /// Creates `group` with `settings`, or changes it (`PUT /v1/queue/{group}`): whether it
    /// was created.
    pub async fn put(&self, group: &str, settings: QueueSettings) -> Result<bool, ApiError> {
        match self.set(group, settings, false).await? {
            QueueSetOutcome::Created => Ok(true),
            QueueSetOutcome::Changed | QueueSetOutcome::Kept(_) => Ok(false),
            QueueSetOutcome::Full => Err(groups_full()),
        }
    }

    async fn set(&self, group: &str, settings: QueueSettings, only_create: bool) -> Result<QueueSetOutcome, ApiError> {
        let command = Command::SetQueue { group: group.to_string(), settings, only_create };
        match self.raft.propose(command).await? {
            CommandResult::QueueSet(outcome) => Ok(outcome),
            other => Err(ApiError::Internal(format!("unexpected answer to a queue setting: {other:?}"))),
        }
    }

    /// The settings `next` leases by: the group's, created with the defaults on first use
    /// (which must name the topics); topics named must be the group's.
    async fn settings_for_next(&self, group: &str, topics: &[String]) -> Result<QueueSettings, ApiError> {
        let settings = match self.settings(group) {
            Some(settings) => settings,
            None if topics.is_empty() => {
                return Err(ApiError::BadRequest(format!(
                    "queue group '{group}' does not exist yet: name its topics (?topic=T&topic=T2…) to create it"
                )))
            }
            None => match self.set(group, QueueSettings::defaults(topics.to_vec()), true).await? {
                QueueSetOutcome::Created => QueueSettings::defaults(topics.to_vec()),
                QueueSetOutcome::Kept(settings) => settings,
                QueueSetOutcome::Changed | QueueSetOutcome::Full => return Err(groups_full()),
            },
        };
        let mut asked = topics.to_vec();
        let mut has = settings.topics.clone();
        asked.sort();
        has.sort();
        if !topics.is_empty() && asked != has {
            return Err(ApiError::QueueConflict(format!(
                "queue group '{group}' reads other topics than {asked:?}: name the same ones, none, or change the group with PUT /v1/queue/{group}"
            )));
        }
        Ok(settings)
    }

    /// Leases up to `batch_size` records (SPEC §14), waiting up to `wait` for one.
    pub async fn next(
        self: &Arc<Self>,
        group: &str,
        topics: &[String],
        batch_size: usize,
        wait: Duration,
    ) -> Result<NextBatch, ApiError> {
        if wait > self.limits.wait_max {
            return Err(ApiError::WaitTooLong { max_ms: self.limits.wait_max.as_millis() as u64 });
        }
        if batch_size == 0 || batch_size > self.limits.max_batch {
            return Err(ApiError::BadRequest(format!("batch_size must be 1 to {}", self.limits.max_batch)));
        }
        let settings = self.settings_for_next(group, topics).await?;
        let deadline = tokio::time::Instant::now() + wait;
        let leadership = self.replication.leadership();
        let mut served = leadership.serving_version();
        loop {
            let readable = self.replication.readable().notified();
            let given_back = self.given_back.notified();
            tokio::pin!(readable, given_back);
            readable.as_mut().enable();
            given_back.as_mut().enable();
            let (batch, wake) = self.lease_once(group, &settings, batch_size).await?;
            if !batch.records.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(batch);
            }
            let until = wake.map_or(deadline, |at| tokio::time::Instant::from_std(at).min(deadline));
            // Wakes for new records, a record given back, a lease or delay that ends, and the
            // partitions this broker serves changing; not for every Raft entry applied.
            let mut changes = leadership.changes();
            tokio::select! {
                _ = &mut readable => {}
                _ = &mut given_back => {}
                _ = tokio::time::sleep_until(until) => {}
                _ = self.replication.drain_started() => return Ok(batch),
                _ = async {
                    while leadership.serving_version() == served {
                        if changes.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                } => served = leadership.serving_version(),
            }
        }
    }

    /// One pass over the partitions: what was leased, and when a lease ends or a delay runs
    /// out next (for a `next` with nothing to wait for it until then).
    async fn lease_once(
        self: &Arc<Self>,
        group: &str,
        settings: &QueueSettings,
        limit: usize,
    ) -> Result<(NextBatch, Option<Instant>), ApiError> {
        let rules = LeaseRules {
            ack_wait: Duration::from_millis(settings.ack_wait_ms),
            max_deliver: u32::try_from(settings.max_deliver).ok().filter(|&m| m > 0),
            ordered: settings.ordered,
        };
        let served = self.replication.leadership().served();
        let places: Vec<(&String, u32, u64)> =
            settings.topics.iter().flat_map(|t| served.iter().map(move |&(p, epoch)| (t, p, epoch))).collect();
        let mut held: Option<Reservation> = None;
        let mut records: Vec<LeasedRecord> = Vec::new();
        let mut bytes = 0;
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        for i in 0..places.len() {
            if records.len() >= limit || bytes >= self.limits.max_bytes {
                break;
            }
            let (topic, partition, epoch) = places[(first + i) % places.len()];
            let Some((start, end)) = self.replication.read_bounds(topic, partition) else { continue };
            let key = WindowKey { group: group.to_string(), topic: topic.clone(), partition };
            let now = now();
            let wanted = {
                let mut windows = self.lock_windows();
                let Some(window) = self.window(&mut windows, &key, epoch, now) else { continue };
                window.skip_to(start);
                window.wanted(now, end, limit - records.len(), settings.ordered)
            };
            if wanted.is_empty() {
                continue;
            }
            if held.is_none() {
                // Charged only once there is something to read: an idle long-poll holds nothing.
                held = Some(self.reads.reserve(2 * self.limits.max_bytes, MEMORY_WAIT).await?);
            }
            let read = self.read_wanted(topic, partition, &wanted, self.limits.max_bytes - bytes).await?;
            let key_of = |r: &StoredRecord| r.key_token.map_or(RecordKey::Keyless, RecordKey::Token);
            let candidates: Vec<Candidate> =
                read.iter().map(|r| Candidate { offset: r.offset, key: key_of(r) }).collect();
            let got = {
                let mut windows = self.lock_windows();
                // Leadership may have moved during the read: then nothing is leased here.
                let Some(queue) = windows.get_mut(&key).filter(|q| q.epoch == epoch) else { continue };
                let ids = || self.lease_ids.fetch_add(1, Ordering::Relaxed);
                queue.window.lease(now, &candidates, limit - records.len(), rules, ids)
            };
            let value_of = |offset: u64| read.iter().find(|r| r.offset == offset).map(|r| r.value.clone());
            let dead: Vec<DeadRecord> = got
                .dead
                .iter()
                .map(|&(offset, deliveries)| DeadRecord {
                    key: key.clone(),
                    epoch,
                    offset,
                    deliveries,
                    value: value_of(offset).unwrap_or_default(),
                })
                .collect();
            if !dead.is_empty() {
                // Its own task: a `next` cancelled meanwhile leaves no record settling for good.
                tokio::spawn(Arc::clone(self).dead_letter(settings.dead_letter_topic.clone(), dead));
            }
            for (offset, lease, delivery_count) in got.leased {
                let value = value_of(offset).unwrap_or_default();
                bytes += value.len();
                if delivery_count > 1 {
                    self.metrics.redelivered(group).inc();
                }
                let ack_token = AckToken { topic: topic.clone(), partition, offset, epoch, lease }.encode();
                records.push(LeasedRecord {
                    ack_token,
                    topic: topic.clone(),
                    partition,
                    offset,
                    delivery_count,
                    value,
                });
            }
        }
        self.metrics.leased(group).inc_by(records.len() as u64);
        let mut held = held.unwrap_or_else(Reservation::none);
        held.shrink_to(2 * records.iter().map(|r| r.value.len() + 128).sum::<usize>());
        let (info, wake) = self.info(group, settings);
        Ok((NextBatch { records, info, held }, wake))
    }

    /// The stored records at `wanted` (ascending offsets), about `max_bytes` of them (at
    /// least one); fewer where retention removed some or the bytes ran out.
    async fn read_wanted(
        &self,
        topic: &str,
        partition: u32,
        wanted: &[u64],
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, ApiError> {
        let mut out: Vec<StoredRecord> = Vec::new();
        let mut bytes = 0;
        let mut i = 0;
        while i < wanted.len() && (bytes < max_bytes || out.is_empty()) {
            let mut last = i;
            while last + 1 < wanted.len() && wanted[last + 1] == wanted[last] + 1 {
                last += 1;
            }
            let (mut at, run_end) = (wanted[i], wanted[last]);
            while at <= run_end && (bytes < max_bytes || out.is_empty()) {
                let read = self.storage.read(topic, partition, at, (max_bytes - bytes).max(1)).await?;
                let Some(next) = read.records.last().map(|r| r.offset + 1) else { break };
                for record in read.records.into_iter().filter(|r| r.offset >= at && r.offset <= run_end) {
                    bytes += record.value.len();
                    out.push(record);
                }
                at = next.max(at + 1);
            }
            i = last + 1;
        }
        Ok(out)
    }

    pub(super) fn lock_windows(&self) -> MutexGuard<'_, HashMap<WindowKey, PartitionQueue>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The window of `key` under leader epoch `epoch`, if this broker serves the partition in
    /// that epoch: kept if of that epoch, else rebuilt from what Raft holds acknowledged.
    /// Raft applies entries in order, so once this broker serves `epoch` every
    /// acknowledgement that will ever count from an earlier epoch is applied here (later ones
    /// of those epochs are refused). A caller with an older epoch gets nothing, and never
    /// replaces a newer window.
    fn window<'a>(
        &self,
        windows: &'a mut HashMap<WindowKey, PartitionQueue>,
        key: &WindowKey,
        epoch: u64,
        now: Instant,
    ) -> Option<&'a mut LeaseWindow> {
        if self.replication.leadership().serving_epoch(key.partition) != Some(epoch) {
            return None;
        }
        let stale = windows.get(key).is_none_or(|q| q.epoch != epoch);
        if stale {
            let (floor, above) = self.raft.read(|s| {
                s.queues
                    .acked(&key.group, &key.topic, key.partition)
                    .map_or((0, Default::default()), |a| (a.floor, a.above.clone()))
            });
            let window = LeaseWindow::restore(floor, &above, self.limits.max_in_flight, now);
            windows.insert(key.clone(), PartitionQueue { epoch, window });
        }
        windows.get_mut(key).map(|q| &mut q.window)
    }

    /// The group's counts over the partitions this broker leads, and the next lease end or
    /// delay end among them. Windows of partitions it no longer serves in their epoch are
    /// dropped here.
    fn info(&self, group: &str, settings: &QueueSettings) -> (QueueInfo, Option<Instant>) {
        let served: HashMap<u32, u64> = self.replication.leadership().served().into_iter().collect();
        let now = now();
        let mut info = QueueInfo::default();
        let mut wake: Option<Instant> = None;
        let mut windows = self.lock_windows();
        windows.retain(|k, q| served.get(&k.partition) == Some(&q.epoch));
        for topic in &settings.topics {
            for &partition in served.keys() {
                let end = self.replication.read_bounds(topic, partition).map_or(0, |(_, end)| end);
                let key = WindowKey { group: group.to_string(), topic: topic.clone(), partition };
                let Some(queue) = windows.get(&key) else {
                    // Not leased from yet: all but what Raft holds acknowledged is pending.
                    let acked = self.raft.read(|s| {
                        s.queues.acked(group, topic, partition).map_or(0, |a| a.floor + a.above.len() as u64)
                    });
                    info.num_pending += end.saturating_sub(acked);
                    continue;
                };
                let (waiting, leased) = queue.window.counts(now);
                info.num_pending += waiting + end.saturating_sub(queue.window.cursor());
                info.num_ack_pending += leased;
                if let Some(at) = queue.window.next_change(now) {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
            }
        }
        drop(windows);
        self.metrics.set_counts(group, info.num_pending, info.num_ack_pending);
        (info, wake)
    }
}

/// Now, on tokio's clock (paused in tests).
pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn groups_full() -> ApiError {
    ApiError::QueueConflict(format!(
        "the cluster has {} queue groups, the most it keeps",
        crate::consensus::queue_groups::MAX_QUEUE_GROUPS
    ))
}

/// A deleted topic's windows go: a topic created again under the name starts from its Raft
/// state (none), not from the old topic's floors.
impl crate::topics::HoldsTopics for QueueService {
    fn forget_topic(&self, topic: &str) {
        self.lock_windows().retain(|key, _| key.topic != topic);
    }
}
