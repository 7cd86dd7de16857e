//! Storage behaviour through its public API, on real files in temp directories.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::*;

pub(super) fn config(dir: &Path, segment_bytes: u64) -> StorageConfig {
    StorageConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        index_interval_bytes: 256,
        retention: None,
        retention_bytes: None,
        max_open_files: 64,
        disk_reserve: DiskReserve::Bytes(0),
        max_producers: 100,
    }
}

/// A store of 64 KiB segments that keeps at most `max_open_files` open.
fn config_with_files(dir: &Path, max_open_files: usize) -> StorageConfig {
    StorageConfig { max_open_files, ..config(dir, 64 * 1024) }
}

fn records(from: usize, n: usize, size: usize) -> Vec<Bytes> {
    (from..from + n).map(|i| Bytes::from(format!("{i:0size$}"))).collect()
}

async fn read_all(storage: &Storage, topic: &str, partition: u32) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let read = storage.read(topic, partition, offset, 4096).await.expect("read");
        if read.records.is_empty() {
            return out;
        }
        offset = read.next_offset;
        out.extend(read.records);
    }
}

fn segment_files(dir: &Path, topic: &str, partition: u32) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(topic).join(partition.to_string()))
        .expect("partition dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn appends_read_back_in_order_across_segment_rolls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024)).expect("open");
    for batch in 0..100 {
        let appended = storage.append("t", 0, records(batch * 10, 10, 100), 0).await.expect("append");
        assert_eq!(appended, Appended { base_offset: batch as u64 * 10, count: 10, duplicate: false });
    }
    assert!(segment_files(dir.path(), "t", 0).len() > 1, "100 KB in 64 KiB segments rolls");
    assert_eq!(storage.bounds("t", 0), Some((0, 1000)));
    let all = read_all(&storage, "t", 0).await;
    assert_eq!(all.len(), 1000);
    for (i, r) in all.iter().enumerate() {
        assert_eq!((r.offset, r.value.clone()), (i as u64, Bytes::from(format!("{i:0100}"))));
    }
    // From the middle of a batch, and the size limit still returns at least one record.
    let middle = storage.read("t", 0, 555, 1).await.expect("read");
    assert_eq!(middle.records.len(), 1);
    assert_eq!((middle.records[0].offset, middle.next_offset), (555, 556));
    assert!(storage.read("t", 0, 1000, 4096).await.expect("read").records.is_empty());
    assert!(storage.read("other", 0, 0, 4096).await.expect("read").records.is_empty());
    assert_eq!(storage.topics(), vec!["t".to_string()]);
}

#[tokio::test]
async fn concurrent_appends_get_distinct_contiguous_offsets_that_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 1024 * 1024)).expect("open");
    let tasks: Vec<_> = (0..50)
        .map(|t| {
            let storage = storage.clone();
            tokio::spawn(async move { storage.append("c", 3, records(t * 4, 4, 10), 0).await.expect("append") })
        })
        .collect();
    let mut bases = Vec::new();
    for task in tasks {
        bases.push(task.await.expect("task").base_offset);
    }
    bases.sort();
    assert_eq!(bases, (0..50).map(|i| i * 4).collect::<Vec<u64>>());
    storage.close().await;
    assert!(matches!(storage.append("c", 3, records(0, 1, 1), 0).await, Err(StorageError::Closed)));

    let (reopened, report) = Storage::open(config(dir.path(), 1024 * 1024)).expect("reopen");
    assert_eq!((report.partitions, report.truncated.len()), (1, 0));
    let all = read_all(&reopened, "c", 3).await;
    assert_eq!(all.len(), 200);
    // Each request stayed one contiguous batch.
    for chunk in all.chunks(4) {
        let first: usize = std::str::from_utf8(&chunk[0].value).expect("utf8").parse().expect("number");
        assert_eq!(first % 4, 0);
        for (i, r) in chunk.iter().enumerate() {
            assert_eq!(r.value, Bytes::from(format!("{:010}", first + i)));
        }
    }
}

async fn damaged_tail_is_cut(damage: impl Fn(&Path, u64)) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (storage, _) = Storage::open(config(dir.path(), 1024 * 1024)).expect("open");
        for batch in 0..5 {
            storage.append("d", 1, records(batch * 3, 3, 50), 0).await.expect("append");
        }
        storage.close().await;
    }
    let segment = segment_files(dir.path(), "d", 1).pop().expect("segment");
    let len = std::fs::metadata(&segment).expect("stat").len();
    damage(&segment, len);
    let (storage, report) = Storage::open(config(dir.path(), 1024 * 1024)).expect("reopen");
    assert_eq!(report.truncated.len(), 1, "{report:?}");
    assert!(report.truncated[0].dropped_bytes > 0);
    assert_eq!(storage.bounds("d", 1), Some((0, 12)), "four complete batches kept");
    let appended = storage.append("d", 1, records(100, 1, 5), 0).await.expect("append after recovery");
    assert_eq!(appended.base_offset, 12);
    let all = read_all(&storage, "d", 1).await;
    assert_eq!(all.len(), 13);
    assert_eq!(all[12].value, Bytes::from("00100"));
}

#[tokio::test]
async fn a_torn_last_batch_is_cut_and_appends_continue_after_the_kept_data() {
    damaged_tail_is_cut(|segment, len| {
        std::fs::OpenOptions::new().write(true).open(segment).expect("open").set_len(len - 40).expect("cut")
    })
    .await;
}

#[tokio::test]
async fn a_flipped_byte_in_the_last_batch_is_cut_too() {
    damaged_tail_is_cut(|segment, len| {
        let mut bytes = std::fs::read(segment).expect("read");
        bytes[len as usize - 10] ^= 0x01;
        std::fs::write(segment, bytes).expect("write");
    })
    .await;
}

#[tokio::test]
async fn a_missing_index_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (storage, _) = Storage::open(config(dir.path(), 1024 * 1024)).expect("open");
        for batch in 0..40 {
            storage.append("i", 0, records(batch * 5, 5, 30), 0).await.expect("append");
        }
        storage.close().await;
    }
    let index = segment_files(dir.path(), "i", 0)[0].with_extension("idx");
    std::fs::remove_file(&index).expect("remove index");
    let (storage, report) = Storage::open(config(dir.path(), 1024 * 1024)).expect("reopen");
    assert!(report.truncated.is_empty());
    assert!(std::fs::metadata(&index).expect("index rebuilt").len() > 16, "several entries");
    let read = storage.read("i", 0, 123, 1).await.expect("read");
    assert_eq!(read.records[0].value, Bytes::from(format!("{:030}", 123)));
}

/// The first offset of each batch by its timestamp, from what a read returns.
fn batch_starts(records: &[StoredRecord]) -> Vec<(i64, u64)> {
    let mut starts: Vec<(i64, u64)> = Vec::new();
    for r in records {
        if starts.last().is_none_or(|(t, _)| *t < r.timestamp_ms) {
            starts.push((r.timestamp_ms, r.offset));
        }
    }
    starts
}

async fn assert_found_by_time(storage: &Storage, starts: &[(i64, u64)], end: u64) {
    for (i, &(timestamp, first)) in starts.iter().enumerate() {
        let found = storage.offset_for_timestamp("t", 0, timestamp).await.expect("find");
        assert_eq!(found, first, "the first record at {timestamp}");
        let next = starts.get(i + 1).map_or(end, |(_, o)| *o);
        assert_eq!(storage.offset_for_timestamp("t", 0, timestamp + 1).await.expect("find"), next);
    }
    assert_eq!(storage.offset_for_timestamp("t", 0, 0).await.expect("find"), 0);
    assert_eq!(storage.offset_for_timestamp("t", 0, i64::MAX).await.expect("find"), end);
}

/// Issue 13: reads by time find the first record appended at or after a time, across segment
/// rolls, after a restart, and after the index (which holds the times) was lost.
#[tokio::test]
async fn records_are_found_by_append_time_across_segments_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024)).expect("open");
    for batch in 0..60 {
        storage.append("t", 0, records(batch * 10, 10, 1000), 0).await.expect("append");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let all = read_all(&storage, "t", 0).await;
    assert!(all.windows(2).all(|w| w[0].timestamp_ms <= w[1].timestamp_ms), "time never goes backwards");
    let starts = batch_starts(&all);
    assert!(starts.len() > 30 && segment_files(dir.path(), "t", 0).len() > 3, "distinct times, several segments");
    assert_found_by_time(&storage, &starts, 600).await;
    storage.close().await;

    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024)).expect("reopen");
    assert_found_by_time(&storage, &starts, 600).await;
    storage.close().await;

    for log in segment_files(dir.path(), "t", 0) {
        // An older version's index (no times) is replaced too.
        std::fs::rename(log.with_extension("idx"), log.with_extension("index")).expect("rename index");
    }
    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024)).expect("reopen without indexes");
    assert_found_by_time(&storage, &starts, 600).await;
    let old = segment_files(dir.path(), "t", 0).iter().filter(|l| l.with_extension("index").exists()).count();
    assert_eq!(old, 0, "old indexes are deleted");
}

/// A copy keeps its leader's append times: one batch per run, each no earlier than the copy's
/// newest record, so time still never goes backwards in the copy.
#[tokio::test]
async fn a_copy_keeps_the_append_times_it_is_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024)).expect("open");
    let runs = [TimeRun::new(2, 1_000), TimeRun::new(3, 2_000)];
    let appended = storage.append_at("t", 0, 0, records(0, 5, 8), Vec::new(), &runs).await.expect("copy");
    assert_eq!((appended.base_offset, appended.count), (0, 5));
    let earlier = [TimeRun::new(1, 1_500)];
    storage.append_at("t", 0, 5, records(5, 1, 8), Vec::new(), &earlier).await.expect("copy");
    let times: Vec<i64> = read_all(&storage, "t", 0).await.iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(times, vec![1_000, 1_000, 2_000, 2_000, 2_000, 2_000], "given, never going back");
    assert_eq!(storage.offset_for_timestamp("t", 0, 1_001).await.expect("find"), 2);
    let uncovered = [TimeRun::new(9, 3_000)];
    assert!(storage.append_at("t", 0, 6, records(6, 1, 8), Vec::new(), &uncovered).await.is_err());
    assert_eq!(storage.end("t", 0), 6, "times that do not cover the records store nothing");
}

/// A request's key token is stored with its batch, copied with it (a run per token), kept
/// when a truncation cuts its batch, and read back after a restart: what an ordered queue
/// group orders by on any copy that becomes leader.
#[tokio::test]
async fn key_tokens_are_stored_copied_cut_and_reopened_with_their_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024)).expect("open");
    let keyed = |token| Conditions { key_token: token, ..Conditions::default() };
    for (i, token) in [Some(-7), None, Some(i64::MAX)].into_iter().enumerate() {
        match storage.append_pipelined("t", 0, records(i * 2, 2, 8), 1, keyed(token)).await.expect("append") {
            Pipelined::Promised { durable, .. } => durable.await.expect("answer").expect("durable"),
            Pipelined::Stored(_) => panic!("not a repeat"),
        };
    }
    let read = read_all(&storage, "t", 0).await;
    let tokens: Vec<Option<i64>> = read.iter().map(|r| r.key_token).collect();
    assert_eq!(tokens, [Some(-7), Some(-7), None, None, Some(i64::MAX), Some(i64::MAX)]);
    let runs = TimeRun::of(&read);
    assert_eq!(runs.len(), 3, "one run per batch: {runs:?}");
    let copy_dir = tempfile::tempdir().expect("tempdir");
    let (copy, _) = Storage::open(config(copy_dir.path(), 64 * 1024)).expect("open copy");
    let values: Vec<Bytes> = read.iter().map(|r| r.value.clone()).collect();
    copy.append_at("t", 0, 0, values, Vec::new(), &runs).await.expect("copy");
    assert_eq!(copy.truncate("t", 0, 5).await.expect("truncate"), 5);
    copy.close().await;
    let (copy, _) = Storage::open(config(copy_dir.path(), 64 * 1024)).expect("reopen copy");
    let copied: Vec<Option<i64>> = read_all(&copy, "t", 0).await.iter().map(|r| r.key_token).collect();
    assert_eq!(copied, tokens[..5], "the cut batch keeps its token");
}

#[tokio::test]
async fn retention_deletes_only_old_sealed_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), 64 * 1024);
    cfg.retention_bytes = Some(200 * 1024);
    let (storage, _) = Storage::open(cfg).expect("open");
    for batch in 0..60 {
        storage.append("r", 0, records(batch * 10, 10, 1000), 0).await.expect("append");
    }
    let before = segment_files(dir.path(), "r", 0).len();
    let deleted = storage.enforce_retention().await.expect("retention");
    assert!(deleted > 0 && deleted < before);
    let (start, end) = storage.bounds("r", 0).expect("bounds");
    assert!(start > 0 && end == 600);
    let read = storage.read("r", 0, 0, 10).await.expect("read below the log start");
    assert_eq!(read.records[0].offset, start, "reads below the start begin at the start");
    storage.close().await;

    let mut by_age = config(dir.path(), 64 * 1024);
    by_age.retention = Some(Duration::from_millis(1));
    let (storage, _) = Storage::open(by_age).expect("reopen");
    tokio::time::sleep(Duration::from_millis(5)).await;
    storage.enforce_retention().await.expect("retention");
    assert_eq!(segment_files(dir.path(), "r", 0).len(), 1, "only the active segment remains");
    assert_eq!(storage.bounds("r", 0).map(|b| b.1), Some(600));
}

#[tokio::test]
async fn invalid_topics_never_touch_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 1024 * 1024)).expect("open");
    for topic in ["../escape", "a/b", "..", ""] {
        assert!(matches!(storage.append(topic, 0, records(0, 1, 1), 0).await, Err(StorageError::InvalidTopic(_))));
    }
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    assert!(!dir.path().parent().expect("parent").join("escape").exists());
}

#[tokio::test]
async fn append_at_only_appends_at_the_expected_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 1024 * 1024)).expect("open");
    assert_eq!(storage.append_at("r", 0, 0, records(0, 3, 4), Vec::new(), &[]).await.expect("at 0").base_offset, 0);
    assert!(matches!(
        storage.append_at("r", 0, 0, records(0, 1, 4), Vec::new(), &[]).await,
        Err(StorageError::OffsetMismatch { end: 3 })
    ));
    assert!(matches!(
        storage.append_at("r", 0, 5, records(0, 1, 4), Vec::new(), &[]).await,
        Err(StorageError::OffsetMismatch { end: 3 })
    ));
    assert_eq!(storage.append_at("r", 0, 3, records(3, 2, 4), Vec::new(), &[]).await.expect("at 3").base_offset, 3);
    assert_eq!(storage.bounds("r", 0), Some((0, 5)));
}

#[tokio::test]
async fn truncation_cuts_inside_a_batch_and_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024)).expect("open");
    for batch in 0..100 {
        storage.append("x", 0, records(batch * 10, 10, 300), 1).await.expect("append");
    }
    assert!(segment_files(dir.path(), "x", 0).len() > 2, "the test needs several segments");
    assert_eq!(storage.truncate("x", 0, 125).await.expect("truncate"), 125);
    assert_eq!(storage.bounds("x", 0), Some((0, 125)));
    let kept = read_all(&storage, "x", 0).await;
    assert_eq!(kept.len(), 125);
    assert!(kept.iter().enumerate().all(|(i, r)| r.offset == i as u64 && r.value == format!("{i:0300}").as_bytes()));
    let appended = storage.append("x", 0, records(125, 5, 300), 2).await.expect("append after truncation");
    assert_eq!(appended.base_offset, 125);
    storage.close().await;

    let (storage, report) = Storage::open(config(dir.path(), 64 * 1024)).expect("reopen");
    assert!(report.truncated.is_empty(), "a truncated log reopens clean: {:?}", report.truncated);
    assert_eq!(storage.bounds("x", 0), Some((0, 130)));
    assert_eq!(read_all(&storage, "x", 0).await.len(), 130);
}

#[tokio::test]
async fn leader_epochs_label_records_and_fence_older_leaders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 1024 * 1024)).expect("open");
    storage.append("e", 0, records(0, 4, 8), 1).await.expect("epoch 1");
    storage.append("e", 0, records(4, 3, 8), 3).await.expect("epoch 3");
    assert!(matches!(
        storage.append("e", 0, records(7, 1, 8), 2).await,
        Err(StorageError::StaleEpoch { epoch: 2, current: 3 })
    ));
    assert_eq!(storage.last_epoch("e", 0), 3);
    assert_eq!(storage.end_of_epoch("e", 0, 1), 4);
    assert_eq!(storage.end_of_epoch("e", 0, 2), 4);
    assert_eq!(storage.end_of_epoch("e", 0, 3), 7);
    let epochs = storage.epochs_covering("e", 0, 2, 7);
    assert_eq!(epochs, vec![EpochStart { epoch: 1, start: 2 }, EpochStart { epoch: 3, start: 4 }]);

    // A replica copying records 0..7 with those labels ends up with the same history.
    storage.append_at("copy", 0, 0, records(0, 2, 8), storage.epochs_covering("e", 0, 0, 2), &[]).await.expect("copy");
    storage.append_at("copy", 0, 2, records(2, 5, 8), epochs, &[]).await.expect("copy");
    assert_eq!(storage.end_of_epoch("copy", 0, 1), 4);
    assert_eq!(storage.last_epoch("copy", 0), 3);

    storage.truncate("e", 0, 5).await.expect("truncate");
    assert_eq!(storage.last_epoch("e", 0), 3, "epoch 3 still has record 4");
    storage.truncate("e", 0, 4).await.expect("truncate");
    assert_eq!(storage.last_epoch("e", 0), 1);
    storage.close().await;
    let (storage, _) = Storage::open(config(dir.path(), 1024 * 1024)).expect("reopen");
    assert_eq!((storage.last_epoch("e", 0), storage.last_epoch("copy", 0)), (1, 3));
}

/// One request queued for a partition's writer, with the receivers of its promise and answer.
struct Queued {
    assigned: tokio::sync::oneshot::Receiver<(u64, i64)>,
    answer: tokio::sync::oneshot::Receiver<Result<Appended, StorageError>>,
}

async fn queue(sender: &tokio::sync::mpsc::Sender<writer::WriterRequest>, records: Vec<Bytes>) -> Queued {
    let (assigned_tx, assigned) = tokio::sync::oneshot::channel();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let epoch = writer::EpochMark::Leader(0);
    let request = writer::AppendRequest {
        records,
        epoch,
        timestamp: None,
        key_token: None,
        assigned: Some(assigned_tx),
        producer: writer::ProducerMark::None,
        expected_offset: None,
        reply,
    };
    sender.send(writer::WriterRequest::Append(request)).await.expect("queued");
    Queued { assigned, answer }
}

/// Issue 10: the writer promised a base offset before it knew the write would happen; an
/// over-size batch was then skipped without renumbering the rest of the round, so the next
/// request was written at another offset than the one the leader had sent to its followers.
#[tokio::test]
async fn every_offset_promised_is_the_one_written_and_a_refused_request_gets_no_promise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) =
        partition_log::PartitionLog::open(&Arc::new(OpenFiles::new(4)), "t", 0, dir.path(), 1 << 30, 4096, 10)
            .expect("open");
    let log = std::sync::Arc::new(log);
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    // Queued before the writer runs, so the three form one round.
    let small = queue(&sender, records(0, 1, 10)).await;
    let huge = queue(&sender, vec![Bytes::from(vec![7u8; MAX_BATCH_BODY])]).await;
    let after = queue(&sender, records(1, 2, 10)).await;
    let space = DiskSpace::measure(dir.path(), DiskReserve::Bytes(0)).expect("statvfs");
    tokio::spawn(writer::run(log.clone(), receiver, std::sync::Arc::new(|| None), space));

    assert_eq!(small.assigned.await.ok().map(|(base, _)| base), Some(0));
    assert_eq!(small.answer.await.expect("answer").expect("written").base_offset, 0);
    assert!(huge.assigned.await.is_err(), "a request that cannot be stored is promised no offset");
    assert!(matches!(huge.answer.await.expect("answer"), Err(StorageError::BatchSize { .. })));
    assert_eq!(after.assigned.await.ok().map(|(base, _)| base), Some(1));
    assert_eq!(after.answer.await.expect("answer").expect("written").base_offset, 1);
    let read = log.read(0, 1 << 20, Whole::Records).expect("read");
    let values: Vec<Bytes> = read.records.into_iter().map(|r| r.value).collect();
    assert_eq!(values, records(0, 3, 10));

    // A failed partition promises nothing either: its end may not be where the writer thinks.
    log.fail("test");
    let refused = queue(&sender, records(3, 1, 10)).await;
    assert!(refused.assigned.await.is_err());
    assert!(matches!(refused.answer.await.expect("answer"), Err(StorageError::Poisoned { .. })));
}

/// Holds `n` handles of the store's open-file cache (files outside the store), as reads in
/// progress would, so the store has no more to open.
fn hold_open_files(storage: &Storage, dir: &Path, n: usize) -> Vec<std::sync::Arc<std::fs::File>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    (0..n)
        .map(|i| storage.inner.files.get(&dir.join(format!("held-{i}")), &options, "open").expect("hold a handle"))
        .collect()
}

/// Issue 11: many partitions, few open files. Every partition rolls through several segments
/// while the cache holds at most 6 files; everything reads back, before and after a restart
/// (whose recovery also stays within the bound).
#[tokio::test]
async fn more_segments_than_open_files_all_read_back_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config_with_files(dir.path(), 6)).expect("open");
    for round in 0..12 {
        for partition in 0..20 {
            storage.append("many", partition, records(round * 10, 10, 1000), 0).await.expect("append");
            assert!(storage.inner.files.count() <= 6, "{} files open", storage.inner.files.count());
        }
    }
    assert!(segment_files(dir.path(), "many", 0).len() >= 2, "every partition rolled");
    let check = |storage: Storage| async move {
        for partition in 0..20 {
            let all = read_all(&storage, "many", partition).await;
            assert_eq!(all.len(), 120);
            for (i, r) in all.iter().enumerate() {
                assert_eq!((r.offset, r.value.clone()), (i as u64, Bytes::from(format!("{i:01000}"))));
            }
            assert!(storage.inner.files.count() <= 6);
        }
    };
    check(storage.clone()).await;
    storage.close().await;
    let (storage, report) = Storage::open(config_with_files(dir.path(), 6)).expect("reopen");
    assert_eq!((report.partitions, report.truncated.len()), (20, 0));
    assert!(storage.inner.files.count() <= 6);
    check(storage).await;
}

/// Issue 11: out of open files, an append and a read are refused (retriable) before anything
/// happens, and the partition is not failed: once files are free both work, at the next offset.
#[tokio::test]
async fn out_of_open_files_refuses_one_request_and_fails_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held_dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config_with_files(dir.path(), 4)).expect("open");
    storage.append("t", 0, records(0, 3, 10), 0).await.expect("append");

    let held = hold_open_files(&storage, held_dir.path(), 4);
    let refused = storage.append("t", 0, records(3, 3, 10), 0).await;
    assert!(matches!(refused, Err(StorageError::TooManyOpenFiles { .. })), "{refused:?}");
    let read = storage.read("t", 0, 0, 4096).await;
    assert!(matches!(read, Err(StorageError::TooManyOpenFiles { .. })), "{read:?}");
    drop(held);

    let appended = storage.append("t", 0, records(3, 3, 10), 0).await.expect("append after files are free");
    assert_eq!(appended, Appended { base_offset: 3, count: 3, duplicate: false });
    let values: Vec<Bytes> = read_all(&storage, "t", 0).await.into_iter().map(|r| r.value).collect();
    assert_eq!(values, records(0, 6, 10));
}

/// Issue 11: a roll that finds no file to open leaves the partition writing on in its full
/// segment (no empty file left behind), and a later round rolls; nothing is lost or failed.
#[tokio::test]
async fn a_roll_out_of_open_files_writes_on_in_the_full_segment() {
    // Three handles held elsewhere: with 4 files, the active segment's log takes the last and
    // the new log cannot be made; with 5, the new log can, but its index cannot.
    for max_open_files in [4, 5] {
        roll_out_of_open_files(max_open_files).await;
    }
}

async fn roll_out_of_open_files(max_open_files: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let held_dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config_with_files(dir.path(), max_open_files)).expect("open");
    storage.append("t", 0, records(0, 40, 1000), 0).await.expect("append");

    let held = hold_open_files(&storage, held_dir.path(), 3);
    let appended = storage.append("t", 0, records(40, 40, 1000), 0).await.expect("append without a roll");
    assert_eq!(appended, Appended { base_offset: 40, count: 40, duplicate: false });
    let files = segment_files(dir.path(), "t", 0);
    assert_eq!(files.len(), 1, "no segment left half made: {files:?}");
    assert!(std::fs::metadata(&files[0]).expect("stat").len() > 64 * 1024, "the full segment grew past its size");
    drop(held);

    storage.append("t", 0, records(80, 40, 1000), 0).await.expect("append with a roll");
    assert_eq!(segment_files(dir.path(), "t", 0).len(), 2, "the next round rolled");
    let values: Vec<Bytes> = read_all(&storage, "t", 0).await.into_iter().map(|r| r.value).collect();
    assert_eq!(values, records(0, 120, 1000));
    storage.close().await;
    let (storage, report) = Storage::open(config_with_files(dir.path(), max_open_files)).expect("reopen");
    assert!(report.truncated.is_empty());
    assert_eq!(read_all(&storage, "t", 0).await.len(), 120);
}

/// A copy whose end lies before its leader's retained start drops what it has and starts
/// again, empty, at that start; the copy then holds the leader's records from there, also
/// after a restart of the broker. A copy that already reaches that far is left alone.
#[tokio::test]
async fn a_copy_restarted_at_its_leader_s_start_holds_the_records_from_there_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024)).expect("open");
    storage.append_at("t", 0, 0, records(0, 10, 8), vec![EpochStart { epoch: 1, start: 0 }], &[]).await.expect("copy");
    assert_eq!(storage.restart_at("t", 0, 5).await.expect("restart"), 10, "it already holds offset 5");
    assert_eq!(storage.restart_at("t", 0, 40).await.expect("restart"), 40);
    assert_eq!(storage.bounds("t", 0), Some((40, 40)));
    assert_eq!(storage.last_epoch("t", 0), 0, "its epoch labels went with its records");
    let stale = storage.append_at("t", 0, 10, records(10, 1, 8), Vec::new(), &[]).await;
    assert!(matches!(stale, Err(StorageError::OffsetMismatch { end: 40 })), "{stale:?}");
    let labels = vec![EpochStart { epoch: 3, start: 38 }];
    storage.append_at("t", 0, 40, records(40, 5, 8), labels, &[]).await.expect("copy from the leader's start");
    storage.close().await;
    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024)).expect("reopen");
    assert_eq!(storage.bounds("t", 0), Some((40, 45)));
    assert_eq!(storage.last_epoch("t", 0), 3);
    let read = storage.read("t", 0, 40, 4096).await.expect("read");
    let offsets: Vec<u64> = read.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![40, 41, 42, 43, 44]);
    assert_eq!(read.records[0].value, Bytes::from(format!("{:08}", 40)));
}
