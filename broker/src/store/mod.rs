//! The segment store: append-only segment files per topic partition, with a checksum on every
//! batch, a sparse offset index, group-committed fsync, tail recovery and retention.
//!
//! Layout: `{dir}/{topic}/{partition}/{base_offset:020}.log` and `.index`.
//! Must be opened inside a tokio runtime (each partition gets a writer task, and one task
//! measures free space: see `disk`).

mod batch;
mod disk;
mod error;
mod leader_epochs;
mod open_files;
mod partition_log;
mod producers;
mod segment;
mod time_runs;
mod topic_files;
mod topic_name;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use batch::MAX_BODY_LEN as MAX_BATCH_BODY;
pub use disk::{is_out_of_space, DiskReserve, DiskSpace};
use error::IoContext;
pub use error::StorageError;
pub use leader_epochs::{EpochStart, Epochs};
use open_files::OpenFiles;
use partition_log::PartitionLog;
pub use producers::{validate_id as validate_producer_id, ProducerStamp, ProducerWrite};
pub use time_runs::{Runs, TimeRun, MAX_RUNS_TEXT};
pub use topic_files::TopicLimits;
pub use topic_name::validate_topic_name;

/// Segment sizes a store accepts: index entries hold file positions as u32, so a segment (one
/// batch of at most 64 MiB may follow the roll point) must stay well below 4 GiB.
pub const SEGMENT_BYTES: std::ops::RangeInclusive<u64> = 64 * 1024..=2 * 1024 * 1024 * 1024 - 1;
use writer::{AppendRequest, EpochMark, LogCut, ProducerMark, WriterRequest};

pub struct StorageConfig {
    pub dir: PathBuf,
    /// A partition rolls to a new segment file at this size (at most 2 GiB: index positions are u32).
    pub segment_bytes: u64,
    /// Log bytes between two sparse index entries.
    pub index_interval_bytes: u64,
    /// Segments whose newest record is older are deleted.
    pub retention: Option<Duration>,
    /// Oldest segments are deleted while a partition is larger.
    pub retention_bytes: Option<u64>,
    /// Most segment files (logs and indexes of every partition) open at once.
    pub max_open_files: usize,
    /// Free space below which appends are refused ([`StorageError::BelowReserve`]).
    pub disk_reserve: DiskReserve,
    /// Most idempotent producers whose state a partition keeps (the least recently writing
    /// one is forgotten first).
    pub max_producers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Appended {
    pub base_offset: u64,
    pub count: u32,
    /// An idempotent request stored before: these are the offsets it was given then.
    #[serde(default)]
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub value: Bytes,
    /// The ring token of the key of the request that stored it, if it had one.
    pub key_token: Option<i64>,
    /// On the last record of an idempotent request: its stamp (copies write it with the record).
    pub producer: Option<Arc<ProducerWrite>>,
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Vec<StoredRecord>,
    /// Where the next read continues.
    pub next_offset: u64,
}

#[derive(Debug, Clone)]
pub struct TruncatedTail {
    pub topic: String,
    pub partition: u32,
    pub segment: PathBuf,
    pub valid_bytes: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub partitions: usize,
    pub truncated: Vec<TruncatedTail>,
}

/// Where a read may stop when it has its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whole {
    /// After any record (a consumer's read).
    Records,
    /// Only where no idempotent request is cut (a copy's read).
    Requests,
}

/// What a leader's append carries beside its records: the conditions it is stored under
/// (SPEC §12), and its key's token, stored with the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// The ring token of the request's partition key (`discovery::token`), if it had one: what
    /// an ordered queue group orders by.
    pub key_token: Option<i64>,
    /// An idempotent producer's request: stored at most once.
    pub producer: Option<ProducerStamp>,
    /// Stored only if the partition's next offset is this.
    pub expected_offset: Option<u64>,
}

/// How the writer took a leader's append.
pub enum Pipelined {
    /// Given offsets from `base`, at append time `time`; `durable` resolves once it is fsync'd.
    Promised { base: u64, time: i64, durable: oneshot::Receiver<Result<Appended, StorageError>> },
    /// A repeat of an idempotent request, durable here: its original offsets.
    Stored(Appended),
}

/// An append on its way to the partition's writer.
struct Enqueued {
    records: Vec<Bytes>,
    epoch: EpochMark,
    timestamp: Option<i64>,
    key_token: Option<i64>,
    producer: ProducerMark,
}

/// Called with the duration of every fsync (the metrics module records a histogram).
pub type FsyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

struct Partition {
    log: Arc<PartitionLog>,
    queue: Mutex<Option<mpsc::Sender<WriterRequest>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    config: StorageConfig,
    files: Arc<OpenFiles>,
    partitions: RwLock<HashMap<(String, u32), Arc<Partition>>>,
    /// Serialises partition creation (directory creation and recovery).
    creating: Mutex<()>,
    closed: AtomicBool,
    observer: RwLock<Option<FsyncObserver>>,
    space: DiskSpace,
    /// Topics whose limits are not the defaults.
    limits: RwLock<HashMap<String, TopicLimits>>,
    /// Topics removed and not accepted again: none of their partitions is created.
    refused: RwLock<HashSet<String>>,
}

/// Handle to the store; clones share it.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl Storage {
    pub fn open(config: StorageConfig) -> Result<(Storage, RecoveryReport), StorageError> {
        if !SEGMENT_BYTES.contains(&config.segment_bytes) {
            return Err(StorageError::InvalidConfig(format!(
                "segment size {} is outside {}..={}",
                config.segment_bytes,
                SEGMENT_BYTES.start(),
                SEGMENT_BYTES.end()
            )));
        }
        std::fs::create_dir_all(&config.dir).ctx("create directory", &config.dir)?;
        let space = DiskSpace::measure(&config.dir, config.disk_reserve).ctx("measure free space", &config.dir)?;
        let storage = Storage {
            inner: Arc::new(Inner {
                files: Arc::new(OpenFiles::new(config.max_open_files)),
                space: space.clone(),
                config,
                partitions: RwLock::new(HashMap::new()),
                creating: Mutex::new(()),
                closed: AtomicBool::new(false),
                observer: RwLock::new(None),
                limits: RwLock::new(HashMap::new()),
                refused: RwLock::new(HashSet::new()),
            }),
        };
        let inner = Arc::downgrade(&storage.inner);
        tokio::spawn(space.watch(move || inner.upgrade().is_some_and(|i| !i.closed.load(Ordering::Acquire))));
        let mut report = RecoveryReport::default();
        let dir = storage.inner.config.dir.clone();
        for topic_entry in std::fs::read_dir(&dir).ctx("list", &dir)?.flatten() {
            let name = topic_entry.file_name().to_string_lossy().to_string();
            if validate_topic_name(&name).is_err() || !topic_entry.path().is_dir() {
                tracing::warn!(entry = %topic_entry.path().display(), "ignoring an entry that is not a topic directory");
                continue;
            }
            for partition_entry in std::fs::read_dir(topic_entry.path()).ctx("list", &topic_entry.path())?.flatten() {
                let Some(partition) = partition_entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                    tracing::warn!(entry = %partition_entry.path().display(), "ignoring an entry that is not a partition directory");
                    continue;
                };
                let truncated = storage.open_partition(&name, partition)?;
                report.partitions += 1;
                report.truncated.extend(truncated);
            }
        }
        Ok((storage, report))
    }

    pub fn set_fsync_observer(&self, observer: FsyncObserver) {
        *self.inner.observer.write().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.inner.config.dir.join(topic).join(partition.to_string())
    }

    fn get(&self, topic: &str, partition: u32) -> Option<Arc<Partition>> {
        let partitions = self.inner.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.get(&(topic.to_string(), partition)).cloned()
    }

    /// Opens or creates a partition and starts its writer; returns what recovery cut.
    fn open_partition(&self, topic: &str, partition: u32) -> Result<Vec<TruncatedTail>, StorageError> {
        let _creating = self.inner.creating.lock().unwrap_or_else(|p| p.into_inner());
        if self.get(topic, partition).is_some() {
            return Ok(Vec::new());
        }
        if self.is_refused(topic) {
            return Err(StorageError::TopicDeleting(topic.to_string()));
        }
        let config = &self.inner.config;
        let dir = self.partition_dir(topic, partition);
        let (log, truncated) = PartitionLog::open(
            &self.inner.files,
            topic,
            partition,
            &dir,
            self.limits_of(topic).segment_bytes,
            config.index_interval_bytes,
            config.max_producers,
        )?;
        let log = Arc::new(log);
        let (sender, queue) = mpsc::channel(writer::QUEUE_DEPTH);
        let inner = Arc::downgrade(&self.inner);
        let observer = Arc::new(move || {
            inner.upgrade().and_then(|i| i.observer.read().unwrap_or_else(|p| p.into_inner()).clone())
        });
        let handle = tokio::spawn(writer::run(log.clone(), queue, observer, self.inner.space.clone()));
        let entry = Arc::new(Partition { log, queue: Mutex::new(Some(sender)), writer: Mutex::new(Some(handle)) });
        self.inner.partitions.write().unwrap_or_else(|p| p.into_inner()).insert((topic.to_string(), partition), entry);
        Ok(truncated)
    }

    /// Appends `records` as one batch written by the partition's leader in `epoch`, and returns
    /// once it is fsync'd (group-committed). Fails with [`StorageError::StaleEpoch`] when the
    /// log already holds records of a later epoch.
    pub async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Bytes>,
        epoch: u64,
    ) -> Result<Appended, StorageError> {
        match self.append_pipelined(topic, partition, records, epoch, Conditions::default()).await? {
            Pipelined::Promised { durable, .. } => durable.await.map_err(|_| StorageError::Closed)?,
            Pipelined::Stored(appended) => Ok(appended),
        }
    }

    /// Like [`Storage::append`], but returns the base offset and append time as soon as the
    /// writer accepted the batch (before it is written and fsync'd), with a future that resolves
    /// once it is durable, so a leader can send the records to its followers while its own fsync
    /// runs; or, for a repeat of an idempotent request, its original offsets once it is durable
    /// here. `conditions` may refuse it ([`StorageError::SequenceGap`],
    /// [`StorageError::ProducerFenced`], [`StorageError::UnexpectedOffset`]).
    pub async fn append_pipelined(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Bytes>,
        epoch: u64,
        conditions: Conditions,
    ) -> Result<Pipelined, StorageError> {
        let (assigned, base) = oneshot::channel();
        let producer = conditions.producer.map_or(ProducerMark::None, ProducerMark::Leader);
        let append = Enqueued {
            records,
            epoch: EpochMark::Leader(epoch),
            timestamp: None,
            key_token: conditions.key_token,
            producer,
        };
        let answer = self.enqueue(topic, partition, append, conditions.expected_offset, Some(assigned)).await?;
        match base.await {
            Ok((base, time)) => Ok(Pipelined::Promised { base, time, durable: answer }),
            // Refused before it was written, or a repeat: the answer says which.
            Err(_) => answer.await.map_err(|_| StorageError::Closed)?.map(Pipelined::Stored),
        }
    }

    /// Appends only if the partition ends exactly at `base_offset` (a replica copying its
    /// leader's log, with the leader's epochs for the range, and its append times and producer
    /// stamps: one batch per run; none given, this copy's clock); otherwise fails with
    /// [`StorageError::OffsetMismatch`] naming the end.
    pub async fn append_at(
        &self,
        topic: &str,
        partition: u32,
        base_offset: u64,
        mut records: Vec<Bytes>,
        epochs: Vec<EpochStart>,
        times: &[TimeRun],
    ) -> Result<Appended, StorageError> {
        let runs: Vec<TimeRun> = match times {
            [] => vec![TimeRun::new(records.len() as u32, i64::MIN)],
            runs => runs.to_vec(),
        };
        if runs.iter().map(|r| r.count as usize).sum::<usize>() != records.len() {
            return Err(StorageError::BatchSize { max: batch::MAX_BODY_LEN });
        }
        // Queued in order, each run is accepted only where the one before it ended, labelled
        // with the epochs that start before its end (so the history never runs ahead of the log).
        let (mut answers, mut base, mut epochs) = (Vec::with_capacity(runs.len()), base_offset, epochs);
        for run in runs {
            let count = run.count as usize;
            let rest = records.split_off(count);
            let batch = std::mem::replace(&mut records, rest);
            let later = epochs.iter().position(|e| e.start >= base + count as u64).unwrap_or(epochs.len());
            let mine: Vec<EpochStart> = epochs.drain(..later).collect();
            let timestamp = (!times.is_empty()).then_some(run.timestamp_ms);
            let producer = run.producer.map_or(ProducerMark::None, |p| ProducerMark::Copied(ProducerWrite::clone(&p)));
            let append = Enqueued {
                records: batch,
                epoch: EpochMark::Replica { base, epochs: mine },
                timestamp,
                key_token: run.key_token,
                producer,
            };
            answers.push(self.enqueue(topic, partition, append, None, None).await?);
            base += count as u64;
        }
        let mut appended = Appended { base_offset, count: 0, duplicate: false };
        for answer in answers {
            appended.count += answer.await.map_err(|_| StorageError::Closed)??.count;
        }
        Ok(appended)
    }

    /// Queues an append for the partition's writer; the receiver gets its outcome.
    async fn enqueue(
        &self,
        topic: &str,
        partition: u32,
        append: Enqueued,
        expected_offset: Option<u64>,
        assigned: Option<oneshot::Sender<(u64, i64)>>,
    ) -> Result<oneshot::Receiver<Result<Appended, StorageError>>, StorageError> {
        let Enqueued { records, epoch, timestamp, key_token, producer } = append;
        if records.is_empty() {
            return Err(StorageError::BatchSize { max: batch::MAX_BODY_LEN });
        }
        let space = &self.inner.space;
        if space.below_reserve() {
            space.count_refusal();
            return Err(StorageError::BelowReserve { free: space.free_bytes(), reserve: space.reserve_bytes() });
        }
        space.set_aside(batch::encoded_len(&records, batch::Marks { key_token, stamp: None }) as u64);
        let sender = self.writer_queue(topic, partition).await?;
        let (reply, answer) = oneshot::channel();
        let request =
            AppendRequest { records, epoch, timestamp, key_token, assigned, producer, expected_offset, reply };
        sender.send(WriterRequest::Append(request)).await.map_err(|_| StorageError::Closed)?;
        Ok(answer)
    }

    /// Free space on the store's filesystem, and whether appends are refused for lack of it.
    pub fn disk(&self) -> &DiskSpace {
        &self.inner.space
    }

    /// Drops every record at or after `to` (see [`PartitionLog::truncate`]); returns the new end.
    pub async fn truncate(&self, topic: &str, partition: u32, to: u64) -> Result<u64, StorageError> {
        let sender = self.writer_queue(topic, partition).await?;
        let (reply, answer) = oneshot::channel();
        sender.send(WriterRequest::Cut { cut: LogCut::Truncate(to), reply }).await.map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Drops the whole log and starts it again, empty, at `at`, if it ends before `at`: a copy
    /// whose records end where its leader's retention already deleted the next ones takes the
    /// leader's retained records from their start. Returns the new end.
    pub async fn restart_at(&self, topic: &str, partition: u32, at: u64) -> Result<u64, StorageError> {
        let sender = self.writer_queue(topic, partition).await?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(WriterRequest::Cut { cut: LogCut::RestartAt(at), reply })
            .await
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// The epoch of the partition's newest record (0 when it has none or predates epochs).
    pub fn last_epoch(&self, topic: &str, partition: u32) -> u64 {
        self.get(topic, partition).map_or(0, |p| p.log.last_epoch())
    }

    /// Where `epoch`'s records end in this copy of the partition.
    pub fn end_of_epoch(&self, topic: &str, partition: u32, epoch: u64) -> u64 {
        self.get(topic, partition).map_or(0, |p| p.log.end_of_epoch(epoch))
    }

    /// The epochs of records `from..to`, for a replica copying them.
    pub fn epochs_covering(&self, topic: &str, partition: u32, from: u64, to: u64) -> Vec<EpochStart> {
        self.get(topic, partition).map_or_else(Vec::new, |p| p.log.epochs_covering(from, to))
    }

    /// The partition's writer queue, creating the partition on first use.
    async fn writer_queue(&self, topic: &str, partition: u32) -> Result<mpsc::Sender<WriterRequest>, StorageError> {
        validate_topic_name(topic)?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let entry = match self.get(topic, partition) {
            Some(entry) => entry,
            None => {
                let storage = self.clone();
                let t = topic.to_string();
                tokio::task::spawn_blocking(move || storage.open_partition(&t, partition)).await.map_err(|e| {
                    StorageError::Io {
                        op: "create partition",
                        path: self.partition_dir(topic, partition),
                        source: std::io::Error::other(e),
                    }
                })??;
                self.get(topic, partition).ok_or(StorageError::Closed)?
            }
        };
        let sender = entry.queue.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sender.ok_or(StorageError::Closed)
    }

    /// Durable records of the partition from `offset`, about `max_bytes` of them (at least one).
    pub async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
    ) -> Result<ReadResult, StorageError> {
        self.read_keeping(topic, partition, offset, max_bytes, Whole::Records).await
    }

    /// Like [`Storage::read`], stopping only where `whole` allows: a copy's read
    /// ([`Whole::Requests`]) never cuts an idempotent request (it may take one request's size
    /// beyond `max_bytes`), so copies hold it whole with its stamp.
    pub async fn read_keeping(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        whole: Whole,
    ) -> Result<ReadResult, StorageError> {
        let Some(entry) = self.get(topic, partition) else {
            return Ok(ReadResult { records: Vec::new(), next_offset: offset });
        };
        let log = entry.log.clone();
        tokio::task::spawn_blocking(move || log.read(offset, max_bytes, whole)).await.map_err(|e| StorageError::Io {
            op: "read",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
    }

    /// The first retained offset of the partition appended at or after `timestamp_ms` (the
    /// broker's append time, ms since the Unix epoch), or its end if none was (0 when the
    /// partition does not exist here).
    pub async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<u64, StorageError> {
        let Some(entry) = self.get(topic, partition) else { return Ok(0) };
        let log = entry.log.clone();
        tokio::task::spawn_blocking(move || log.offset_for_timestamp(timestamp_ms)).await.map_err(|e| {
            StorageError::Io { op: "find by time", path: PathBuf::new(), source: std::io::Error::other(e) }
        })?
    }

    pub fn bounds(&self, topic: &str, partition: u32) -> Option<(u64, u64)> {
        self.get(topic, partition).map(|p| p.log.bounds())
    }

    /// The next offset to be written to the partition (0 when it does not exist here).
    pub fn end(&self, topic: &str, partition: u32) -> u64 {
        self.bounds(topic, partition).map_or(0, |(_, end)| end)
    }

    /// Topics that have `partition` on this broker.
    pub fn topics_with(&self, partition: u32) -> Vec<String> {
        let partitions = self.inner.partitions.read().unwrap_or_else(|p| p.into_inner());
        let mut topics: Vec<String> =
            partitions.keys().filter(|(_, p)| *p == partition).map(|(t, _)| t.clone()).collect();
        topics.sort();
        topics
    }

    pub fn topics(&self) -> Vec<String> {
        let partitions = self.inner.partitions.read().unwrap_or_else(|p| p.into_inner());
        let mut topics: Vec<String> = partitions.keys().map(|(t, _)| t.clone()).collect();
        topics.sort();
        topics.dedup();
        topics
    }

    pub async fn enforce_retention(&self) -> Result<usize, StorageError> {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let logs: Vec<(Arc<PartitionLog>, Option<i64>, Option<u64>)> = {
            let partitions = self.inner.partitions.read().unwrap_or_else(|p| p.into_inner());
            partitions
                .iter()
                .map(|((topic, _), p)| {
                    let limits = self.limits_of(topic);
                    let age = |r: Duration| i64::try_from(r.as_millis()).unwrap_or(i64::MAX);
                    let min_timestamp = limits.retention.map(|r| now_ms.saturating_sub(age(r)));
                    (p.log.clone(), min_timestamp, limits.retention_bytes)
                })
                .collect()
        };
        tokio::task::spawn_blocking(move || {
            logs.iter().map(|(log, min_timestamp, max_bytes)| log.enforce_retention(*min_timestamp, *max_bytes)).sum()
        })
        .await
        .map_err(|e| StorageError::Io {
            op: "retention",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })
    }

    /// Lets every queued append finish (fsync'd and answered), then refuses new ones.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let partitions: Vec<Arc<Partition>> = {
            let partitions = self.inner.partitions.read().unwrap_or_else(|p| p.into_inner());
            partitions.values().cloned().collect()
        };
        for partition in partitions {
            partition.stop_writer().await;
        }
    }
}

impl Partition {
    /// Refuses new appends and waits for the writer to finish those queued.
    async fn stop_writer(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }
}

#[cfg(test)]
mod idempotence_tests;
#[cfg(test)]
mod tests;
