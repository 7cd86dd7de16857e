//! The Raft log on disk: `raft.log` holds framed entries (u32 length, u32 crc32c, JSON entry)
//! back to back; `vote.json` and `purged.json` are replaced atomically. Entries are also kept
//! in memory: snapshots and purging bound their number.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError};
use tokio::sync::watch;

use super::durable_file::{self, SpaceWait};
use super::type_config::{Entry, LogId, StoreError, TypeConfig, Vote};
use crate::store::is_out_of_space;

const FRAME_HEADER: usize = 8;
/// The purged prefix is compacted away once the file carries this much dead data.
const COMPACT_AFTER_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogFile>>,
    /// Set at shutdown: a write waiting for disk space gives up.
    stop: Arc<watch::Sender<bool>>,
    /// Raft's writes waiting for space (the state machine's share it).
    space: SpaceWait,
}

struct LogFile {
    dir: PathBuf,
    file: File,
    len: u64,
    /// index -> (entry, position of its frame)
    entries: BTreeMap<u64, (Entry, u64)>,
    vote: Option<Vote>,
    last_purged: Option<LogId>,
}

fn write_err(e: std::io::Error) -> StoreError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn frame(entry: &Entry) -> Result<Vec<u8>, serde_json::Error> {
    let body = serde_json::to_vec(entry)?;
    let mut out = Vec::with_capacity(FRAME_HEADER + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

impl LogStore {
    /// Opens the log in `dir`, dropping a torn or corrupt tail frame (and anything after it).
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("raft.log");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        // A vote or purge mark that does not parse stops the start: reading it as "none" could
        // let this node vote twice in one term.
        let parse = |name: &str| -> std::io::Result<Option<Vec<u8>>> { durable_file::read(&dir.join(name)) };
        let vote: Option<Vote> = match parse("vote.json")? {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| damaged(dir, "vote.json", e))?),
            None => None,
        };
        let last_purged: Option<LogId> = match parse("purged.json")? {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| damaged(dir, "purged.json", e))?),
            None => None,
        };
        let bytes = std::fs::read(&path)?;
        let mut entries = BTreeMap::new();
        let mut pos = 0usize;
        while pos < bytes.len() {
            let Some(entry) = parse_frame(&bytes[pos..]) else {
                tracing::warn!(log = %path.display(), kept_bytes = pos, dropped_bytes = bytes.len() - pos,
                    "dropped a torn or corrupt tail of the Raft log");
                file.set_len(pos as u64)?;
                file.sync_all()?;
                break;
            };
            let (entry, size) = entry;
            if last_purged.is_none_or(|p| entry.log_id.index > p.index) {
                entries.insert(entry.log_id.index, (entry, pos as u64));
            }
            pos += size;
        }
        let len = file.metadata()?.len();
        let stop = watch::channel(false).0;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogFile { dir: dir.to_path_buf(), file, len, entries, vote, last_purged })),
            space: SpaceWait::new(stop.subscribe()),
            stop: Arc::new(stop),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogFile> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs file work (writes, fsyncs, renames) on a blocking thread, so a slow disk never
    /// stalls the async workers that serve requests; on a full disk it waits for space and
    /// runs it again ([`durable_file::write_when_space`]), so `work` must change nothing when
    /// it fails.
    async fn on_disk<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnMut(&mut LogFile) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let work = Arc::new(Mutex::new(work));
        let attempt = || {
            let (work, inner) = (work.clone(), self.inner.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    let mut work = work.lock().unwrap_or_else(|p| p.into_inner());
                    (*work)(&mut inner.lock().unwrap_or_else(|p| p.into_inner()))
                })
                .await
                .map_err(std::io::Error::other)?
            }
        };
        durable_file::write_when_space(what, &self.space, attempt).await
    }

    /// The node is shutting down: a write waiting for disk space fails instead.
    pub fn stop_waiting(&self) {
        self.stop.send_replace(true);
    }

    /// Ended by [`LogStore::stop_waiting`], and counting the writes waiting for space: the
    /// state machine's writes wait the same way, and the node reports it.
    pub fn space_wait(&self) -> SpaceWait {
        self.space.clone()
    }

    /// Whether this store has never been part of a cluster (nothing voted, logged or purged).
    pub fn is_pristine(&self) -> bool {
        let log = self.lock();
        log.vote.is_none() && log.entries.is_empty() && log.last_purged.is_none()
    }
}

fn damaged(dir: &Path, name: &str, e: serde_json::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is damaged: {e}", dir.join(name).display()))
}

fn parse_frame(b: &[u8]) -> Option<(Entry, usize)> {
    if b.len() < FRAME_HEADER {
        return None;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let body = b.get(FRAME_HEADER..FRAME_HEADER + len)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let entry = serde_json::from_slice(body).ok()?;
    Some((entry, FRAME_HEADER + len))
}

impl LogFile {
    /// Rewrites the file without the purged prefix (temp file + rename).
    fn compact(&mut self) -> std::io::Result<()> {
        let path = self.dir.join("raft.log");
        let tmp = self.dir.join("raft.log.compact");
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(self.entries.len());
        for (index, (entry, _)) in &self.entries {
            positions.push((*index, bytes.len() as u64));
            bytes.extend(frame(entry).map_err(std::io::Error::other)?);
        }
        durable_file::replace(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().read(true).write(true).open(&path)?;
        self.len = bytes.len() as u64;
        for (index, pos) in positions {
            if let Some(slot) = self.entries.get_mut(&index) {
                slot.1 = pos;
            }
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StoreError> {
        Ok(self.lock().entries.range(range).map(|(_, (e, _))| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StoreError> {
        let log = self.lock();
        let last = log.entries.values().next_back().map(|(e, _)| e.log_id).or(log.last_purged);
        Ok(LogState { last_purged_log_id: log.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StoreError> {
        let vote = *vote;
        self.on_disk("vote", move |log| {
            let bytes = serde_json::to_vec(&vote).map_err(std::io::Error::other)?;
            durable_file::replace(&log.dir.join("vote.json"), &bytes)?;
            log.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StoreError> {
        Ok(self.lock().vote)
    }

    /// One write and one fsync for all entries, before openraft is told they are durable.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in &entries {
            offsets.push(bytes.len() as u64);
            bytes.extend(frame(entry).map_err(|e| write_err(std::io::Error::other(e)))?);
        }
        let written = self
            .on_disk("log entries", move |log| {
                let start = log.len;
                if let Err(e) = log.file.write_all_at(&bytes, start).and_then(|_| log.file.sync_data()) {
                    // Gives back what a partial write took; the next try writes it all again.
                    let _ = log.file.set_len(start);
                    return Err(e);
                }
                log.len += bytes.len() as u64;
                for (entry, offset) in entries.drain(..).zip(&offsets) {
                    log.entries.insert(entry.log_id.index, (entry, start + offset));
                }
                Ok(())
            })
            .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = write_err(e);
                callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StoreError> {
        self.on_disk("log truncation", move |log| {
            let Some(&(_, pos)) = log.entries.get(&log_id.index) else { return Ok(()) };
            log.file.set_len(pos).and_then(|_| log.file.sync_all())?;
            log.len = pos;
            log.entries.split_off(&log_id.index);
            Ok(())
        })
        .await
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StoreError> {
        self.on_disk("purge mark", move |log| {
            let bytes = serde_json::to_vec(&log_id).map_err(std::io::Error::other)?;
            durable_file::replace(&log.dir.join("purged.json"), &bytes)?;
            log.last_purged = Some(log_id);
            let keep = log.entries.split_off(&(log_id.index + 1));
            log.entries = keep;
            let dead = log.entries.values().next().map_or(log.len, |(_, pos)| *pos);
            if dead >= COMPACT_AFTER_BYTES {
                match log.compact() {
                    // Compaction only saves space; the next purge tries again.
                    Err(e) if is_out_of_space(&e) => {
                        tracing::warn!(dead_bytes = dead, "no room to compact the Raft log yet: {e}")
                    }
                    other => other?,
                }
            }
            Ok(())
        })
        .await
        .map_err(write_err)
    }
}
