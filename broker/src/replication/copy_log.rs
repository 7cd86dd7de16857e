//! The one narrow interface between replication and a partition's log: what a copy needs to
//! agree with another copy, take what it lacks and drop what it must not keep. The store
//! implements it for real ([`StoredCopy`]); tests implement it in memory ([`MemoryLog`]), so the
//! replication protocol (`copy_protocol`) runs unchanged against both.
//!
//! Invariants every implementation keeps (and `MemoryLog`'s tests check):
//! - `start() <= end()`; records have consecutive offsets from `start()` to `end()`.
//! - The epoch history is ascending in epoch and in start offset, every start below `end()`
//!   once records of that epoch exist, and `last_epoch()` is its newest epoch (0 when empty).
//! - `append_at(base, …)` stores only when `base == end()`, and never lets the history go back.
//! - `truncate(to)` leaves `end() == min(end(), to)` and forgets epochs starting at or after it.

use std::future::Future;

use bytes::Bytes;

use super::copy_protocol::MAX_TIME_RUNS;
use crate::store::{EpochStart, Runs, Storage, StorageError, TimeRun, Whole};

/// Where a copy ends, and the epoch of its newest record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CopyState {
    pub end: u64,
    pub last_epoch: u64,
}

pub trait CopyLog: Send + Sync {
    fn end(&self) -> u64;
    fn last_epoch(&self) -> u64;
    /// Where the records of `epoch` end in this copy (where the next later epoch starts, or
    /// the end): the leader-epoch rule's question.
    fn end_of_epoch(&self, epoch: u64) -> u64;
    /// The epoch labels of the records `from..to`: the epoch of `from`, then each that starts inside.
    fn epochs_covering(&self, from: u64, to: u64) -> Vec<EpochStart>;
    /// Stores `records` at `base`, labelled with `epochs` and appended at the `times` of the
    /// copy they come from (this copy's clock when there are none), only if the copy ends at
    /// `base` ([`StorageError::OffsetMismatch`] otherwise); answers once durable.
    fn append_at(
        &self,
        base: u64,
        records: Vec<Bytes>,
        epochs: Vec<EpochStart>,
        times: Vec<TimeRun>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Drops every record at or after `to`; answers the new end.
    fn truncate(&self, to: u64) -> impl Future<Output = Result<u64, StorageError>> + Send;
    /// Up to about `max_bytes` of records from `from`, in order, with their append times;
    /// empty when `from` is at the end or no longer retained.
    fn read(
        &self,
        from: u64,
        max_bytes: usize,
    ) -> impl Future<Output = Result<(Vec<Bytes>, Vec<TimeRun>), StorageError>> + Send;

    fn state(&self) -> CopyState {
        CopyState { end: self.end(), last_epoch: self.last_epoch() }
    }
}

/// One topic partition of the store.
pub struct StoredCopy<'a> {
    pub storage: &'a Storage,
    pub topic: &'a str,
    pub partition: u32,
}

impl CopyLog for StoredCopy<'_> {
    fn end(&self) -> u64 {
        self.storage.end(self.topic, self.partition)
    }

    fn last_epoch(&self) -> u64 {
        self.storage.last_epoch(self.topic, self.partition)
    }

    fn end_of_epoch(&self, epoch: u64) -> u64 {
        self.storage.end_of_epoch(self.topic, self.partition, epoch)
    }

    fn epochs_covering(&self, from: u64, to: u64) -> Vec<EpochStart> {
        self.storage.epochs_covering(self.topic, self.partition, from, to)
    }

    async fn append_at(
        &self,
        base: u64,
        records: Vec<Bytes>,
        epochs: Vec<EpochStart>,
        times: Vec<TimeRun>,
    ) -> Result<(), StorageError> {
        self.storage.append_at(self.topic, self.partition, base, records, epochs, &times).await.map(drop)
    }

    async fn truncate(&self, to: u64) -> Result<u64, StorageError> {
        self.storage.truncate(self.topic, self.partition, to).await
    }

    async fn read(&self, from: u64, max_bytes: usize) -> Result<(Vec<Bytes>, Vec<TimeRun>), StorageError> {
        let read = self.storage.read_keeping(self.topic, self.partition, from, max_bytes, Whole::Requests).await?;
        // Retention may have removed `from`: a later start is not what was asked for.
        if read.records.first().is_none_or(|r| r.offset != from) {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut runs = Runs::bounded(MAX_TIME_RUNS);
        let covered =
            read.records.iter().take_while(|r| runs.add(1, (r.timestamp_ms, r.key_token), r.producer.clone())).count();
        Ok((read.records.into_iter().take(covered).map(|r| r.value).collect(), runs.into_runs()))
    }
}

#[cfg(test)]
pub use memory::MemoryLog;

#[cfg(test)]
mod memory {
    use std::sync::Mutex;

    use super::*;
    use crate::store::Epochs;

    /// A copy held in memory, with the store's epoch rules.
    #[derive(Default)]
    pub struct MemoryLog {
        inner: Mutex<(Vec<Bytes>, Epochs)>,
    }

    impl MemoryLog {
        /// A log of `records` (one per offset from 0), written in the given `(epoch, start)` runs.
        pub fn with(records: &[&str], epochs: &[(u64, u64)]) -> MemoryLog {
            let mut history = Epochs::default();
            history.extend(&epochs.iter().map(|&(epoch, start)| EpochStart { epoch, start }).collect::<Vec<_>>());
            let records = records.iter().map(|r| Bytes::copy_from_slice(r.as_bytes())).collect();
            MemoryLog { inner: Mutex::new((records, history)) }
        }

        pub fn records(&self) -> Vec<Bytes> {
            self.lock().0.clone()
        }

        pub fn epochs(&self) -> Vec<EpochStart> {
            let end = self.end();
            self.lock().1.covering(0, end)
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Bytes>, Epochs)> {
            self.inner.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    impl CopyLog for MemoryLog {
        fn end(&self) -> u64 {
            self.lock().0.len() as u64
        }

        fn last_epoch(&self) -> u64 {
            self.lock().1.last_epoch()
        }

        fn end_of_epoch(&self, epoch: u64) -> u64 {
            let (records, epochs) = &*self.lock();
            epochs.end_of(epoch, records.len() as u64)
        }

        fn epochs_covering(&self, from: u64, to: u64) -> Vec<EpochStart> {
            self.lock().1.covering(from, to)
        }

        /// Times are not kept: the protocol's decisions do not depend on them.
        async fn append_at(
            &self,
            base: u64,
            new: Vec<Bytes>,
            labels: Vec<EpochStart>,
            _times: Vec<TimeRun>,
        ) -> Result<(), StorageError> {
            let (records, epochs) = &mut *self.lock();
            let end = records.len() as u64;
            if base != end {
                return Err(StorageError::OffsetMismatch { end });
            }
            let labels: Vec<EpochStart> =
                labels.into_iter().map(|e| EpochStart { epoch: e.epoch, start: e.start.max(end) }).collect();
            epochs.extend(&labels);
            records.extend(new);
            Ok(())
        }

        async fn truncate(&self, to: u64) -> Result<u64, StorageError> {
            let (records, epochs) = &mut *self.lock();
            if to < records.len() as u64 {
                epochs.cut(to);
                records.truncate(to as usize);
            }
            Ok(records.len() as u64)
        }

        async fn read(&self, from: u64, max_bytes: usize) -> Result<(Vec<Bytes>, Vec<TimeRun>), StorageError> {
            let records = &self.lock().0;
            let mut out = Vec::new();
            let mut bytes = 0;
            for record in records.iter().skip(from as usize) {
                if !out.is_empty() && bytes >= max_bytes {
                    break;
                }
                bytes += record.len();
                out.push(record.clone());
            }
            Ok((out, Vec::new()))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::StorageConfig;

    #[derive(Debug, Clone)]
    enum Step {
        /// Appends `count` records at the end, in the current epoch or (with `new_epoch`) the next.
        Append { count: usize, new_epoch: bool },
        /// Cuts at this fraction of the end.
        Truncate(f64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1usize..5, any::<bool>()).prop_map(|(count, new_epoch)| Step::Append { count, new_epoch }),
            1 => (0.0f64..1.0).prop_map(Step::Truncate),
        ]
    }

    async fn apply(log: &impl CopyLog, step: &Step, epoch: &mut u64, serial: &mut usize) {
        match *step {
            Step::Append { count, new_epoch } => {
                *epoch += u64::from(new_epoch);
                let records = (0..count).map(|i| Bytes::from(format!("r{}", *serial + i))).collect();
                let end = log.end();
                log.append_at(end, records, vec![EpochStart { epoch: *epoch, start: end }], Vec::new())
                    .await
                    .expect("append");
                *serial += count;
            }
            Step::Truncate(fraction) => {
                let to = (log.end() as f64 * fraction) as u64;
                log.truncate(to).await.expect("truncate");
            }
        }
    }

    /// Records of more append times than one request may carry are read a request's worth at
    /// a time, their times in a header that fits the peer port's head buffer at its longest.
    fn store_config(dir: &std::path::Path, segment_bytes: u64, index_interval_bytes: u64) -> StorageConfig {
        StorageConfig {
            dir: dir.to_path_buf(),
            segment_bytes,
            index_interval_bytes,
            retention: None,
            retention_bytes: None,
            max_open_files: 8,
            disk_reserve: crate::store::DiskReserve::Bytes(0),
            max_producers: 100,
        }
    }

    #[tokio::test]
    async fn a_read_carries_at_most_the_time_runs_one_request_may() {
        let longest = TimeRun::new(u32::MAX, i64::MIN);
        assert!(TimeRun::format(&vec![longest; MAX_TIME_RUNS]).len() <= crate::store::MAX_RUNS_TEXT);
        const {
            assert!(crate::store::MAX_RUNS_TEXT <= crate::memory::HTTP1_BUFFER / 2, "runs with any stamps fit the head")
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (storage, _) = Storage::open(store_config(dir.path(), 1 << 20, 4096)).expect("open");
        let count = MAX_TIME_RUNS as u32 + 100;
        let records: Vec<Bytes> = (0..count).map(|i| Bytes::from(format!("r{i}"))).collect();
        let times: Vec<TimeRun> = (0..count).map(|i| TimeRun::new(1, i64::from(i))).collect();
        storage.append_at("t", 0, 0, records, Vec::new(), &times).await.expect("copy");
        let copy = StoredCopy { storage: &storage, topic: "t", partition: 0 };
        let (read, runs) = copy.read(0, usize::MAX).await.expect("read");
        assert_eq!((read.len(), runs.len()), (MAX_TIME_RUNS, MAX_TIME_RUNS));
        let (rest, _) = copy.read(MAX_TIME_RUNS as u64, usize::MAX).await.expect("read on");
        assert_eq!(rest.len(), 100);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// The in-memory log the replication tests run on behaves as the store does, through
        /// any run of appends (some starting new epochs) and cuts.
        #[test]
        fn the_memory_log_behaves_as_the_store(steps in prop::collection::vec(step(), 1..25)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let dir = tempfile::tempdir().expect("tempdir");
                let (storage, _) = Storage::open(store_config(dir.path(), 64 * 1024, 64)).expect("open");
                storage.append_at("t", 0, 0, vec![Bytes::from_static(b"first")], Vec::new(), &[]).await.expect("create");
                let stored = StoredCopy { storage: &storage, topic: "t", partition: 0 };
                let memory = MemoryLog::with(&["first"], &[]);
                let (mut epoch, mut serial) = (0, 0);
                for step in &steps {
                    let (mut e, mut s) = (epoch, serial);
                    apply(&stored, step, &mut epoch, &mut serial).await;
                    apply(&memory, step, &mut e, &mut s).await;
                    prop_assert_eq!(stored.state(), memory.state(), "after {:?}", step);
                    for asked in 0..=epoch + 1 {
                        prop_assert_eq!(stored.end_of_epoch(asked), memory.end_of_epoch(asked), "end of epoch {}", asked);
                    }
                    let end = stored.end();
                    prop_assert_eq!(stored.epochs_covering(0, end), memory.epochs_covering(0, end));
                    prop_assert_eq!(stored.read(0, usize::MAX).await.expect("read").0, memory.read(0, usize::MAX).await.expect("read").0);
                }
                Ok(())
            })?;
        }
    }
}
