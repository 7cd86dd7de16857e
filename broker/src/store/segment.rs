//! One segment: `{base:020}.log` holding batches back to back, and `{base:020}.idx`, a sparse
//! index of (offset − base: u32, byte position: u32, append timestamp: i64) entries, 16 bytes
//! each, written through the page cache (it is rebuilt from the log if it is missing or wrong).
//! Timestamps never decrease within a partition (the writer sees to it), so the same entries
//! find an offset by position and by time. The index of older versions (`.index`, without
//! timestamps) is deleted and rebuilt by reading the whole segment once.
//!
//! `len` and `next_offset` only ever cover fsync'd bytes; readers never look past them.
//!
//! Neither file stays open: each operation takes its handle from the store's [`OpenFiles`]
//! (the index is kept in memory, so its file is opened only to add an entry).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::batch::{self, BatchHeader, HEADER_LEN};
use super::error::IoContext;
use super::open_files::OpenFiles;
use super::{StorageError, StoredRecord, Whole};

const INDEX_ENTRY: usize = 16;
/// Reads fetch at least this much at once, so small batches cost few syscalls.
const MIN_READ: usize = 256 * 1024;

pub struct Segment {
    pub base: u64,
    pub path: PathBuf,
    index_path: PathBuf,
    files: Arc<OpenFiles>,
    /// Ascending in offset and position, never decreasing in time.
    index: Mutex<Vec<IndexEntry>>,
    /// Position of the last indexed batch, to space entries `index_interval` apart.
    last_indexed: AtomicU64,
    len: AtomicU64,
    next_offset: AtomicU64,
    last_timestamp: AtomicI64,
}

/// A damaged tail found and cut while opening a segment.
#[derive(Debug, Clone)]
pub struct CutTail {
    pub valid_bytes: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

/// One sparse index entry: the batch at `position` starts at offset `base + rel` and was
/// appended at `timestamp_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    rel: u32,
    position: u32,
    timestamp_ms: i64,
}

impl IndexEntry {
    fn of(header: &BatchHeader, base: u64, position: u64) -> IndexEntry {
        IndexEntry {
            rel: (header.base_offset - base) as u32,
            position: position as u32,
            timestamp_ms: header.timestamp_ms,
        }
    }

    fn encode(&self) -> [u8; INDEX_ENTRY] {
        let mut raw = [0u8; INDEX_ENTRY];
        raw[..4].copy_from_slice(&self.rel.to_le_bytes());
        raw[4..8].copy_from_slice(&self.position.to_le_bytes());
        raw[8..].copy_from_slice(&self.timestamp_ms.to_le_bytes());
        raw
    }

    fn decode(raw: &[u8]) -> IndexEntry {
        let word = |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&raw[8..16]);
        IndexEntry { rel: word(0), position: word(4), timestamp_ms: i64::from_le_bytes(time) }
    }
}

pub fn file_names(dir: &Path, base: u64) -> (PathBuf, PathBuf) {
    (dir.join(format!("{base:020}.log")), dir.join(format!("{base:020}.idx")))
}

/// The index file of versions before timestamps were indexed.
fn old_index_name(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

fn log_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    options
}

/// An index may be missing (it is rebuilt from the log).
fn index_options() -> OpenOptions {
    let mut options = log_options();
    options.create(true).truncate(false);
    options
}

/// Makes a directory entry (a new file or subdirectory) durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync directory", dir)
}

impl Segment {
    /// Creates an empty segment starting at `base` (and makes its directory entry durable);
    /// answers it with its log's handle, held for the caller. On failure (e.g. out of files)
    /// no file of it is left behind, so a later roll to another base cannot leave an empty
    /// segment inside the log's offsets.
    pub fn create(files: &Arc<OpenFiles>, dir: &Path, base: u64) -> Result<(Segment, Arc<File>), StorageError> {
        let (path, index_path) = file_names(dir, base);
        let mut create = log_options();
        create.create_new(true);
        let file = files.get(&path, &create, "create")?;
        let mut create_index = log_options();
        create_index.create(true).truncate(true);
        let made = files.get(&index_path, &create_index, "create").and_then(|_| sync_dir(dir));
        if let Err(e) = made {
            for created in [&path, &index_path] {
                files.forget(created);
                let _ = std::fs::remove_file(created);
            }
            return Err(e);
        }
        Ok((Segment::new(base, path, index_path, files.clone(), Vec::new(), 0, base, 0), file))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        base: u64,
        path: PathBuf,
        index_path: PathBuf,
        files: Arc<OpenFiles>,
        index: Vec<IndexEntry>,
        len: u64,
        next_offset: u64,
        last_timestamp: i64,
    ) -> Segment {
        let last_indexed = index.last().map_or(0, |e| u64::from(e.position));
        Segment {
            base,
            path,
            index_path,
            files,
            index: Mutex::new(index),
            last_indexed: AtomicU64::new(last_indexed),
            len: AtomicU64::new(len),
            next_offset: AtomicU64::new(next_offset),
            last_timestamp: AtomicI64::new(last_timestamp),
        }
    }

    /// Opens an existing segment. The tail after the last index entry is verified batch by
    /// batch; a torn or corrupt batch and everything after it are cut off (and reported).
    /// A missing or inconsistent index is rebuilt from the log; one that cannot be opened
    /// (out of files) is deleted and rebuilt in memory, to be rebuilt on disk at the next start.
    pub fn open(
        files: &Arc<OpenFiles>,
        dir: &Path,
        base: u64,
        index_interval: u64,
    ) -> Result<(Segment, Option<CutTail>), StorageError> {
        let (path, index_path) = file_names(dir, base);
        let old_index = old_index_name(dir, base);
        std::fs::remove_file(&old_index).or_else(not_found_is_fine).ctx("delete", &old_index)?;
        let file = files.get(&path, &log_options(), "open")?;
        let file_len = file.metadata().ctx("stat", &path)?.len();
        let index_file = match files.get(&index_path, &index_options(), "open") {
            Ok(index_file) => Some(index_file),
            Err(StorageError::TooManyOpenFiles { .. }) => {
                // Entries appended later must not follow stale ones.
                std::fs::remove_file(&index_path).or_else(not_found_is_fine).ctx("delete", &index_path)?;
                None
            }
            Err(e) => return Err(e),
        };
        let mut index = match &index_file {
            Some(index_file) => read_index(index_file, &index_path, file_len)?,
            None => Vec::new(),
        };

        // Start at the last index entry that points at a batch with the expected offset.
        let mut start = (0u64, base);
        while let Some(&entry) = index.last() {
            let pos = u64::from(entry.position);
            match read_header(&file, pos) {
                Ok(h) if h.base_offset == base + u64::from(entry.rel) && h.timestamp_ms == entry.timestamp_ms => {
                    start = (pos, h.base_offset);
                    break;
                }
                _ => {
                    index.pop();
                }
            }
        }
        let mut scan = Scan {
            index,
            position: start.0,
            next_offset: start.1,
            last_timestamp: 0,
            last_indexed: start.0,
            error: None,
        };
        scan.run(&file, file_len, base, index_interval);

        let cut = match scan.error.take() {
            Some(reason) => {
                file.set_len(scan.position).ctx("truncate", &path)?;
                file.sync_all().ctx("fsync", &path)?;
                Some(CutTail { valid_bytes: scan.position, dropped_bytes: file_len - scan.position, reason })
            }
            None => None,
        };
        if let Some(index_file) = &index_file {
            write_index(index_file, &index_path, &scan.index)?;
        }
        let segment = Segment::new(
            base,
            path,
            index_path,
            files.clone(),
            scan.index,
            scan.position,
            scan.next_offset,
            scan.last_timestamp,
        );
        Ok((segment, cut))
    }

    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    pub fn last_timestamp(&self) -> i64 {
        self.last_timestamp.load(Ordering::Acquire)
    }

    /// Writes `bytes` after the durable end and fsyncs. Nothing becomes visible here;
    /// [`Segment::publish`] does that once the caller knows the write is durable.
    pub fn write_durably(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let file = self.file()?;
        file.write_all_at(bytes, self.len()).ctx("write", &self.path)?;
        file.sync_data().ctx("fsync", &self.path)
    }

    /// Undoes a failed write, so the next one starts at the durable end with no garbage after it.
    pub fn discard_unpublished(&self) -> Result<(), StorageError> {
        self.file()?.set_len(self.len()).ctx("truncate", &self.path)
    }

    /// The log's open handle. Holding it keeps the file open (a writer holds its active
    /// segment's across a round, so the round cannot run out of files after promising offsets).
    pub fn file(&self) -> Result<Arc<File>, StorageError> {
        self.files.get(&self.path, &log_options(), "open")
    }

    /// The log file's handle if it is open now (no system call).
    pub fn open_file(&self) -> Option<Arc<File>> {
        self.files.cached(&self.path)
    }

    /// Makes durable batches visible to readers: `batches` are (header, position) of what was written.
    pub fn publish(&self, batches: &[(BatchHeader, u64)], index_interval: u64) {
        let Some((last, last_pos)) = batches.last() else { return };
        {
            let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            for (header, pos) in batches {
                let due = index.is_empty() || *pos >= self.last_indexed.load(Ordering::Relaxed) + index_interval;
                // An entry older than the last would make the time lookups' binary search wrong.
                let in_time = index.last().is_none_or(|e| e.timestamp_ms <= header.timestamp_ms);
                if due && in_time {
                    let entry = IndexEntry::of(header, self.base, *pos);
                    let raw = entry.encode();
                    // The index is a cache of the log: a failed write is repaired at the next start
                    // (running out of files is logged by the cache).
                    let at = (index.len() * INDEX_ENTRY) as u64;
                    let written = self
                        .files
                        .get(&self.index_path, &index_options(), "open")
                        .and_then(|f| f.write_all_at(&raw, at).ctx("write", &self.index_path));
                    match written {
                        Ok(()) | Err(StorageError::TooManyOpenFiles { .. }) => {}
                        Err(e) => {
                            tracing::warn!(index = %self.index_path.display(), "index write failed, it will be rebuilt: {e}")
                        }
                    }
                    index.push(entry);
                    self.last_indexed.store(*pos, Ordering::Relaxed);
                }
            }
        }
        // Length first: a lookup by time that sees the new time then finds the batch too.
        self.len.store(last_pos + last.total_len() as u64, Ordering::Release);
        self.last_timestamp.store(last.timestamp_ms, Ordering::Release);
        self.next_offset.store(last.next_offset(), Ordering::Release);
    }

    /// Durable records from `offset` on, about `max_bytes` of payload (at least one record).
    pub fn read(&self, offset: u64, max_bytes: usize, keep: Whole) -> Result<Vec<StoredRecord>, StorageError> {
        self.read_in_blocks(offset, max_bytes, MIN_READ, keep)
    }

    /// [`Segment::read`] with reads of at least `min_block` bytes. A block may end anywhere,
    /// inside a batch or its header: the batch it cuts starts the next block, or is read on
    /// its own when it is the block's first.
    fn read_in_blocks(
        &self,
        offset: u64,
        max_bytes: usize,
        min_block: usize,
        keep: Whole,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let end = self.len();
        if offset >= self.next_offset() {
            return Ok(Vec::new());
        }
        let mut pos = self.position_before(offset);
        let mut out = Vec::new();
        let mut taken = 0usize;
        let full = |out: &Vec<StoredRecord>, taken: usize| !out.is_empty() && taken >= max_bytes;
        while pos < end && !full(&out, taken) {
            let want = (end - pos).min(max_bytes.saturating_sub(taken).max(min_block) as u64) as usize;
            let block = self.read_bytes(pos, want)?;
            let mut at = 0usize;
            while at < block.len() && !full(&out, taken) {
                let (header, whole) = match batch::parse_header(&block[at..]) {
                    Ok(h) if at + h.total_len() <= block.len() => (h, block.slice(at..at + h.total_len())),
                    _ if at > 0 => break,
                    _ => self.read_batch_at(pos, end)?,
                };
                let batch_pos = pos + at as u64;
                batch::verify(&whole, &header).map_err(|r| self.corrupt(batch_pos, r))?;
                if header.next_offset() > offset {
                    let (records, marks) = batch::records(&whole, &header).map_err(|r| self.corrupt(batch_pos, r))?;
                    let mut stamp = marks.stamp.map(Arc::new);
                    let last = records.len() - 1;
                    for (i, value) in records.into_iter().enumerate() {
                        let record_offset = header.base_offset + i as u64;
                        // For a copy an idempotent request is read whole, never cut: a copy
                        // holds it whole with its stamp or not at all (see `producers`).
                        if full(&out, taken) && (stamp.is_none() || keep == Whole::Records) {
                            break;
                        }
                        if record_offset >= offset {
                            taken += value.len();
                            let producer = if i == last { stamp.take() } else { None };
                            out.push(StoredRecord {
                                offset: record_offset,
                                timestamp_ms: header.timestamp_ms,
                                value,
                                key_token: marks.key_token,
                                producer,
                            });
                        }
                    }
                }
                at += header.total_len();
            }
            pos += at as u64;
        }
        Ok(out)
    }

    /// The whole batch at `pos`, which must end by `end` (the durable length).
    fn read_batch_at(&self, pos: u64, end: u64) -> Result<(BatchHeader, Bytes), StorageError> {
        let header = read_header(&*self.file()?, pos).map_err(|r| self.corrupt(pos, r))?;
        let total = header.total_len();
        if pos + total as u64 > end {
            return Err(self.corrupt(pos, format!("batch of {total} bytes runs past the durable end {end}")));
        }
        Ok((header, self.read_bytes(pos, total)?))
    }

    fn position_before(&self, offset: u64) -> u64 {
        let rel = offset.saturating_sub(self.base).min(u64::from(u32::MAX)) as u32;
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let i = index.partition_point(|e| e.rel <= rel);
        if i == 0 {
            0
        } else {
            u64::from(index[i - 1].position)
        }
    }

    /// The first offset appended at or after `timestamp_ms`, if this segment has one. It walks
    /// batch headers from the last index entry older than that, so it reads about an index
    /// interval of headers, not records.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>, StorageError> {
        if self.next_offset() == self.base || self.last_timestamp() < timestamp_ms {
            return Ok(None);
        }
        let mut pos = {
            let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            let i = index.partition_point(|e| e.timestamp_ms < timestamp_ms);
            if i == 0 {
                0
            } else {
                u64::from(index[i - 1].position)
            }
        };
        let end = self.len();
        let file = self.file()?;
        while pos < end {
            let header = read_header(&file, pos).map_err(|r| self.corrupt(pos, r))?;
            if header.timestamp_ms >= timestamp_ms {
                return Ok(Some(header.base_offset));
            }
            pos += header.total_len() as u64;
        }
        Ok(None)
    }

    fn read_bytes(&self, pos: u64, len: usize) -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; len];
        self.file()?.read_exact_at(&mut buf, pos).ctx("read", &self.path)?;
        Ok(Bytes::from(buf))
    }

    fn corrupt(&self, position: u64, reason: String) -> StorageError {
        StorageError::Corrupt { path: self.path.clone(), position, reason }
    }

    /// Cuts the segment so it ends just before offset `to` (which it holds), rewriting the batch
    /// that straddles `to` with only its records before `to`, and reopens it.
    pub fn cut_at(&self, dir: &Path, to: u64, index_interval: u64) -> Result<Segment, StorageError> {
        // Held to the reopen, which then finds it open: once the file is cut, running out of
        // files cannot leave this segment's in-memory end past the file's.
        let file = self.file()?;
        let end = self.len();
        let mut pos = self.position_before(to);
        let mut kept = Vec::new();
        while pos < end {
            let header = read_header(&file, pos).map_err(|r| self.corrupt(pos, r))?;
            if header.next_offset() > to {
                let whole = self.read_bytes(pos, header.total_len())?;
                batch::verify(&whole, &header).map_err(|r| self.corrupt(pos, r))?;
                let (records, marks) = batch::records(&whole, &header).map_err(|r| self.corrupt(pos, r))?;
                let keep = to.saturating_sub(header.base_offset) as usize;
                // Cut before its last record, the batch keeps no stamp: the request is not stored whole.
                if keep > 0 {
                    let marks = batch::Marks { key_token: marks.key_token, stamp: None };
                    batch::encode(&mut kept, header.base_offset, header.timestamp_ms, &records[..keep], marks);
                }
                break;
            }
            pos += header.total_len() as u64;
        }
        file.set_len(pos).ctx("truncate", &self.path)?;
        file.write_all_at(&kept, pos).ctx("write", &self.path)?;
        file.sync_all().ctx("fsync", &self.path)?;
        let (segment, cut) = Segment::open(&self.files, dir, self.base, index_interval)?;
        if let Some(cut) = cut {
            return Err(self.corrupt(cut.valid_bytes, format!("segment damaged after cutting it: {}", cut.reason)));
        }
        Ok(segment)
    }

    /// Deletes both files (a read holding the log's handle finishes on it).
    /// Drops its open files from the cache (its files are about to go).
    pub fn forget_files(&self) {
        self.files.forget(&self.path);
        self.files.forget(&self.index_path);
    }

    pub fn delete(&self) -> Result<(), StorageError> {
        self.forget_files();
        std::fs::remove_file(&self.path).ctx("delete", &self.path)?;
        std::fs::remove_file(&self.index_path).ctx("delete", &self.index_path)?;
        let snapshot = self.path.with_extension("producers");
        std::fs::remove_file(&snapshot).or_else(not_found_is_fine).ctx("delete", &snapshot)
    }
}

fn not_found_is_fine(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

fn read_header(file: &File, pos: u64) -> Result<BatchHeader, String> {
    let mut raw = [0u8; HEADER_LEN];
    file.read_exact_at(&mut raw, pos).map_err(|e| e.to_string())?;
    batch::parse_header(&raw)
}

/// Index entries that are ascending (in time, not decreasing) and point inside the file; the
/// rest is ignored.
fn read_index(file: &File, path: &Path, log_len: u64) -> Result<Vec<IndexEntry>, StorageError> {
    let len = file.metadata().ctx("stat", path)?.len() as usize;
    let mut raw = vec![0u8; len - len % INDEX_ENTRY];
    file.read_exact_at(&mut raw, 0).ctx("read", path)?;
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(raw.len() / INDEX_ENTRY);
    for chunk in raw.chunks_exact(INDEX_ENTRY) {
        let entry = IndexEntry::decode(chunk);
        let ascending = entries
            .last()
            .is_none_or(|e| entry.rel > e.rel && entry.position > e.position && entry.timestamp_ms >= e.timestamp_ms);
        if !ascending || u64::from(entry.position) >= log_len {
            break;
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn write_index(file: &File, path: &Path, entries: &[IndexEntry]) -> Result<(), StorageError> {
    let raw: Vec<u8> = entries.iter().flat_map(IndexEntry::encode).collect();
    file.set_len(0).ctx("truncate", path)?;
    file.write_all_at(&raw, 0).ctx("write", path)
}

/// Batch-by-batch verification of a segment's tail.
struct Scan {
    index: Vec<IndexEntry>,
    position: u64,
    next_offset: u64,
    last_timestamp: i64,
    last_indexed: u64,
    error: Option<String>,
}

impl Scan {
    fn run(&mut self, file: &File, file_len: u64, base: u64, index_interval: u64) {
        while self.position < file_len {
            let header = match read_header(file, self.position) {
                Ok(h) => h,
                Err(reason) => return self.fail(reason),
            };
            if header.base_offset != self.next_offset {
                return self
                    .fail(format!("batch offset {} where {} was expected", header.base_offset, self.next_offset));
            }
            let total = header.total_len() as u64;
            if self.position + total > file_len {
                return self.fail(format!("torn batch: {} of {total} bytes present", file_len - self.position));
            }
            let mut whole = vec![0u8; total as usize];
            if let Err(e) = file.read_exact_at(&mut whole, self.position) {
                return self.fail(e.to_string());
            }
            if let Err(reason) = batch::verify(&whole, &header) {
                return self.fail(reason);
            }
            let due = self.index.is_empty() || self.position >= self.last_indexed + index_interval;
            let after_last = self
                .index
                .last()
                .is_none_or(|e| u64::from(e.position) < self.position && e.timestamp_ms <= header.timestamp_ms);
            if due && after_last {
                self.index.push(IndexEntry::of(&header, base, self.position));
                self.last_indexed = self.position;
            }
            self.position += total;
            self.next_offset = header.next_offset();
            self.last_timestamp = header.timestamp_ms;
        }
    }

    fn fail(&mut self, reason: String) {
        self.error = Some(reason);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::partition_log::{NewBatch, PartitionLog};

    /// Just the log and index of one segment.
    fn few_files() -> Arc<OpenFiles> {
        Arc::new(OpenFiles::new(2))
    }

    /// Writes each request (its record sizes) as one batch, seven requests a round; record i is
    /// its size in copies of i's low byte. Returns the records by offset.
    fn write(dir: &Path, requests: &[Vec<usize>], index_interval: u64) -> Vec<Bytes> {
        let (log, _) = PartitionLog::open(&few_files(), "t", 0, dir, u64::MAX / 2, index_interval, 10).expect("open");
        let mut all = Vec::new();
        let batches: Vec<Vec<Bytes>> = requests
            .iter()
            .map(|sizes| {
                sizes
                    .iter()
                    .map(|&n| {
                        let record = Bytes::from(vec![all.len() as u8; n]);
                        all.push(record.clone());
                        record
                    })
                    .collect()
            })
            .collect();
        for chunk in batches.chunks(7) {
            let timed: Vec<NewBatch> = chunk
                .iter()
                .map(|records| NewBatch { records: records.clone(), timestamp_ms: 1, key_token: None, stamp: None })
                .collect();
            let round = log.append_batches(&timed);
            assert!(round.results.iter().all(Result::is_ok));
        }
        all
    }

    /// Issue 10: one record of 978 bytes, then 2,052 of 991, one request each: the 2 MiB read
    /// window ended 13 bytes into a batch header, and the read called that corruption.
    #[test]
    fn a_read_window_ending_inside_a_batch_header_reads_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let requests: Vec<Vec<usize>> = std::iter::once(vec![978]).chain((0..2052).map(|_| vec![991])).collect();
        let all = write(dir.path(), &requests, 4096);
        let (segment, _) = Segment::open(&few_files(), dir.path(), 0, 4096).expect("reopen");
        let mut offset = 0;
        while offset < all.len() as u64 {
            let read = segment.read(offset, 2 * 1024 * 1024, Whole::Records).expect("healthy data reads without error");
            assert_eq!(read.first().map(|r| r.offset), Some(offset));
            offset = read.last().map_or(offset, |r| r.offset + 1);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Batches appended at any non-decreasing times, any index spacing, reopened from disk:
        /// the lookup by time answers the first offset appended at or after any time asked.
        #[test]
        fn the_offset_for_a_time_is_the_first_appended_at_or_after_it(
            batches in prop::collection::vec((1usize..5, 0i64..3), 1..80),
            index_interval in prop::sample::select(vec![1u64, 64, 512, 4096]),
            asked in 0i64..200,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (log, _) = PartitionLog::open(&few_files(), "t", 0, dir.path(), u64::MAX / 2, index_interval, 10).expect("open");
            let (mut time, mut offset) = (10i64, 0u64);
            let mut firsts: Vec<(i64, u64)> = Vec::new();
            for (count, step) in &batches {
                time += step;
                let records: Vec<Bytes> = (0..*count).map(|i| Bytes::from(vec![i as u8; 40])).collect();
                let batch = NewBatch { records, timestamp_ms: time, key_token: None, stamp: None };
                prop_assert!(log.append_batches(&[batch]).results.iter().all(Result::is_ok));
                firsts.push((time, offset));
                offset += *count as u64;
            }
            let (segment, _) = Segment::open(&few_files(), dir.path(), 0, index_interval).expect("reopen");
            let expected = firsts.iter().find(|(t, _)| *t >= asked).map(|(_, o)| *o);
            prop_assert_eq!(segment.offset_for_timestamp(asked).expect("lookup"), expected);
        }

        /// Any batch sizes, any window, any start: whole records, in order, from the start asked
        /// for, at least one when there is one, and never an error on healthy data.
        #[test]
        fn reads_return_whole_batches_in_order_for_any_window(
            requests in prop::collection::vec(prop::collection::vec(0usize..700, 1..6), 1..60),
            start_fraction in 0.0f64..=1.0,
            max_bytes in 1usize..6000,
            min_block in 1usize..3000,
            index_interval in prop::sample::select(vec![1u64, 64, 512, 4096]),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let all = write(dir.path(), &requests, index_interval);
            let (segment, _) = Segment::open(&few_files(), dir.path(), 0, index_interval).expect("reopen");
            let total = all.len() as u64;
            let start = ((total as f64) * start_fraction) as u64;
            let mut offset = start;
            while offset < total {
                let read = segment.read_in_blocks(offset, max_bytes, min_block, Whole::Records);
                prop_assert!(read.is_ok(), "read at {} failed: {:?}", offset, read.err());
                let read = read.unwrap_or_default();
                prop_assert!(!read.is_empty(), "nothing read at {} of {}", offset, total);
                let payload: usize = read.iter().map(|r| r.value.len()).sum();
                let last_len = read.last().map_or(0, |r| r.value.len());
                prop_assert!(payload - last_len < max_bytes, "read past the limit: {} of {}", payload, max_bytes);
                for (i, record) in read.iter().enumerate() {
                    prop_assert_eq!(record.offset, offset + i as u64);
                    prop_assert_eq!(&record.value, &all[record.offset as usize]);
                }
                offset += read.len() as u64;
            }
            prop_assert!(segment.read_in_blocks(total, max_bytes, min_block, Whole::Records).map(|r| r.is_empty()).unwrap_or(false));
        }
    }
}
