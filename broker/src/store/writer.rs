//! Group commit: one writer task per partition. Requests that arrive while a write+fsync is
//! running queue up in the channel; the next round writes all of them and covers them with
//! a single fsync.

use std::fs::File;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::leader_epochs::EpochStart;
use super::partition_log::{fits_a_batch, PartitionLog};
use super::{Appended, FsyncObserver, StorageError, MAX_BATCH_BODY};

/// Requests waiting for one partition's writer; beyond this, appends wait (back-pressure).
pub const QUEUE_DEPTH: usize = 1024;
/// Most record bytes written in one round, so one round's buffer stays bounded.
const MAX_ROUND_BYTES: usize = 32 * 1024 * 1024;

/// What the partition's writer task is asked to do; it does one thing at a time, so checks
/// against the log's end cannot race.
pub enum WriterRequest {
    Append(AppendRequest),
    Truncate { to: u64, reply: oneshot::Sender<Result<u64, StorageError>> },
}

pub struct AppendRequest {
    pub records: Vec<Bytes>,
    pub epoch: EpochMark,
    /// Told the base offset as soon as the request is accepted, before the write and fsync.
    pub assigned: Option<oneshot::Sender<u64>>,
    pub reply: oneshot::Sender<Result<Appended, StorageError>>,
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
            WriterRequest::Truncate { to, reply } => {
                let writer = log.clone();
                let outcome = tokio::task::spawn_blocking(move || writer.truncate(to)).await;
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
                Ok(truncate) => {
                    held = Some(truncate);
                    break;
                }
                Err(_) => break,
            }
        }
        write_round(&log, round, observer.as_ref()).await;
    }
}

/// Checks each request against the log's end, epoch and the batch bound (in queue order),
/// promises the accepted ones their offsets, then writes them with one fsync, after recording
/// any new epoch they start.
///
/// Invariant: after the round, every accepted request was written at the offset it was
/// promised (`assigned == written`), or the partition is failed, so a leader never has
/// followers holding, in its epoch, records it does not hold itself at those offsets.
async fn write_round(
    log: &Arc<PartitionLog>,
    round: Vec<AppendRequest>,
    observer: &(dyn Fn() -> Option<FsyncObserver> + Send + Sync),
) {
    // Held until the round is written, so the active segment's file cannot be closed under
    // it: out of files, the round is refused here, before any offset is promised.
    let _active = match hold_active(log).await {
        Ok(file) => file,
        Err(e) => {
            for request in round {
                let _ = request.reply.send(Err(refusal(&e)));
            }
            return;
        }
    };
    let mut end = log.bounds().1;
    let mut last_epoch = log.last_epoch();
    let mut new_epochs: Vec<EpochStart> = Vec::new();
    let mut promised: Vec<u64> = Vec::with_capacity(round.len());
    let mut accepted = Vec::with_capacity(round.len());
    for request in round {
        if log.is_failed() {
            let _ = request.reply.send(Err(log.failed_error()));
            continue;
        }
        if !fits_a_batch(&request.records) {
            let _ = request.reply.send(Err(StorageError::BatchSize { max: MAX_BATCH_BODY }));
            continue;
        }
        match &request.epoch {
            EpochMark::Leader(epoch) if *epoch < last_epoch => {
                let _ = request.reply.send(Err(StorageError::StaleEpoch { epoch: *epoch, current: last_epoch }));
                continue;
            }
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
        if let Some(assigned) = request.assigned.take() {
            let _ = assigned.send(end);
        }
        promised.push(end);
        end += request.records.len() as u64;
        accepted.push(request);
    }
    if accepted.is_empty() {
        return;
    }
    let (batches, replies): (Vec<Vec<Bytes>>, Vec<_>) = accepted.into_iter().map(|r| (r.records, r.reply)).unzip();
    let timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let writer = log.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        writer.record_epochs(&new_epochs)?;
        Ok::<_, StorageError>(writer.append_batches(&batches, timestamp_ms))
    })
    .await;
    let results = match outcome {
        Ok(Err(e)) => {
            log.fail(&format!("could not record a new leader epoch: {e}"));
            Vec::new()
        }
        Ok(Ok(round)) => {
            if let Some(observe) = observer() {
                round.fsyncs.iter().for_each(|d| observe(*d));
            }
            round.results
        }
        Err(e) => {
            log.fail(&format!("the writer thread failed: {e}"));
            Vec::new()
        }
    };
    let mut results = results.into_iter();
    for (reply, promised) in replies.into_iter().zip(promised) {
        let result = match results.next() {
            Some(Ok(appended)) if appended.base_offset == promised => Ok(appended),
            Some(Ok(appended)) => {
                log.fail(&format!("a batch promised offset {promised} was written at {}", appended.base_offset));
                Err(log.failed_error())
            }
            Some(Err(e)) => {
                log.fail(&format!("a batch promised offset {promised} was not written: {e}"));
                Err(e)
            }
            None => Err(aborted("the write round was aborted".into())),
        };
        // The requester may have gone away (client disconnected); the data is stored anyway.
        let _ = reply.send(result);
    }
}

async fn hold_active(log: &Arc<PartitionLog>) -> Result<Option<Arc<File>>, StorageError> {
    let holder = log.clone();
    tokio::task::spawn_blocking(move || holder.hold_active()).await.unwrap_or_else(|e| Err(aborted(e.to_string())))
}

/// `e` again, for each request of a refused round.
fn refusal(e: &StorageError) -> StorageError {
    match e {
        StorageError::TooManyOpenFiles { op, path } => StorageError::TooManyOpenFiles { op, path: path.clone() },
        other => aborted(other.to_string()),
    }
}

fn aborted(reason: String) -> StorageError {
    StorageError::Io { op: "append", path: Default::default(), source: std::io::Error::other(reason) }
}
