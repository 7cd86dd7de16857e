//! The segment files a store keeps open: at most `limit` at once, shared by every partition.
//! A file is opened when a read or write needs it and stays open for the next one until it is
//! the least recently used while the cache is full; a handle someone still holds (a read in
//! progress, the active segment of a write round) is never closed under them, and counts.
//!
//! Running out (every cached handle in use, or the process out of descriptors even after
//! closing idle ones) is [`StorageError::TooManyOpenFiles`] for that one operation.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::{is_out_of_files, IoContext};
use super::StorageError;
use crate::log_every::LogEvery;

/// Running out is logged at most this often (with how many times it was not).
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct OpenFiles {
    limit: usize,
    state: Mutex<State>,
    refusals: LogEvery,
}

#[derive(Default)]
struct State {
    files: HashMap<PathBuf, Cached>,
    /// Paths by last use (a tick), oldest first.
    by_use: BTreeMap<u64, PathBuf>,
    tick: u64,
    /// Files being opened outside the lock, counted against the limit.
    opening: usize,
}

struct Cached {
    file: Arc<File>,
    used: u64,
}

impl State {
    fn touch(&mut self, path: &Path) -> Option<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        let cached = self.files.get_mut(path)?;
        self.by_use.remove(&cached.used);
        cached.used = tick;
        self.by_use.insert(tick, path.to_path_buf());
        Some(cached.file.clone())
    }

    fn insert(&mut self, path: &Path, file: Arc<File>) {
        self.tick += 1;
        self.by_use.insert(self.tick, path.to_path_buf());
        self.files.insert(path.to_path_buf(), Cached { file, used: self.tick });
    }

    /// Closes the least recently used handle nobody holds; false if every one is held.
    fn close_idle(&mut self) -> bool {
        // Only the cache hands out clones, under this lock, so a count of one cannot rise here.
        let idle =
            self.by_use.iter().find(|(_, path)| self.files.get(*path).is_some_and(|c| Arc::strong_count(&c.file) == 1));
        let Some((&tick, _)) = idle else { return false };
        if let Some(path) = self.by_use.remove(&tick) {
            self.files.remove(&path);
        }
        true
    }

    fn count(&self) -> usize {
        self.files.len() + self.opening
    }
}

impl OpenFiles {
    pub fn new(limit: usize) -> OpenFiles {
        OpenFiles { limit: limit.max(1), state: Mutex::new(State::default()), refusals: LogEvery::new(LOG_EVERY) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `path`'s handle if it is open now (no system call).
    pub fn cached(&self, path: &Path) -> Option<Arc<File>> {
        self.state().touch(path)
    }

    /// The open handle of `path`, opened with `options` if it is not open (`op` names that in
    /// errors: "open", "create"). Hold it only for the operation at hand: while it is held it
    /// cannot be closed to make room.
    pub fn get(&self, path: &Path, options: &OpenOptions, op: &'static str) -> Result<Arc<File>, StorageError> {
        let got = self.get_or_open(path, options, op);
        if let Err(StorageError::TooManyOpenFiles { .. }) = &got {
            let open = self.state().count();
            self.refusals.note(|unlogged| {
                tracing::warn!(file = %path.display(), open, limit = self.limit, refused_since_last_log = unlogged,
                    "out of open files: requests that need another segment file get 503 until others close")
            });
        }
        got
    }

    fn get_or_open(&self, path: &Path, options: &OpenOptions, op: &'static str) -> Result<Arc<File>, StorageError> {
        {
            let mut state = self.state();
            if let Some(file) = state.touch(path) {
                return Ok(file);
            }
            while state.count() >= self.limit {
                if !state.close_idle() {
                    return Err(StorageError::TooManyOpenFiles { op, path: path.to_path_buf() });
                }
            }
            state.opening += 1;
        }
        // Opened outside the lock: a slow open delays only the partition that waits for it.
        let opened = self.open(path, options, op);
        let mut state = self.state();
        state.opening -= 1;
        let file = Arc::new(opened?);
        match state.touch(path) {
            // Opened meanwhile by another thread: use that one, close this.
            Some(theirs) => Ok(theirs),
            None => {
                state.insert(path, file.clone());
                Ok(file)
            }
        }
    }

    /// Opens `path`; when the process is out of descriptors (sockets and other files use them
    /// too), closes idle cached handles one by one and tries again.
    fn open(&self, path: &Path, options: &OpenOptions, op: &'static str) -> Result<File, StorageError> {
        loop {
            match options.open(path) {
                Err(e) if is_out_of_files(&e) && self.state().close_idle() => continue,
                other => return other.ctx(op, path),
            }
        }
    }

    /// Drops the handle of a file that is being deleted or replaced (a holder keeps its own).
    pub fn forget(&self, path: &Path) {
        let mut state = self.state();
        if let Some(cached) = state.files.remove(path) {
            state.by_use.remove(&cached.used);
        }
    }

    /// How many handles the cache holds or is opening now (at most the limit).
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.state().count()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::sync::Weak;

    use proptest::prelude::*;

    use super::*;

    fn create() -> OpenOptions {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        options
    }

    fn paths(dir: &Path, n: usize) -> Vec<PathBuf> {
        (0..n).map(|i| dir.join(format!("{i}.log"))).collect()
    }

    #[test]
    fn idle_handles_close_beyond_the_limit_and_held_ones_stay_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = OpenFiles::new(3);
        let paths = paths(dir.path(), 5);
        let held = files.get(&paths[0], &create(), "open").expect("open");
        let idle: Vec<Weak<File>> =
            paths[1..].iter().map(|p| Arc::downgrade(&files.get(p, &create(), "open").expect("open"))).collect();
        assert_eq!(files.count(), 3);
        // The oldest idle ones were closed (their File dropped), the held one never.
        let open: Vec<bool> = idle.iter().map(|w| w.upgrade().is_some()).collect();
        assert_eq!(open, [false, false, true, true]);
        assert!(Arc::ptr_eq(&held, &files.get(&paths[0], &create(), "open").expect("still cached")));

        // With every handle held, one more is refused, and is given once one is let go.
        let others: Vec<Arc<File>> =
            paths[3..].iter().map(|p| files.get(p, &create(), "open").expect("open")).collect();
        match files.get(&paths[1], &create(), "open") {
            Err(StorageError::TooManyOpenFiles { op: "open", path }) => assert_eq!(path, paths[1]),
            other => panic!("expected TooManyOpenFiles, got {other:?}"),
        }
        drop(others);
        assert!(files.get(&paths[1], &create(), "open").is_ok());
        assert_eq!(files.count(), 3);
        files.forget(&paths[0]);
        assert_eq!(files.count(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any order of uses, any limit, some handles held a while: never more than the limit
        /// open (counting those held), and each handle reads its own file.
        #[test]
        fn never_more_open_than_the_limit(
            limit in 1usize..6,
            uses in prop::collection::vec((0usize..10, any::<bool>()), 1..80),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let paths = paths(dir.path(), 10);
            for (i, path) in paths.iter().enumerate() {
                std::fs::write(path, [i as u8]).expect("write");
            }
            let files = OpenFiles::new(limit);
            let mut held: Vec<Arc<File>> = Vec::new();
            let mut all: Vec<Weak<File>> = Vec::new();
            for (i, hold) in uses {
                match files.get(&paths[i], &create(), "open") {
                    Ok(file) => {
                        let mut byte = [0u8; 1];
                        file.read_exact_at(&mut byte, 0).expect("read");
                        prop_assert_eq!(byte[0], i as u8);
                        all.push(Arc::downgrade(&file));
                        if hold {
                            held.push(file);
                        }
                    }
                    Err(StorageError::TooManyOpenFiles { .. }) => {
                        prop_assert!(held.len() >= limit, "refused with only {} held", held.len());
                        held.clear();
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                }
                let mut live: Vec<*const File> = all.iter().filter_map(Weak::upgrade).map(|f| Arc::as_ptr(&f)).collect();
                live.sort_unstable();
                live.dedup();
                prop_assert!(live.len() <= limit, "{} open, limit {}", live.len(), limit);
                prop_assert!(files.count() <= limit);
            }
        }
    }
}
