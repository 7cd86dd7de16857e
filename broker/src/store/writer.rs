//! Group commit: one writer task per partition. Requests that arrive while a write+fsync is
//! running queue up in the channel; the next round writes all of them and covers them with
//! a single fsync.

use std::fs::File;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::disk::DiskSpace;
use super::leader_epochs::EpochStart;
use super::partition_log::{fits_a_batch, NewBatch, PartitionLog};
use super::producers::{ProducerStamp, ProducerWrite, Verdict};
use super::{Appended, FsyncObserver, StorageError, MAX_BATCH_BODY};

/// Requests waiting for one partition's writer; beyond this, appends wait (back-pressure).
pub const QUEUE_DEPTH: usize = 1024;
/// Most record bytes written in one round, so one round's buffer stays bounded.
const MAX_ROUND_BYTES: usize = 32 * 1024 * 1024;

/// What the partition's writer task is asked to do; it does one thing at a time, so checks
/// against the log's end cannot race.
pub enum WriterRequest {
    Append(AppendRequest),
    /// A change of the log's extent, made between write rounds; answers the new end.
    Cut {
        cut: LogCut,
        reply: oneshot::Sender<Result<u64, StorageError>>,
    },
}

/// How a copy's log is cut to follow its leader.
pub enum LogCut {
    /// Drop every record at or after this offset.
    Truncate(u64),
    /// Drop everything and start again, empty, at this offset.
    RestartAt(u64),
}

pub struct AppendRequest {
    pub records: Vec<Bytes>,
    pub epoch: EpochMark,
    /// The append time the partition's leader gave these records (a copy's), if it said; the
    /// writer's clock otherwise. Either way no earlier than the log's newest record.
    pub timestamp: Option<i64>,
    /// The ring token of the request's partition key, stored with the batch.
    pub key_token: Option<i64>,
    /// Told the base offset and append time as soon as the request is accepted, before the
    /// write and fsync (a leader sends both to its followers meanwhile). Never told for a
    /// request answered without being written (a duplicate).
    pub assigned: Option<oneshot::Sender<(u64, i64)>>,
    pub producer: ProducerMark,
    /// Stored only if the log ends here (a leader's conditional append).
    pub expected_offset: Option<u64>,
    pub reply: oneshot::Sender<Result<Appended, StorageError>>,
}

/// What an append says of the idempotent producer that sent it.
pub enum ProducerMark {
    None,
    /// A leader's request: checked against the producer's state, stored at most once.
    Leader(ProducerStamp),
    /// A copy of what the leader stored (the records end its request): recorded, not checked.
    Copied(ProducerWrite),
}

/// The leader epoch the records belong to.
pub enum EpochMark {
    /// Written by the partition's leader in this epoch; an older epoch than the log's last is refused.
    Leader(u64),
    /// Copied from the leader: appended only if the log ends exactly at `base`, labelled with
    /// the leader's epochs for the range.
    Replica { base: u64, epochs: Vec<EpochStart> },
}

pub async fn run(
    log: Arc<PartitionLog>,
    mut queue: mpsc::Receiver<WriterRequest>,
    observer: Arc<dyn Fn() -> Option<FsyncObserver> + Send + Sync>,
    space: DiskSpace,
) {
    let mut held: Option<WriterRequest> = None;
    loop {
        let first = match held.take() {
            Some(request) => request,
            None => match queue.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let first = match first {
            WriterRequest::Cut { cut, reply } => {
                let writer = log.clone();
                let outcome = tokio::task::spawn_blocking(move || match cut {
                    LogCut::Truncate(to) => writer.truncate(to),
                    LogCut::RestartAt(at) => writer.restart_at(at),
                })
                .await;
                let _ = reply.send(outcome.unwrap_or_else(|e| Err(aborted(e.to_string()))));
                continue;
            }
            WriterRequest::Append(append) => append,
        };
        let mut size = first.records.iter().map(Bytes::len).sum::<usize>();
        let mut round = vec![first];
        while size < MAX_ROUND_BYTES {
            match queue.try_recv() {
                Ok(WriterRequest::Append(next)) => {
                    size += next.records.iter().map(Bytes::len).sum::<usize>();
                    round.push(next);
                }
                Ok(cut) => {
                    held = Some(cut);
                    break;
                }
                Err(_) => break,
            }
        }
        let Some(unwritten) = write_round(&log, round, observer.as_ref()).await else { continue };
        match finish_unwritten(&log, unwritten, held.take(), &mut queue, observer.as_ref(), &space).await {
            Resume::Next(request) => held = request,
            Resume::Closed => return,
        }
    }
}

/// Records the writer promised offsets to and could not write yet for lack of space.
struct Unwritten {
    /// New epochs to record before the records (empty once recorded).
    epochs: Vec<EpochStart>,
    batches: Vec<NewBatch>,
    /// Where each batch must start.
    promised: Vec<u64>,
}

/// How the writer goes on after [`finish_unwritten`].
enum Resume {
    /// As usual, with this request first if there is one.
    Next(Option<WriterRequest>),
    /// The store is closing.
    Closed,
}

/// How long a partition whose write found the disk full waits before it tries again.
const SPACE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes `unwritten` once space is back, trying every [`SPACE_RETRY`], and refuses every
/// append meanwhile (507): nothing may land at the offsets it was promised, which followers
/// may already hold. A cut (`cut`, or one that arrives: this copy follows another leader)
/// drops it instead: it was never acknowledged, and the leader's epoch history decides what
/// the copies keep.
async fn finish_unwritten(
    log: &Arc<PartitionLog>,
    mut unwritten: Unwritten,
    mut cut: Option<WriterRequest>,
    queue: &mut mpsc::Receiver<WriterRequest>,
    observer: &(dyn Fn() -> Option<FsyncObserver> + Send + Sync),
    space: &DiskSpace,
) -> Resume {
    let records = |u: &Unwritten| u.batches.iter().map(|b| b.records.len()).sum::<usize>();
    tracing::warn!(topic = %log.topic, partition = log.partition, records = records(&unwritten),
        "the disk is full: the partition refuses writes until it has written the records it already placed");
    space.set_stalled(true);
    let resume = loop {
        let interrupted = match cut.take() {
            Some(cut) => Some(Resume::Next(Some(cut))),
            None => refuse_until_retry(log, queue, space).await,
        };
        if let Some(Resume::Next(cut)) = interrupted {
            tracing::info!(topic = %log.topic, partition = log.partition, records = records(&unwritten),
                "the partition is cut to follow its leader: dropping the records the full disk kept from being written");
            log.forget_unwritten_producers();
            break Resume::Next(cut);
        }
        // The active segment's file held through the write, as a round's is (see `write_round`);
        // out of open files as well, the next retry tries again.
        let Ok(_active) = hold_active(log).await else {
            if let Some(closing) = interrupted {
                break closing;
            }
            continue;
        };
        match (write(log, unwritten, observer).await.1, interrupted) {
            (None, closing) => {
                if !log.is_failed() {
                    tracing::info!(topic = %log.topic, partition = log.partition,
                        "wrote the records the full disk had held back: the partition accepts writes again");
                }
                break closing.unwrap_or(Resume::Next(None));
            }
            (Some(left), Some(closing)) => {
                tracing::warn!(topic = %log.topic, partition = log.partition, records = records(&left),
                    "closing with records the full disk kept from being written (never acknowledged)");
                break closing;
            }
            (Some(left), None) => unwritten = left,
        }
    };
    space.set_stalled(false);
    resume
}

/// Answers appends with [`StorageError::DiskFull`] until the next retry is due (None), a
/// cut arrives or the store closes.
async fn refuse_until_retry(
    log: &PartitionLog,
    queue: &mut mpsc::Receiver<WriterRequest>,
    space: &DiskSpace,
) -> Option<Resume> {
    let retry = tokio::time::sleep(SPACE_RETRY);
    tokio::pin!(retry);
    loop {
        tokio::select! {
            _ = &mut retry => return None,
            request = queue.recv() => match request {
                Some(WriterRequest::Append(append)) => {
                    space.count_refusal();
                    let _ = append.reply.send(Err(log.out_of_space()));
                }
                Some(cut) => return Some(Resume::Next(Some(cut))),
                None => return Some(Resume::Closed),
            },
        }
    }
}

/// Checks each request against the log's end, epoch and the batch bound (in queue order),
/// promises the accepted ones their offsets, then writes them with one fsync, after recording
/// any new epoch they start. Returns what it could not write for lack of space.
///
/// Invariant: after the round, every accepted request was written at the offset it was
/// promised (`assigned == written`), or is returned to be written there before anything
/// else, or the partition is failed, so a leader never has followers holding, in its epoch,
/// records it does not hold itself at those offsets.
async fn write_round(
    log: &Arc<PartitionLog>,
    round: Vec<AppendRequest>,
    observer: &(dyn Fn() -> Option<FsyncObserver> + Send + Sync),
) -> Option<Unwritten> {
    // Held until the round is written, so the active segment's file cannot be closed under
    // it: out of files, the round is refused here, before any offset is promised.
    let _active = match hold_active(log).await {
        Ok(file) => file,
        Err(e) => {
            for request in round {
                let _ = request.reply.send(Err(refusal(&e)));
            }
            return None;
        }
    };
    let mut end = log.bounds().1;
    let mut last_epoch = log.last_epoch();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    // A clock set back must not make time go backwards in the log: reads by time rely on it.
    let mut last_time = log.last_timestamp();
    let mut new_epochs: Vec<EpochStart> = Vec::new();
    let mut promised: Vec<u64> = Vec::with_capacity(round.len());
    let mut accepted = Vec::with_capacity(round.len());
    // Repeats of requests accepted earlier in this round: answered as those are, once written.
    let mut repeats: Vec<(usize, oneshot::Sender<Result<Appended, StorageError>>)> = Vec::new();
    let round_start = end;
    for request in round {
        if log.is_failed() {
            let _ = request.reply.send(Err(log.failed_error()));
            continue;
        }
        if !fits_a_batch(&request.records) {
            let _ = request.reply.send(Err(StorageError::BatchSize { max: MAX_BATCH_BODY }));
            continue;
        }
        if let EpochMark::Leader(epoch) = &request.epoch {
            if *epoch < last_epoch {
                let _ = request.reply.send(Err(StorageError::StaleEpoch { epoch: *epoch, current: last_epoch }));
                continue;
            }
        }
        let stamp = match &request.producer {
            ProducerMark::None => None,
            // A request starts at or before the batch that ends it, never before the log.
            ProducerMark::Copied(write) if write.first > end || write.first < log.bounds().0 => {
                let _ = request.reply.send(Err(StorageError::OffsetMismatch { end }));
                continue;
            }
            ProducerMark::Copied(write) => Some(write.clone()),
            ProducerMark::Leader(stamp) => match log.producers().check(stamp) {
                Verdict::Append => Some(ProducerWrite { stamp: stamp.clone(), first: end }),
                Verdict::Duplicate(Some(original)) if original.base_offset >= round_start => {
                    match promised.iter().position(|p| *p == original.base_offset) {
                        Some(i) => repeats.push((i, request.reply)),
                        None => {
                            let _ = request.reply.send(Err(aborted("a repeat of a request this round lost".into())));
                        }
                    }
                    continue;
                }
                Verdict::Duplicate(original) => {
                    // Offsets no longer kept: somewhere before the end, which a majority must
                    // reach before the repeat is answered (an empty range there).
                    let unknown = Appended { base_offset: end, count: 0, duplicate: true };
                    let _ = request.reply.send(Ok(original.unwrap_or(unknown)));
                    continue;
                }
                Verdict::Gap { expected } => {
                    let _ = request.reply.send(Err(StorageError::SequenceGap { expected }));
                    continue;
                }
                Verdict::Fenced { current } => {
                    let _ = request.reply.send(Err(StorageError::ProducerFenced { current }));
                    continue;
                }
            },
        };
        if request.expected_offset.is_some_and(|expected| expected != end) {
            let _ = request.reply.send(Err(StorageError::UnexpectedOffset { end }));
            continue;
        }
        match &request.epoch {
            EpochMark::Leader(epoch) => {
                if *epoch > last_epoch {
                    new_epochs.push(EpochStart { epoch: *epoch, start: end });
                    last_epoch = *epoch;
                }
            }
            EpochMark::Replica { base, .. } if *base != end => {
                let _ = request.reply.send(Err(StorageError::OffsetMismatch { end }));
                continue;
            }
            EpochMark::Replica { epochs, .. } => {
                for entry in epochs {
                    if entry.epoch > last_epoch {
                        new_epochs.push(EpochStart { epoch: entry.epoch, start: entry.start.max(end) });
                        last_epoch = entry.epoch;
                    }
                }
            }
        }
        let mut request = request;
        let time = request.timestamp.unwrap_or(now_ms).max(last_time);
        last_time = time;
        if let Some(assigned) = request.assigned.take() {
            let _ = assigned.send((end, time));
        }
        request.timestamp = Some(time);
        promised.push(end);
        end += request.records.len() as u64;
        // Recorded when promised: a promised request is written there, or held to be, or the
        // partition fails (and a restart rebuilds the table from the log); a cut rebuilds it too.
        if let Some(write) = &stamp {
            log.producers().apply(write, end);
        }
        accepted.push((request, stamp));
    }
    if accepted.is_empty() {
        return None;
    }
    let (batches, replies): (Vec<NewBatch>, Vec<_>) = accepted
        .into_iter()
        .map(|(r, stamp)| {
            let timestamp_ms = r.timestamp.unwrap_or(now_ms);
            (NewBatch { records: r.records, timestamp_ms, key_token: r.key_token, stamp }, r.reply)
        })
        .unzip();
    let (results, unwritten) = write(log, Unwritten { epochs: new_epochs, batches, promised }, observer).await;
    let mut results = results.into_iter();
    let mut answered: Vec<Result<Appended, StorageError>> = Vec::with_capacity(replies.len());
    for reply in replies {
        let result = results.next().unwrap_or_else(|| Err(aborted("the write round was aborted".into())));
        answered.push(result.as_ref().map(|a| *a).map_err(refusal));
        // The requester may have gone away (client disconnected); the data is stored anyway.
        let _ = reply.send(result);
    }
    for (original, reply) in repeats {
        let result = match &answered[original] {
            Ok(appended) => Ok(Appended { duplicate: true, ..*appended }),
            Err(e) => Err(refusal(e)),
        };
        let _ = reply.send(result);
    }
    unwritten
}

/// Writes the batches at the offsets promised, recording their new epochs first: each
/// batch's outcome, and the batches left for lack of space (a suffix). Any other failure,
/// or a batch written elsewhere than promised, fails the partition.
async fn write(
    log: &Arc<PartitionLog>,
    unwritten: Unwritten,
    observer: &(dyn Fn() -> Option<FsyncObserver> + Send + Sync),
) -> (Vec<Result<Appended, StorageError>>, Option<Unwritten>) {
    let Unwritten { epochs, batches, promised } = unwritten;
    let writer = log.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let round = writer.record_epochs(&epochs).map(|()| writer.append_batches(&batches));
        (round, epochs, batches)
    })
    .await;
    let count = promised.len();
    let every = |error: &dyn Fn() -> StorageError| (0..count).map(|_| Err(error())).collect::<Vec<_>>();
    let (round, epochs, mut batches) = match outcome {
        Ok(done) => done,
        Err(e) => {
            log.fail(&format!("the writer thread failed: {e}"));
            return (every(&|| log.failed_error()), None);
        }
    };
    let round = match round {
        Ok(round) => round,
        Err(e) if e.is_out_of_space() => {
            return (every(&|| log.out_of_space()), Some(Unwritten { epochs, batches, promised }));
        }
        Err(e) => {
            log.fail(&format!("could not record a new leader epoch: {e}"));
            return (every(&|| log.failed_error()), None);
        }
    };
    if let Some(observe) = observer() {
        round.fsyncs.iter().for_each(|d| observe(*d));
    }
    let mut left_from: Option<usize> = None;
    let mut results = Vec::with_capacity(promised.len());
    for (i, (result, &promised)) in round.results.into_iter().zip(&promised).enumerate() {
        results.push(match result {
            Ok(appended) if appended.base_offset == promised => Ok(appended),
            Ok(appended) => {
                log.fail(&format!("a batch promised offset {promised} was written at {}", appended.base_offset));
                Err(log.failed_error())
            }
            Err(e @ StorageError::DiskFull { .. }) => {
                left_from.get_or_insert(i);
                Err(e)
            }
            Err(e) => {
                log.fail(&format!("a batch promised offset {promised} was not written: {e}"));
                Err(e)
            }
        });
    }
    let left = left_from.filter(|_| !log.is_failed()).map(|from| Unwritten {
        epochs: Vec::new(),
        batches: batches.split_off(from),
        promised: promised[from..].to_vec(),
    });
    (results, left)
}

async fn hold_active(log: &Arc<PartitionLog>) -> Result<Option<Arc<File>>, StorageError> {
    // Open already (nearly always): no trip to a blocking thread for it.
    if let Some(file) = log.active_if_open() {
        return Ok(Some(file));
    }
    let holder = log.clone();
    tokio::task::spawn_blocking(move || holder.hold_active()).await.unwrap_or_else(|e| Err(aborted(e.to_string())))
}

/// `e` again, for another request it refused (each of a refused round; a repeat of a request).
fn refusal(e: &StorageError) -> StorageError {
    match e {
        StorageError::TooManyOpenFiles { op, path } => StorageError::TooManyOpenFiles { op, path: path.clone() },
        StorageError::DiskFull { topic, partition } => {
            StorageError::DiskFull { topic: topic.clone(), partition: *partition }
        }
        StorageError::Poisoned { topic, partition } => {
            StorageError::Poisoned { topic: topic.clone(), partition: *partition }
        }
        other => aborted(other.to_string()),
    }
}

fn aborted(reason: String) -> StorageError {
    StorageError::Io { op: "append", path: Default::default(), source: std::io::Error::other(reason) }
}
