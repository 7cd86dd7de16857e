//! A partition's leader-epoch history: for every leader epoch that wrote to it, the first
//! offset written in that epoch. Replicas compare histories to find where their logs part
//! (Kafka's leader-epoch rule): a follower whose last epoch is `e` keeps its log up to the
//! leader's [`EpochHistory::end_of`]`(e)` and drops the rest.
//!
//! Stored as `leader-epochs` (one `epoch start` pair per line) beside the segments, replaced
//! atomically. It is written before the records of a new epoch, so after a crash it may name
//! an epoch whose records never made it to disk: such entries are dropped on open.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::IoContext;
use super::segment::sync_dir;
use super::StorageError;

const FILE: &str = "leader-epochs";

/// Epoch `epoch` wrote its first record at offset `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    pub epoch: u64,
    pub start: u64,
}

pub struct EpochHistory {
    dir: PathBuf,
    epochs: Epochs,
}

/// The history itself, without its file: ascending epochs, each starting at or after the
/// one before. Replication's in-memory logs use it as the store does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Epochs {
    entries: Vec<EpochStart>,
}

impl std::ops::Deref for EpochHistory {
    type Target = Epochs;

    fn deref(&self) -> &Epochs {
        &self.epochs
    }
}

impl std::ops::DerefMut for EpochHistory {
    fn deref_mut(&mut self) -> &mut Epochs {
        &mut self.epochs
    }
}

impl EpochHistory {
    /// Reads the history of the partition in `dir`, keeping only entries below `log_end`.
    pub fn load(dir: &Path, log_end: u64) -> Result<EpochHistory, StorageError> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).ctx("read", &path),
        };
        let mut entries: Vec<EpochStart> = Vec::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace().map(str::parse::<u64>);
            let (Some(Ok(epoch)), Some(Ok(start))) = (fields.next(), fields.next()) else {
                return Err(StorageError::Corrupt { path, position: 0, reason: format!("bad line {line:?}") });
            };
            let ascending = entries.last().is_none_or(|last| epoch > last.epoch && start >= last.start);
            if ascending && start < log_end {
                entries.push(EpochStart { epoch, start });
            }
        }
        Ok(EpochHistory { dir: dir.to_path_buf(), epochs: Epochs { entries } })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes `epochs` (already written with [`write_file`]) as the history.
    pub fn install(&mut self, epochs: Epochs) {
        self.epochs = epochs;
    }
}

/// Writes `epochs` as the history file in `dir`, atomically and durably.
pub fn write_file(dir: &Path, epochs: &Epochs) -> Result<(), StorageError> {
    let path = dir.join(FILE);
    let temporary = dir.join(format!("{FILE}.tmp"));
    let text: String = epochs.entries.iter().map(|e| format!("{} {}\n", e.epoch, e.start)).collect();
    let mut file = std::fs::File::create(&temporary).ctx("create", &temporary)?;
    file.write_all(text.as_bytes()).ctx("write", &temporary)?;
    file.sync_all().ctx("fsync", &temporary)?;
    std::fs::rename(&temporary, &path).ctx("rename", &path)?;
    sync_dir(dir)
}

impl Epochs {
    /// The epoch of the newest record (0 for records written before any epoch was recorded).
    pub fn last_epoch(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.epoch)
    }

    /// Where epoch `epoch`'s records end here: the start of the first later epoch, or `log_end`.
    pub fn end_of(&self, epoch: u64, log_end: u64) -> u64 {
        self.entries.iter().find(|e| e.epoch > epoch).map_or(log_end, |e| e.start.min(log_end))
    }

    /// The entries a replica needs to label records `from..to`: the epoch of `from`, then every
    /// epoch that starts inside the range.
    pub fn covering(&self, from: u64, to: u64) -> Vec<EpochStart> {
        let first =
            self.entries.iter().rev().find(|e| e.start <= from).map(|e| EpochStart { epoch: e.epoch, start: from });
        first.into_iter().chain(self.entries.iter().filter(|e| e.start > from && e.start < to).copied()).collect()
    }

    /// Adds the entries that are newer than the last one; true when something was added.
    pub fn extend(&mut self, new: &[EpochStart]) -> bool {
        let before = self.entries.len();
        for entry in new {
            if entry.epoch > self.last_epoch() {
                let start = self.entries.last().map_or(entry.start, |last| entry.start.max(last.start));
                self.entries.push(EpochStart { epoch: entry.epoch, start });
            }
        }
        self.entries.len() != before
    }

    /// Forgets the epochs that start at or after `to` (the log is being cut there).
    pub fn cut(&mut self, to: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start < to);
        self.entries.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(dir: &Path, pairs: &[(u64, u64)], log_end: u64) -> EpochHistory {
        let mut h = EpochHistory::load(dir, log_end).expect("load");
        h.extend(&pairs.iter().map(|&(epoch, start)| EpochStart { epoch, start }).collect::<Vec<_>>());
        h
    }

    #[test]
    fn end_of_an_epoch_is_where_the_next_one_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = history(dir.path(), &[(1, 0), (3, 10), (4, 25)], 40);
        assert_eq!(h.last_epoch(), 4);
        assert_eq!(h.end_of(0, 40), 0, "nothing was written in epoch 0");
        assert_eq!(h.end_of(1, 40), 10);
        assert_eq!(h.end_of(2, 40), 10, "an epoch that never wrote ends where the next began");
        assert_eq!(h.end_of(4, 40), 40);
        assert_eq!(h.covering(12, 30), vec![EpochStart { epoch: 3, start: 12 }, EpochStart { epoch: 4, start: 25 }]);
    }

    #[test]
    fn persisted_history_drops_epochs_without_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = history(dir.path(), &[(1, 0), (2, 10), (5, 20)], 30);
        write_file(dir.path(), &h).expect("persist");
        let reloaded = EpochHistory::load(dir.path(), 20).expect("reload");
        assert_eq!(reloaded.last_epoch(), 2, "epoch 5 starts at the log end: its records were lost");
        assert!(h.cut(10));
        assert_eq!(h.last_epoch(), 1);
        assert!(!h.extend(&[EpochStart { epoch: 1, start: 12 }]), "older epochs are ignored");
    }
}
