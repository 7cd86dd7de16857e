//! Idempotent and conditional appends through the store's public API, on real files: what a
//! partition's leader and its copies make of a producer's requests, and what survives a
//! restart, a segment roll and a cut.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::*;

fn config(dir: &Path, segment_bytes: u64, max_producers: usize) -> StorageConfig {
    StorageConfig { max_producers, ..super::tests::config(dir, segment_bytes) }
}

fn stamp(id: &str, epoch: u64, seq: u64) -> Conditions {
    Conditions { producer: Some(ProducerStamp { id: id.into(), epoch, seq }), ..Conditions::default() }
}

fn values(n: usize, tag: &str) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("{tag}-{i:0200}"))).collect()
}

/// A leader's append (epoch 1), once durable here.
async fn append(storage: &Storage, records: Vec<Bytes>, conditions: Conditions) -> Result<Appended, StorageError> {
    match storage.append_pipelined("t", 0, records, 1, conditions).await? {
        Pipelined::Promised { durable, .. } => durable.await.map_err(|_| StorageError::Closed)?,
        Pipelined::Stored(appended) => Ok(appended),
    }
}

#[tokio::test]
async fn a_repeat_answers_its_offsets_a_gap_and_an_old_epoch_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 1 << 20, 100)).expect("open");
    let first = append(&storage, values(3, "a"), stamp("p", 1, 0)).await.expect("first");
    assert_eq!((first.base_offset, first.count, first.duplicate), (0, 3, false));
    let again = append(&storage, values(3, "a"), stamp("p", 1, 0)).await.expect("repeat");
    assert_eq!((again.base_offset, again.count, again.duplicate), (0, 3, true));
    assert_eq!(storage.end("t", 0), 3, "the repeat stored nothing");
    assert!(matches!(
        append(&storage, values(1, "b"), stamp("p", 1, 2)).await,
        Err(StorageError::SequenceGap { expected: 1 })
    ));
    append(&storage, values(1, "b"), stamp("p", 2, 0)).await.expect("a new epoch starts at 0");
    assert!(matches!(
        append(&storage, values(1, "c"), stamp("p", 1, 1)).await,
        Err(StorageError::ProducerFenced { current: 2 })
    ));
    assert_eq!(storage.end("t", 0), 4, "refusals store nothing");
    append(&storage, values(1, "plain"), Conditions::default()).await.expect("a request without headers");
    assert_eq!(storage.end("t", 0), 5);
}

/// Retries queued together (one write round) are stored once and all answered its offsets.
#[tokio::test]
async fn repeats_in_one_write_round_are_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 1 << 20, 100)).expect("open");
    append(&storage, values(1, "warm"), Conditions::default()).await.expect("create");
    let sends = (0..8).map(|_| append(&storage, values(2, "x"), stamp("p", 0, 0)));
    let answers = futures_util::future::join_all(sends).await;
    let offsets: Vec<(u64, u32)> =
        answers.iter().map(|a| a.as_ref().map(|a| (a.base_offset, a.count)).expect("ok")).collect();
    assert!(offsets.iter().all(|o| *o == (1, 2)), "{offsets:?}");
    assert_eq!(answers.iter().filter(|a| a.as_ref().is_ok_and(|a| !a.duplicate)).count(), 1);
    assert_eq!(storage.end("t", 0), 3);
}

/// The state is in the log: a restart (with segments rolled, so from a snapshot) still knows
/// every producer; a cut below a request forgets it.
#[tokio::test]
async fn producers_survive_a_restart_and_a_cut_forgets_what_it_drops() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (storage, _) = Storage::open(config(dir.path(), 64 * 1024, 100)).expect("open");
        for seq in 0..200 {
            append(&storage, values(4, "r"), stamp("p", 0, seq)).await.expect("append");
        }
        append(&storage, values(1, "q"), stamp("q", 0, 0)).await.expect("append");
        storage.close().await;
    }
    let snapshots = std::fs::read_dir(dir.path().join("t/0"))
        .expect("dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "producers"))
        .count();
    assert!(snapshots >= 2, "a snapshot per rolled segment, found {snapshots}");
    let (storage, _) = Storage::open(config(dir.path(), 64 * 1024, 100)).expect("reopen");
    let again = append(&storage, values(4, "r"), stamp("p", 0, 199)).await.expect("repeat");
    assert_eq!((again.base_offset, again.duplicate), (796, true));
    let gap = append(&storage, values(1, "r"), stamp("p", 0, 201)).await;
    assert!(matches!(gap, Err(StorageError::SequenceGap { expected: 200 })), "{gap:?}");
    assert!(append(&storage, values(1, "q"), stamp("q", 0, 0)).await.expect("repeat").duplicate);

    // A copy cut to follow another leader drops q's request and the last of p's.
    storage.truncate("t", 0, 796).await.expect("cut");
    let stored = append(&storage, values(4, "r"), stamp("p", 0, 199)).await.expect("stored again");
    assert_eq!((stored.base_offset, stored.duplicate), (796, false));
    assert!(!append(&storage, values(1, "q"), stamp("q", 0, 0)).await.expect("q").duplicate);
}

/// A cut to the start of a log that retention shortened keeps the producers of the records
/// before it: their retries are repeats, not new records.
#[tokio::test]
async fn a_cut_to_a_retained_start_keeps_the_producers_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StorageConfig { retention_bytes: Some(64 * 1024), ..config(dir.path(), 64 * 1024, 100) };
    let (storage, _) = Storage::open(cfg).expect("open");
    for seq in 0..200 {
        append(&storage, values(4, "r"), stamp("p", 0, seq)).await.expect("append");
    }
    assert!(storage.enforce_retention().await.expect("retention") > 0);
    let (start, _) = storage.bounds("t", 0).expect("bounds");
    assert!(start > 0 && start % 4 == 0, "retention kept from {start}");
    let last_before = start / 4 - 1;
    storage.truncate("t", 0, start).await.expect("cut");
    let retry = append(&storage, values(4, "r"), stamp("p", 0, last_before)).await.expect("retry");
    assert!(retry.duplicate, "seq {last_before} was stored before {start}: {retry:?}");
    let next = append(&storage, values(4, "r"), stamp("p", 0, last_before + 1)).await.expect("next");
    assert_eq!((next.base_offset, next.duplicate), (start, false));
}

/// A copy writes the leader's stamps with the records, so as the next leader it refuses what
/// the old one stored.
#[tokio::test]
async fn a_copy_enforces_what_its_leader_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (leader, _) = Storage::open(config(&dir.path().join("leader"), 1 << 20, 100)).expect("open");
    let (copy, _) = Storage::open(config(&dir.path().join("copy"), 1 << 20, 100)).expect("open");
    append(&leader, values(1, "plain"), Conditions::default()).await.expect("plain");
    append(&leader, values(3, "a"), stamp("p", 0, 0)).await.expect("a");
    append(&leader, values(2, "b"), stamp("p", 0, 1)).await.expect("b");
    let read = leader.read("t", 0, 0, usize::MAX).await.expect("read");
    let runs = TimeRun::of(&read.records);
    assert_eq!(runs.iter().filter(|r| r.producer.is_some()).count(), 2, "{runs:?}");
    let text = TimeRun::format(&runs);
    let parsed = TimeRun::parse(&text, read.records.len()).expect("parse");
    let records: Vec<Bytes> = read.records.iter().map(|r| r.value.clone()).collect();
    copy.append_at("t", 0, 0, records, vec![EpochStart { epoch: 1, start: 0 }], &parsed).await.expect("copy");

    let repeat = match copy.append_pipelined("t", 0, values(2, "b"), 2, stamp("p", 0, 1)).await.expect("repeat") {
        Pipelined::Stored(appended) => appended,
        Pipelined::Promised { .. } => panic!("the new leader stored a repeat"),
    };
    assert_eq!((repeat.base_offset, repeat.count, repeat.duplicate), (4, 2, true));
    let copied = copy.read("t", 0, 0, usize::MAX).await.expect("read copy");
    assert_eq!(copied.records.len(), 6);
    let stamped: Vec<u64> = copied.records.iter().filter(|r| r.producer.is_some()).map(|r| r.offset).collect();
    assert_eq!(stamped, vec![3, 5], "each stamp on its request's last record");
    let first = copied.records[5].producer.as_ref().map(|p| (p.first, p.stamp.seq));
    assert_eq!(first, Some((4, 1)));
    let arc: Option<&Arc<ProducerWrite>> = copied.records[3].producer.as_ref();
    assert_eq!(arc.map(|p| p.first), Some(1));
}

#[tokio::test]
async fn the_least_recently_writing_producer_is_forgotten_at_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 1 << 20, 2)).expect("open");
    append(&storage, values(1, "a"), stamp("a", 0, 0)).await.expect("a");
    append(&storage, values(1, "b"), stamp("b", 0, 0)).await.expect("b");
    append(&storage, values(1, "a"), stamp("a", 0, 1)).await.expect("a again");
    append(&storage, values(1, "c"), stamp("c", 0, 0)).await.expect("c evicts b");
    assert!(append(&storage, values(1, "a"), stamp("a", 0, 1)).await.expect("a").duplicate, "a is kept");
    assert!(!append(&storage, values(1, "b"), stamp("b", 0, 0)).await.expect("b").duplicate, "b was forgotten");
}

/// Two writers racing with the same expected offset: exactly one is stored, the other told the end.
#[tokio::test]
async fn a_conditional_append_stores_only_at_the_expected_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 1 << 20, 100)).expect("open");
    append(&storage, values(2, "start"), Conditions::default()).await.expect("start");
    let at = |offset| Conditions { expected_offset: Some(offset), ..Conditions::default() };
    let (one, two) = tokio::join!(append(&storage, values(1, "one"), at(2)), append(&storage, values(1, "two"), at(2)));
    let outcomes = [one, two];
    assert_eq!(outcomes.iter().filter(|o| o.as_ref().is_ok_and(|a| a.base_offset == 2)).count(), 1);
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Err(StorageError::UnexpectedOffset { end: 3 }))).count(), 1);
    assert_eq!(storage.end("t", 0), 3);
}

/// A consumer's read stops at its bytes even inside an idempotent request; a copy's read takes
/// the request whole, so a copy never holds part of it.
#[tokio::test]
async fn only_a_copys_read_takes_an_idempotent_request_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(config(dir.path(), 1 << 20, 100)).expect("open");
    append(&storage, values(50, "big"), stamp("p", 0, 0)).await.expect("append");
    let consumer = storage.read("t", 0, 0, 1000).await.expect("read");
    assert!(consumer.records.len() < 50 && consumer.records.iter().all(|r| r.producer.is_none()));
    let copy = storage.read_keeping("t", 0, 0, 1000, Whole::Requests).await.expect("read");
    assert_eq!(copy.records.len(), 50);
    assert_eq!(copy.records[49].producer.as_ref().map(|p| (p.first, p.stamp.seq)), Some((0, 0)));
}
