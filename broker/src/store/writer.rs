//! Group commit: one writer task per partition. Requests that arrive while a write+fsync is
//! running queue up in the channel; the next round writes all of them and covers them with
//! a single fsync.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::partition_log::PartitionLog;
use super::{Appended, FsyncObserver, StorageError};

/// Requests waiting for one partition's writer; beyond this, appends wait (back-pressure).
pub const QUEUE_DEPTH: usize = 1024;
/// Most record bytes written in one round, so one round's buffer stays bounded.
const MAX_ROUND_BYTES: usize = 32 * 1024 * 1024;

pub struct AppendRequest {
    pub records: Vec<Bytes>,
    /// Only append if the partition ends exactly here (checked in order within the round,
    /// and this task is the partition's only writer, so the check cannot race).
    pub expected_base: Option<u64>,
    pub reply: oneshot::Sender<Result<Appended, StorageError>>,
}

pub async fn run(
    log: Arc<PartitionLog>,
    mut queue: mpsc::Receiver<AppendRequest>,
    observer: Arc<dyn Fn() -> Option<FsyncObserver> + Send + Sync>,
) {
    while let Some(first) = queue.recv().await {
        let mut size = first.records.iter().map(Bytes::len).sum::<usize>();
        let mut round = vec![first];
        while size < MAX_ROUND_BYTES {
            match queue.try_recv() {
                Ok(next) => {
                    size += next.records.iter().map(Bytes::len).sum::<usize>();
                    round.push(next);
                }
                Err(_) => break,
            }
        }
        let mut end = log.bounds().1;
        let mut accepted = Vec::with_capacity(round.len());
        for request in round {
            match request.expected_base {
                Some(base) if base != end => {
                    let _ = request.reply.send(Err(StorageError::OffsetMismatch { end }));
                }
                _ => {
                    end += request.records.len() as u64;
                    accepted.push(request);
                }
            }
        }
        if accepted.is_empty() {
            continue;
        }
        let (batches, replies): (Vec<Vec<Bytes>>, Vec<_>) = accepted.into_iter().map(|r| (r.records, r.reply)).unzip();
        let timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let writer = log.clone();
        let outcome = tokio::task::spawn_blocking(move || writer.append_batches(&batches, timestamp_ms)).await;
        let mut results = match outcome {
            Ok(round) => {
                if let Some(observe) = observer() {
                    round.fsyncs.iter().for_each(|d| observe(*d));
                }
                round.results.into_iter()
            }
            Err(e) => {
                tracing::error!(topic = %log.topic, partition = log.partition, "writer thread failed: {e}");
                Vec::new().into_iter()
            }
        };
        for reply in replies {
            let result = results.next().unwrap_or_else(|| {
                Err(StorageError::Io {
                    op: "append",
                    path: Default::default(),
                    source: std::io::Error::other("the write round was aborted"),
                })
            });
            // The requester may have gone away (client disconnected); the data is stored anyway.
            let _ = reply.send(result);
        }
    }
}
