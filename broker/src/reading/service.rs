//! Reads by position: on the partition's leader from storage, up to what a majority holds,
//! waiting for records when asked to; elsewhere forwarded to the leader, following it while
//! leadership moves.

use std::sync::Arc;
use std::time::Duration;

use super::peer_api::{forward, Retry};
use super::Start;
use crate::cluster::Peers;
use crate::error::ApiError;
use crate::memory::{Budget, Reservation};
use crate::replication::Replication;
use crate::store::{Storage, StoredRecord};
use crate::timing::{LEADER_WAIT, MEMORY_WAIT};

/// Most records one read returns (a larger `limit` gets this many); their bytes are bounded by
/// `RUNNEL_POLL_MAX_BYTES`.
pub const MAX_LIMIT: usize = 10_000;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct ReadSettings {
    /// Most record bytes one read returns (`RUNNEL_POLL_MAX_BYTES`).
    pub max_bytes: usize,
    /// Longest `wait` (`RUNNEL_POLL_WAIT_MAX_MS`).
    pub wait_max: Duration,
}

#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub topic: String,
    pub partition: u32,
    pub start: Start,
    pub limit: usize,
    /// Most record bytes to return (at most `RUNNEL_POLL_MAX_BYTES`; at least one record).
    pub max_bytes: usize,
    /// How long to wait for a record when there is none to read yet.
    pub wait: Duration,
}

/// Records of one partition from a position, and its bounds when they were read.
#[derive(Debug, Clone)]
pub struct RecordsRead {
    pub records: Vec<StoredRecord>,
    /// Where the next read continues.
    pub next_offset: u64,
    /// The first retained offset.
    pub start: u64,
    /// The readable end: records below it are held by a majority of copies.
    pub end: u64,
}

impl RecordsRead {
    pub fn up_to_date(&self) -> bool {
        self.next_offset >= self.end
    }
}

pub struct PositionReads {
    storage: Storage,
    replication: Arc<Replication>,
    peers: Peers,
    /// What reads hold while they read and answer (shared with polls).
    reads: Budget,
    settings: ReadSettings,
}

impl PositionReads {
    pub fn new(
        storage: Storage,
        replication: Arc<Replication>,
        peers: Peers,
        reads: Budget,
        settings: ReadSettings,
    ) -> PositionReads {
        PositionReads { storage, replication, peers, reads, settings }
    }

    /// Refuses a request no broker could answer: an unknown partition, a limit out of bounds.
    pub fn check(&self, request: &ReadRequest) -> Result<(), ApiError> {
        crate::store::validate_topic_name(&request.topic)?;
        if !self.replication.leadership().layout(|l| l.all_partitions().contains(&request.partition)) {
            return Err(ApiError::NoSuch(format!(
                "no partition {} (the cluster's partitions: GET /v1/topic/{})",
                request.partition, request.topic
            )));
        }
        if request.limit == 0 {
            return Err(ApiError::BadRequest(format!("limit must be at least 1 (at most {MAX_LIMIT} are returned)")));
        }
        Ok(())
    }

    /// Reads on the partition's leader, here or forwarded there. While leadership moves the
    /// read follows it for up to [`LEADER_WAIT`].
    pub async fn read(&self, request: &ReadRequest) -> Result<(RecordsRead, Reservation), ApiError> {
        self.check(request)?;
        if request.wait > self.settings.wait_max {
            return Err(ApiError::WaitTooLong { max_ms: self.settings.wait_max.as_millis() as u64 });
        }
        self.read_on_leader(request).await
    }

    /// [`PositionReads::read`] of a checked request, whatever its wait (a live stream's reads
    /// wait as long as its heartbeat interval).
    pub(super) async fn read_on_leader(&self, request: &ReadRequest) -> Result<(RecordsRead, Reservation), ApiError> {
        let leadership = self.replication.leadership();
        let partition = request.partition;
        let deadline = tokio::time::Instant::now() + LEADER_WAIT + request.wait;
        loop {
            let leader = leadership.current(partition).broker;
            let attempt = if leader == self.peers.ordinal() {
                match self.read_here(request).await {
                    Err(ApiError::NotLeader(_)) => {
                        Err(Retry(format!("this broker is not serving partition {partition} yet")))
                    }
                    other => Ok(other),
                }
            } else {
                tokio::select! {
                    answer = forward(&self.peers, leader, request) => match answer {
                        // Charged once it is here: a forwarded read waiting at the leader holds nothing.
                        Ok(Ok(read)) => {
                            let bytes: usize = read.records.iter().map(|r| r.value.len()).sum();
                            match self.reads.reserve(2 * bytes, MEMORY_WAIT).await {
                                Ok(held) => Ok(Ok((read, held))),
                                Err(busy) => Ok(Err(busy.into())),
                            }
                        }
                        Ok(Err(refused)) => Ok(Err(refused)),
                        Err(retry) => Err(retry),
                    },
                    _ = leadership.moved_from(partition, leader) => {
                        Err(Retry(format!("leadership moved away from broker {leader}")))
                    }
                }
            };
            match attempt {
                Ok(result) => return result,
                Err(Retry(reason)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(topic = %request.topic, partition, leader, "read waits for the partition's leader: {reason}");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(Retry(reason)) => {
                    return Err(ApiError::Unavailable(format!(
                        "partition {partition} has no reachable leader ({reason})"
                    )))
                }
            }
        }
    }

    /// Reads here, where the partition must be led and served. With nothing to read it waits
    /// up to `wait` for a record to become readable, holding no memory meanwhile, and answers
    /// what it has when the wait ends, the broker starts shutting down or leadership moves.
    pub async fn read_here(&self, request: &ReadRequest) -> Result<(RecordsRead, Reservation), ApiError> {
        let (topic, partition) = (request.topic.as_str(), request.partition);
        let leadership = self.replication.leadership();
        let epoch = leadership.serving_epoch(partition).ok_or(ApiError::NotLeader(partition))?;
        let (start, end) = self.bounds(topic, partition);
        let at_time = match request.start {
            Start::Timestamp(ms) => Some(self.storage.offset_for_timestamp(topic, partition, ms).await?),
            _ => None,
        };
        let held = self.storage.end(topic, partition);
        let offset = request.start.resolve(start, end, held, at_time)?;
        let deadline = tokio::time::Instant::now() + request.wait;
        let mut changes = leadership.changes();
        loop {
            let readable = self.replication.readable().notified();
            tokio::pin!(readable);
            readable.as_mut().enable();
            let (start, end) = self.bounds(topic, partition);
            if offset < start {
                return Err(ApiError::OutOfRange { offset, start, end });
            }
            if offset < end || tokio::time::Instant::now() >= deadline {
                return self.read_range(request, offset, start, end).await;
            }
            tokio::select! {
                _ = &mut readable => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.replication.drain_started() => return self.read_range(request, offset, start, end).await,
                changed = changes.changed() => {
                    if changed.is_err() || leadership.serving_epoch(partition) != Some(epoch) {
                        return Err(ApiError::NotLeader(partition));
                    }
                }
            }
        }
    }

    /// The request's byte bound, within the broker's.
    fn max_bytes(&self, request: &ReadRequest) -> usize {
        request.max_bytes.clamp(1, self.settings.max_bytes)
    }

    /// Who leads `partition` now.
    pub fn leader(&self, partition: u32) -> crate::consensus::cluster_state::PartitionLeader {
        self.replication.leadership().current(partition)
    }

    /// Resolves once Raft names a leader of `partition` other than broker `leader`.
    pub async fn moved_from(&self, partition: u32, leader: u32) {
        self.replication.leadership().moved_from(partition, leader).await
    }

    /// The broker started shutting down: streams end.
    pub fn draining(&self) -> bool {
        self.replication.draining()
    }

    /// (first retained offset, readable end) of a partition led here.
    fn bounds(&self, topic: &str, partition: u32) -> (u64, u64) {
        self.replication.read_bounds(topic, partition).unwrap_or((0, 0))
    }

    async fn read_range(
        &self,
        request: &ReadRequest,
        offset: u64,
        start: u64,
        end: u64,
    ) -> Result<(RecordsRead, Reservation), ApiError> {
        let empty = |held| Ok((RecordsRead { records: Vec::new(), next_offset: offset, start, end }, held));
        if offset >= end {
            return empty(Reservation::none());
        }
        let max_bytes = self.max_bytes(request);
        let mut held = self.reads.reserve(2 * max_bytes, MEMORY_WAIT).await?;
        let read = self.storage.read(&request.topic, request.partition, offset, max_bytes).await?;
        let mut records = read.records;
        // Retention removed the start since the bounds were taken: that is a 410, not a skip.
        if let Some(first) = records.first().filter(|r| r.offset > offset) {
            return Err(ApiError::OutOfRange { offset, start: first.offset, end });
        }
        records.retain(|r| r.offset < end);
        records.truncate(request.limit.min(MAX_LIMIT));
        let Some(last) = records.last() else { return empty(held) };
        let next_offset = last.offset + 1;
        held.shrink_to(2 * records.iter().map(|r| r.value.len() + 64).sum::<usize>());
        Ok((RecordsRead { records, next_offset, start, end }, held))
    }
}
