//! One partition: its segments in offset order, the last one active (appended to).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::batch::{self, BatchHeader, Marks, MAX_BODY_LEN};
use super::error::IoContext;
use super::leader_epochs::{write_file, EpochHistory, EpochStart, Epochs};
use super::open_files::OpenFiles;
use super::producers::{self, ProducerTable, ProducerWrite};
use super::segment::{sync_dir, Segment};
use super::{Appended, ReadResult, StorageError, TruncatedTail, Whole};

pub struct PartitionLog {
    pub topic: String,
    pub partition: u32,
    dir: PathBuf,
    /// The topic's segment size; a change applies from the next roll.
    segment_bytes: AtomicU64,
    index_interval: u64,
    files: Arc<OpenFiles>,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    /// The first retained and the next offset, kept beside `segments` so that asking for them
    /// (as request handlers do) never waits on a lock a truncation holds across its fsync.
    start: AtomicU64,
    end: AtomicU64,
    epochs: Mutex<EpochHistory>,
    /// The idempotent producers the log's records imply (see `producers`): changed by the
    /// writer as it promises offsets, rebuilt from the log at start and after a cut.
    producers: Mutex<ProducerTable>,
    /// The same for the records written and fsync'd only: what a segment's snapshot records
    /// (everything before it is durable when it starts), and what the writer's table goes
    /// back to when records it promised are dropped unwritten.
    durable_producers: Mutex<ProducerTable>,
    max_producers: usize,
    /// Set after a failed fsync (the page cache may have dropped the data) and after any
    /// round that did not write what its writer had promised (a failed roll or epoch record):
    /// nothing more is accepted or acknowledged until a restart re-reads the log from disk.
    /// Running out of space does not set it: the file is cut back to its durable end (so no
    /// page the failed fsync may have dropped is kept) and the writer writes the same records
    /// again once there is room.
    poisoned: AtomicBool,
}

/// Whether `records` can be stored as one batch: at least one record, body within the bound
/// (with room for a key token and a producer stamp).
pub fn fits_a_batch(records: &[Bytes]) -> bool {
    !records.is_empty()
        && batch::encoded_len(records, Marks::default()) - batch::HEADER_LEN + MARKS_ROOM <= MAX_BODY_LEN
}

/// The most bytes a key token and a producer stamp add to a batch body.
const MARKS_ROOM: usize = 8 + 1 + producers::MAX_ID_LEN + 24;

/// The stamps of batches written but not yet flushed, each with its request's end.
type Stamped = Vec<(ProducerWrite, u64)>;

/// One batch for [`PartitionLog::append_batches`].
pub struct NewBatch {
    pub records: Vec<Bytes>,
    pub timestamp_ms: i64,
    /// The ring token of its request's partition key, if it had one.
    pub key_token: Option<i64>,
    /// Set on the batch that ends an idempotent request.
    pub stamp: Option<ProducerWrite>,
}

/// A segment this far into its file cannot be written on: index positions are u32. A roll that
/// failed for want of files lets the active segment grow past its size up to here instead.
const SEGMENT_HARD_END: u64 = u32::MAX as u64;

/// What one group-committed write did.
pub struct WriteRound {
    pub results: Vec<Result<Appended, StorageError>>,
    pub fsyncs: Vec<Duration>,
}

impl PartitionLog {
    /// Opens (or creates) the partition in `dir`, verifying the tail of every segment; its
    /// files are opened through `files`, so recovery keeps no more open than the cache holds.
    pub fn open(
        files: &Arc<OpenFiles>,
        topic: &str,
        partition: u32,
        dir: &Path,
        segment_bytes: u64,
        index_interval: u64,
        max_producers: usize,
    ) -> Result<(PartitionLog, Vec<TruncatedTail>), StorageError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).ctx("create directory", dir)?;
            for ancestor in [dir.parent(), dir.parent().and_then(Path::parent)].into_iter().flatten() {
                sync_dir(ancestor)?;
            }
        }
        let mut bases: Vec<u64> = std::fs::read_dir(dir)
            .ctx("list", dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut truncated = Vec::new();
        for base in bases {
            let (segment, cut) = Segment::open(files, dir, base, index_interval)?;
            if let Some(cut) = cut {
                truncated.push(TruncatedTail {
                    topic: topic.to_string(),
                    partition,
                    segment: segment.path.clone(),
                    valid_bytes: cut.valid_bytes,
                    dropped_bytes: cut.dropped_bytes,
                    reason: cut.reason,
                });
            }
            segments.insert(base, Arc::new(segment));
        }
        if segments.is_empty() {
            segments.insert(0, Arc::new(Segment::create(files, dir, 0)?.0));
        }
        let log_end = segments.values().next_back().map_or(0, |s| s.next_offset());
        let epochs = Mutex::new(EpochHistory::load(dir, log_end)?);
        let log = PartitionLog {
            topic: topic.to_string(),
            partition,
            dir: dir.to_path_buf(),
            segment_bytes: AtomicU64::new(segment_bytes),
            index_interval,
            files: files.clone(),
            segments: RwLock::new(segments),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            epochs,
            producers: Mutex::new(ProducerTable::new(max_producers)),
            durable_producers: Mutex::new(ProducerTable::new(max_producers)),
            max_producers,
            poisoned: AtomicBool::new(false),
        };
        log.refresh_bounds(&log.segments.read().unwrap_or_else(|p| p.into_inner()));
        log.rebuild_producers()?;
        Ok((log, truncated))
    }

    pub fn set_segment_bytes(&self, bytes: u64) {
        self.segment_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Bytes of its segment files (logs, not indexes).
    pub fn bytes_on_disk(&self) -> u64 {
        self.segments.read().unwrap_or_else(|p| p.into_inner()).values().map(|s| s.len()).sum()
    }

    /// Closes its files and removes its directory (its writer has stopped): the partition is
    /// gone from this broker.
    pub fn remove(&self) -> Result<(), StorageError> {
        let segments = std::mem::take(&mut *self.segments.write().unwrap_or_else(|p| p.into_inner()));
        for segment in segments.values() {
            segment.forget_files();
        }
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove", &self.dir),
            _ => Ok(()),
        }
    }

    /// The producer state (only the writer changes it).
    pub fn producers(&self) -> std::sync::MutexGuard<'_, ProducerTable> {
        self.producers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the producer state from the newest snapshot the segments have and the batches
    /// after it (all of them when there is none). Blocking.
    fn rebuild_producers(&self) -> Result<(), StorageError> {
        let bases: Vec<u64> = self.segments.read().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        let (start, end) = self.bounds();
        let (mut table, mut at) = bases
            .iter()
            .rev()
            .find_map(|base| producers::read_snapshot(&self.dir, *base, self.max_producers).map(|t| (t, *base)))
            .unwrap_or_else(|| {
                // A log that does not begin at 0 and has no snapshot was restarted at its
                // leader's start (or written before snapshots): what came before is unknown.
                let table = if start == 0 { ProducerTable::new } else { ProducerTable::without_history };
                (table(self.max_producers), start)
            });
        while at < end {
            let read = self.read(at, 1 << 20, Whole::Requests)?;
            let Some(last) = read.records.last() else { break };
            at = last.offset + 1;
            for record in &read.records {
                if let Some(write) = &record.producer {
                    table.apply(write, record.offset + 1);
                }
            }
        }
        *self.durable_producers.lock().unwrap_or_else(|p| p.into_inner()) = table.clone();
        *self.producers() = table;
        Ok(())
    }

    /// Forgets what the writer promised and did not write (records a full disk held back,
    /// dropped by a cut): the producer state goes back to what is durable.
    pub fn forget_unwritten_producers(&self) {
        let durable = self.durable_producers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        *self.producers() = durable;
    }

    /// The segment appends go to (open() always leaves one and retention keeps the last).
    fn active(&self) -> Option<Arc<Segment>> {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segments.values().next_back().cloned()
    }

    /// The active segment's log handle, for a writer to hold across a round (see
    /// [`Segment::file`]): out of files, a round fails here, before it promises any offset.
    pub fn hold_active(&self) -> Result<Option<Arc<File>>, StorageError> {
        self.active().map(|segment| segment.file()).transpose()
    }

    /// The active segment's file if it is open already (the usual case: no system call).
    pub fn active_if_open(&self) -> Option<Arc<File>> {
        self.active().and_then(|segment| segment.open_file())
    }

    /// (first retained offset, next offset to be written), durable data only.
    pub fn bounds(&self) -> (u64, u64) {
        (self.start.load(Ordering::Acquire), self.end.load(Ordering::Acquire))
    }

    /// When the newest record was appended (0 with none): the writer stamps the next batch no
    /// earlier, so time never goes backwards within the log, whatever the clock does.
    pub fn last_timestamp(&self) -> i64 {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segments.values().rev().map(|s| s.last_timestamp()).find(|t| *t != 0).unwrap_or(0)
    }

    /// The first retained offset appended at or after `timestamp_ms`, or the end if none was.
    /// Blocking (it reads batch headers).
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<u64, StorageError> {
        let candidates: Vec<Arc<Segment>> = {
            let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
            segments.values().filter(|s| s.last_timestamp() >= timestamp_ms).take(2).cloned().collect()
        };
        for segment in candidates {
            match segment.offset_for_timestamp(timestamp_ms) {
                Ok(Some(offset)) => return Ok(offset.max(self.bounds().0)),
                Ok(None) => continue,
                // Deleted by retention since it was looked up: what is left is newer.
                Err(_) if !self.holds(&segment) => return self.offset_for_timestamp(timestamp_ms),
                Err(e) => return Err(e),
            }
        }
        Ok(self.bounds().1)
    }

    /// Sets the bounds from `segments` (called with the segments lock held, after each change).
    fn refresh_bounds(&self, segments: &BTreeMap<u64, Arc<Segment>>) {
        let start = segments.keys().next().copied().unwrap_or(0);
        let end = segments.values().next_back().map_or(start, |s| s.next_offset());
        self.start.store(start, Ordering::Release);
        self.end.store(end, Ordering::Release);
    }

    fn epochs(&self) -> std::sync::MutexGuard<'_, EpochHistory> {
        self.epochs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn last_epoch(&self) -> u64 {
        self.epochs().last_epoch()
    }

    /// Where `epoch`'s records end in this log (see [`EpochHistory::end_of`]).
    pub fn end_of_epoch(&self, epoch: u64) -> u64 {
        self.epochs().end_of(epoch, self.bounds().1)
    }

    pub fn epochs_covering(&self, from: u64, to: u64) -> Vec<EpochStart> {
        self.epochs().covering(from, to)
    }

    /// Whether the partition stopped accepting writes (see `poisoned`).
    pub fn is_failed(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Stops the partition accepting writes until a restart.
    pub fn fail(&self, why: &str) {
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            tracing::error!(topic = %self.topic, partition = self.partition,
                "partition stops accepting writes until the broker restarts: {why}");
        }
    }

    pub fn failed_error(&self) -> StorageError {
        StorageError::Poisoned { topic: self.topic.clone(), partition: self.partition }
    }

    /// Records new epochs durably, before the records written in them. Blocking.
    pub fn record_epochs(&self, new: &[EpochStart]) -> Result<(), StorageError> {
        if self.change_epochs(|epochs| epochs.extend(new))? {
            tracing::info!(topic = %self.topic, partition = self.partition, epochs = ?new, "new leader epoch");
        }
        Ok(())
    }

    /// Applies `change` to a copy of the epoch history and writes it durably without holding
    /// the history's lock, so request handlers asking about epochs never wait on the fsync
    /// (the old history stays true of the log meanwhile: records change only after this
    /// returns, and only the partition's writer calls it). True if anything changed.
    fn change_epochs(&self, change: impl FnOnce(&mut Epochs) -> bool) -> Result<bool, StorageError> {
        let (dir, mut next) = {
            let history = self.epochs();
            (history.dir().to_path_buf(), Epochs::clone(&history))
        };
        if !change(&mut next) {
            return Ok(false);
        }
        write_file(&dir, &next)?;
        self.epochs().install(next);
        Ok(true)
    }

    /// Drops the whole log and starts it, empty, at `at`, unless it ends at or after `at`;
    /// returns the new end. The epoch history is emptied first (the leader's labels come with
    /// the records it sends next). Blocking; the writer task runs it between write rounds.
    pub fn restart_at(&self, at: u64) -> Result<u64, StorageError> {
        let (_, end_before) = self.bounds();
        if at <= end_before {
            return Ok(end_before);
        }
        self.change_epochs(|epochs| epochs.cut(0))?;
        let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
        for (_, segment) in std::mem::take(&mut *segments) {
            segment.delete()?;
        }
        segments.insert(at, Arc::new(Segment::create(&self.files, &self.dir, at)?.0));
        sync_dir(&self.dir)?;
        self.refresh_bounds(&segments);
        drop(segments);
        self.rebuild_producers()?;
        tracing::warn!(topic = %self.topic, partition = self.partition, dropped_end = end_before, start = at,
            "restarted the copy where its leader's retained records begin");
        Ok(at)
    }

    /// Drops every record at or after `to` (a replica discarding what its leader never had),
    /// cutting inside a batch when needed. The epoch history is cut first, so a crash half way
    /// leaves a log that looks longer than its history, which the next comparison cuts again.
    /// Returns the new end. Blocking; the writer task runs it between write rounds.
    pub fn truncate(&self, to: u64) -> Result<u64, StorageError> {
        let (start, end_before) = self.bounds();
        if to >= end_before {
            return Ok(end_before);
        }
        self.change_epochs(|epochs| epochs.cut(to))?;
        // A cut to the log's start deletes its first segment, and the snapshot beside it, which
        // is still the state of everything before `to`: kept to be written again.
        let before_start = (to == start).then(|| producers::read_snapshot(&self.dir, to, self.max_producers)).flatten();
        let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
        let doomed: Vec<u64> = segments.range(to.max(start)..).map(|(base, _)| *base).rev().collect();
        for base in doomed {
            if let Some(segment) = segments.remove(&base) {
                segment.delete()?;
            }
        }
        match segments.values().next_back().cloned() {
            Some(last) if last.next_offset() > to => {
                let cut = Arc::new(last.cut_at(&self.dir, to, self.index_interval)?);
                segments.insert(cut.base, cut);
            }
            Some(_) => {}
            None => {
                if let Some(table) = &before_start {
                    let snapshot = producers::snapshot_path(&self.dir, to);
                    producers::write_snapshot(&self.dir, to, table).ctx("write", &snapshot)?;
                }
                segments.insert(to, Arc::new(Segment::create(&self.files, &self.dir, to)?.0));
            }
        }
        sync_dir(&self.dir)?;
        self.refresh_bounds(&segments);
        drop(segments);
        self.rebuild_producers()?;
        let end = self.bounds().1;
        tracing::warn!(topic = %self.topic, partition = self.partition, to, dropped_records = end_before - to,
            "dropped a log tail that the partition's leader does not have");
        Ok(end)
    }

    /// Writes each request as one batch, with one fsync for all of them (more only when the
    /// active segment fills up and rolls), at consecutive offsets from the log's end. Each
    /// request must fit a batch ([`fits_a_batch`]); the writer checks that before it promises
    /// offsets. A round that cannot write everything fails the partition, unless only space
    /// ran out: then the requests not written get [`StorageError::DiskFull`] and the log ends
    /// where they start, for the writer to write them again. Blocking.
    pub fn append_batches(&self, requests: &[NewBatch]) -> WriteRound {
        let mut round = WriteRound { results: Vec::with_capacity(requests.len()), fsyncs: Vec::new() };
        if self.is_failed() {
            round.results.extend(requests.iter().map(|_| Err(self.failed_error())));
            return round;
        }
        let Some(mut active) = self.active() else {
            let missing =
                || StorageError::Corrupt { path: self.dir.clone(), position: 0, reason: "no segment file".into() };
            round.results.extend(requests.iter().map(|_| Err(missing())));
            return round;
        };
        let mut next = active.next_offset();
        // The new active segment's handle, held to the round's end like the first one's.
        let mut _rolled_to: Option<Arc<File>> = None;
        let mut roll_refused = false;
        let mut buf: Vec<u8> = Vec::new();
        let mut written: Vec<(BatchHeader, u64)> = Vec::new();
        // The stamps of the batches in `buf`, each with its request's end, for the durable table.
        let mut stamped: Stamped = Vec::new();
        let mut unflushed: Vec<usize> = Vec::new();
        for (i, NewBatch { records, timestamp_ms, key_token, stamp }) in requests.iter().enumerate() {
            let timestamp_ms = *timestamp_ms;
            let marks = Marks { key_token: *key_token, stamp: stamp.as_ref() };
            if !fits_a_batch(records) {
                self.fail("a request that does not fit a batch reached the log");
                round.results.extend(requests[i..].iter().map(|_| Err(StorageError::BatchSize { max: MAX_BODY_LEN })));
                return self.fail_round(round, &unflushed, self.failed_error());
            }
            let len = batch::encoded_len(records, marks);
            let used = active.len() + buf.len() as u64;
            let may_grow = used + len as u64 <= SEGMENT_HARD_END;
            let segment_bytes = self.segment_bytes.load(Ordering::Relaxed);
            if used > 0 && used + len as u64 > segment_bytes && !(roll_refused && may_grow) {
                if let Err(e) = self.flush(&active, &mut buf, &mut written, &mut stamped, &mut round) {
                    return self.fail_round(round, &unflushed, e);
                }
                unflushed.clear();
                match self.roll(next) {
                    Ok((segment, file)) => {
                        active = segment;
                        _rolled_to = Some(file);
                    }
                    // Nothing of the new segment was left on disk: write on in the full one
                    // and roll in a later round.
                    Err(StorageError::TooManyOpenFiles { .. }) if may_grow => roll_refused = true,
                    Err(e) if e.is_out_of_space() => {
                        round.results.extend(requests[i..].iter().map(|_| Err(self.out_of_space())));
                        return round;
                    }
                    Err(e) => {
                        self.fail(&format!("could not roll to a new segment: {e}"));
                        round.results.extend(requests[i..].iter().map(|_| Err(self.failed_error())));
                        return round;
                    }
                }
            }
            let position = active.len() + buf.len() as u64;
            batch::encode(&mut buf, next, timestamp_ms, records, marks);
            let header = BatchHeader {
                magic: marks.magic(),
                record_count: records.len() as u32,
                base_offset: next,
                timestamp_ms,
                body_len: (len - batch::HEADER_LEN) as u32,
            };
            written.push((header, position));
            if let Some(stamp) = stamp {
                stamped.push((stamp.clone(), next + records.len() as u64));
            }
            unflushed.push(round.results.len());
            round.results.push(Ok(Appended { base_offset: next, count: records.len() as u32, duplicate: false }));
            next += records.len() as u64;
        }
        if let Err(e) = self.flush(&active, &mut buf, &mut written, &mut stamped, &mut round) {
            return self.fail_round(round, &unflushed, e);
        }
        round
    }

    fn flush(
        &self,
        active: &Segment,
        buf: &mut Vec<u8>,
        written: &mut Vec<(BatchHeader, u64)>,
        stamped: &mut Stamped,
        round: &mut WriteRound,
    ) -> Result<(), StorageError> {
        if buf.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let result = active.write_durably(buf);
        round.fsyncs.push(started.elapsed());
        if let Err(e) = result {
            let undone = active.discard_unpublished();
            if let Err(undo) = &undone {
                tracing::error!(topic = %self.topic, partition = self.partition, "could not undo a failed write: {undo}");
            }
            // Out of space, with the segment back at its durable end: the same write can
            // succeed later (the writer keeps the records and tries again).
            if undone.is_ok() && e.is_out_of_space() {
                return Err(self.out_of_space());
            }
            self.fail(&format!("write failed: {e}"));
            return Err(e);
        }
        active.publish(written, self.index_interval);
        self.end.store(active.next_offset(), Ordering::Release);
        let mut durable = self.durable_producers.lock().unwrap_or_else(|p| p.into_inner());
        for (stamp, end) in stamped.drain(..) {
            durable.apply(&stamp, end);
        }
        buf.clear();
        written.clear();
        Ok(())
    }

    /// Marks the requests of the failed flush as failed (earlier flushes of the round stand).
    fn fail_round(&self, mut round: WriteRound, unflushed: &[usize], error: StorageError) -> WriteRound {
        let out_of_space = matches!(error, StorageError::DiskFull { .. });
        let message = error.to_string();
        for &i in unflushed {
            round.results[i] = Err(if out_of_space {
                self.out_of_space()
            } else {
                StorageError::Io {
                    op: "append",
                    path: self.dir.clone(),
                    source: std::io::Error::other(message.clone()),
                }
            });
        }
        round
    }

    pub fn out_of_space(&self) -> StorageError {
        StorageError::DiskFull { topic: self.topic.clone(), partition: self.partition }
    }

    fn roll(&self, base: u64) -> Result<(Arc<Segment>, Arc<File>), StorageError> {
        // Before the segment exists (its creation syncs the directory): recovery then reads the
        // producer state from here and only this segment's batches. Everything before `base`
        // is durable here (the round flushed before it rolls), so the durable table is exactly
        // the state before it. No segment starts without its snapshot: retention may delete
        // every older one.
        let snapshot = producers::snapshot_path(&self.dir, base);
        let durable = self.durable_producers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        producers::write_snapshot(&self.dir, base, &durable).ctx("write", &snapshot)?;
        let (segment, file) = match Segment::create(&self.files, &self.dir, base) {
            Ok(created) => created,
            Err(e) => {
                let _ = std::fs::remove_file(&snapshot);
                return Err(e);
            }
        };
        let segment = Arc::new(segment);
        self.segments.write().unwrap_or_else(|p| p.into_inner()).insert(base, segment.clone());
        tracing::debug!(topic = %self.topic, partition = self.partition, base, "rolled to a new segment");
        Ok((segment, file))
    }

    /// Durable records from `offset` (or from the log start, if retention removed it).
    pub fn read(&self, offset: u64, max_bytes: usize, whole: Whole) -> Result<ReadResult, StorageError> {
        let (start, end) = self.bounds();
        let mut offset = offset.max(start);
        while offset < end {
            let segment = {
                let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
                segments.range(..=offset).next_back().map(|(_, s)| s.clone())
            };
            let Some(segment) = segment else { break };
            let records = match segment.read(offset, max_bytes, whole) {
                Ok(records) => records,
                // Deleted by retention or replaced by a truncation since it was looked up (its
                // file may be gone): read again from what the log holds now.
                Err(_) if !self.holds(&segment) => {
                    offset = offset.max(self.bounds().0);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(last) = records.last() {
                return Ok(ReadResult { next_offset: last.offset + 1, records });
            }
            // Past this segment's data (e.g. a cut tail): continue in the next segment.
            let following = {
                let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
                segments.range(offset + 1..).next().map(|(base, _)| *base)
            };
            match following {
                Some(base) => offset = base,
                None => break,
            }
        }
        Ok(ReadResult { records: Vec::new(), next_offset: offset })
    }

    fn holds(&self, segment: &Arc<Segment>) -> bool {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        segments.get(&segment.base).is_some_and(|s| Arc::ptr_eq(s, segment))
    }

    /// Deletes the oldest sealed segments that are past the age limit or over the size limit.
    pub fn enforce_retention(&self, min_timestamp_ms: Option<i64>, max_bytes: Option<u64>) -> usize {
        let removed: Vec<Arc<Segment>> = {
            let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
            let mut total: u64 = segments.values().map(|s| s.len()).sum();
            let mut removed = Vec::new();
            while segments.len() > 1 {
                let Some((&base, oldest)) = segments.iter().next() else { break };
                let too_old = min_timestamp_ms.is_some_and(|min| oldest.last_timestamp() < min);
                let too_big = max_bytes.is_some_and(|max| total > max);
                if !(too_old || too_big) {
                    break;
                }
                total -= oldest.len();
                if let Some(segment) = segments.remove(&base) {
                    removed.push(segment);
                }
            }
            self.refresh_bounds(&segments);
            removed
        };
        for segment in &removed {
            match segment.delete() {
                Ok(()) => {
                    tracing::info!(topic = %self.topic, partition = self.partition, segment = %segment.path.display(), "retention deleted segment")
                }
                Err(e) => {
                    tracing::warn!(topic = %self.topic, partition = self.partition, "retention could not delete a segment: {e}")
                }
            }
        }
        removed.len()
    }
}
