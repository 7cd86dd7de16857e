//! Replication routes of the peer port: a follower's side of copying (end, replicate,
//! truncate, restart), what a new leader asks of the other copies (fence, epoch end, read), and what
//! the controller asks of a broker (health, hand-over). The decisions are `copy_protocol`'s;
//! these handlers only carry them over HTTP, and answer errors as [`PeerError`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::copy_log::{CopyLog, CopyState, StoredCopy};
use super::copy_protocol::{cut_copy, store_copy, CopyRefusal, CopySource, EpochEnd};
use super::leader::Replication;
use crate::cluster::{decode_frames, encode_frames};
use crate::error::ApiError;
use crate::peer::PeerError;
use crate::store::{validate_topic_name, EpochStart, StorageError, TimeRun};

/// Header carrying the leader epochs of the records in a body, as `epoch:start,…`.
pub const EPOCHS_HEADER: &str = "x-runnel-epochs";
/// The append times of copied records, as [`TimeRun`] runs; absent from a broker of a version
/// before them (the copy then stamps its own clock).
pub const TIMES_HEADER: &str = "x-runnel-times";

/// The times in `headers` for `records` records (none given: none).
pub fn parse_times(headers: &HeaderMap, records: usize) -> Result<Vec<TimeRun>, String> {
    let Some(value) = headers.get(TIMES_HEADER) else { return Ok(Vec::new()) };
    let text = value.to_str().map_err(|_| format!("{TIMES_HEADER} is not text"))?;
    TimeRun::parse(text, records)
}

type Shared = State<Arc<Replication>>;

pub fn router(replication: Arc<Replication>) -> Router {
    Router::new()
        .route("/cluster/replicate/{topic}/{partition}", post(replicate))
        .route("/cluster/end/{topic}/{partition}", get(end))
        .route("/cluster/truncate/{topic}/{partition}", post(truncate))
        .route("/cluster/restart/{topic}/{partition}", post(restart))
        .route("/cluster/fence/{partition}", post(fence))
        .route("/cluster/epoch-end/{topic}/{partition}", get(epoch_end))
        .route("/cluster/read/{topic}/{partition}", get(read))
        .route("/cluster/health", get(health))
        .route("/cluster/handover/{partition}", post(handover))
        .layer(DefaultBodyLimit::max(crate::limits::PEER_BODY_LIMIT))
        .with_state(replication)
}

pub fn format_epochs(epochs: &[EpochStart]) -> String {
    epochs.iter().map(|e| format!("{}:{}", e.epoch, e.start)).collect::<Vec<_>>().join(",")
}

pub fn parse_epochs(headers: &HeaderMap) -> Result<Vec<EpochStart>, String> {
    let Some(value) = headers.get(EPOCHS_HEADER) else { return Ok(Vec::new()) };
    let text = value.to_str().map_err(|_| format!("{EPOCHS_HEADER} is not text"))?;
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (epoch, start) = pair.split_once(':').unwrap_or((pair, ""));
            match (epoch.parse(), start.parse()) {
                (Ok(epoch), Ok(start)) => Ok(EpochStart { epoch, start }),
                _ => Err(format!("bad {EPOCHS_HEADER} entry {pair:?}")),
            }
        })
        .collect()
}

/// This broker's copy of `topic`/`partition`, if the name is valid and it holds one.
fn replica<'a>(replication: &'a Replication, topic: &'a str, partition: u32) -> Result<StoredCopy<'a>, PeerError> {
    validate_topic_name(topic).map_err(|e| PeerError::BadRequest(e.to_string()))?;
    holds_copy(replication, partition)?;
    Ok(StoredCopy { storage: &replication.storage, topic, partition })
}

fn holds_copy(replication: &Replication, partition: u32) -> Result<(), PeerError> {
    let leadership = replication.leadership();
    if !leadership.replicas(partition).contains(&leadership.me()) {
        return Err(PeerError::NotReplica(partition));
    }
    Ok(())
}

fn state_details(state: CopyState) -> serde_json::Value {
    serde_json::to_value(state).unwrap_or_default()
}

impl From<CopyRefusal> for PeerError {
    fn from(refusal: CopyRefusal) -> PeerError {
        match refusal {
            CopyRefusal::Stale(state) => PeerError::StaleEpoch { details: state_details(state) },
            CopyRefusal::Mismatch(state) => PeerError::OffsetMismatch { details: state_details(state) },
            CopyRefusal::Storage(e) => storage_error(e),
        }
    }
}

fn storage_error(e: StorageError) -> PeerError {
    match e {
        StorageError::InvalidTopic(reason) => PeerError::BadRequest(reason),
        StorageError::Closed => PeerError::Unavailable("the broker is shutting down".into()),
        // The leader sees this copy lagging and sends again later.
        StorageError::DiskFull { .. } | StorageError::BelowReserve { .. } => {
            PeerError::InsufficientStorage(e.to_string())
        }
        other if other.is_out_of_space() => PeerError::InsufficientStorage(other.to_string()),
        StorageError::TooManyOpenFiles { .. } => PeerError::Unavailable(e.to_string()),
        other => PeerError::Internal(other.to_string()),
    }
}

#[derive(Deserialize)]
struct CopyParams {
    base: u64,
    epoch: u64,
}

/// Stores records copied from the leader of `epoch` at exactly `base`; 409 with this copy's
/// state when it ends elsewhere, 412 when a newer leader is known here.
async fn replicate(
    State(replication): Shared,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<CopyParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CopyState>, PeerError> {
    let copy = replica(&replication, &topic, partition)?;
    let epochs = parse_epochs(&headers).map_err(PeerError::BadRequest)?;
    let records = decode_frames(&body).map_err(PeerError::BadRequest)?;
    let times = parse_times(&headers, records.len()).map_err(PeerError::BadRequest)?;
    let view = replication.leadership().view(partition);
    Ok(Json(store_copy(&copy, view, (params.base, params.epoch), epochs, (records, times)).await?))
}

async fn end(
    State(replication): Shared,
    Path((topic, partition)): Path<(String, u32)>,
) -> Result<Json<CopyState>, PeerError> {
    Ok(Json(replica(&replication, &topic, partition)?.state()))
}

#[derive(Deserialize)]
struct TruncateParams {
    to: u64,
    epoch: u64,
}

/// Cuts this copy at `to`, on behalf of the leader of `epoch`.
async fn truncate(
    State(replication): Shared,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<TruncateParams>,
) -> Result<Json<CopyState>, PeerError> {
    let copy = replica(&replication, &topic, partition)?;
    let view = replication.leadership().view(partition);
    Ok(Json(cut_copy(&copy, view, params.to, params.epoch).await?))
}

#[derive(Deserialize)]
struct RestartParams {
    at: u64,
    epoch: u64,
}

/// Starts this copy again, empty, at `at`, on behalf of the leader of `epoch`, whose
/// retention deleted the records after this copy's end (see [`crate::store::Storage::restart_at`]).
async fn restart(
    State(replication): Shared,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<RestartParams>,
) -> Result<Json<CopyState>, PeerError> {
    let copy = replica(&replication, &topic, partition)?;
    if !replication.leadership().view(partition).accepts_copy(params.epoch) {
        return Err(CopyRefusal::Stale(copy.state()).into());
    }
    replication.storage.restart_at(&topic, partition, params.at).await.map_err(storage_error)?;
    Ok(Json(copy.state()))
}

#[derive(Serialize, Deserialize)]
pub struct FenceRequest {
    pub epoch: u64,
}

/// What a fenced copy holds: every topic's state for the partition.
#[derive(Serialize, Deserialize, Default)]
pub struct FenceAnswer {
    pub topics: BTreeMap<String, CopyState>,
}

/// A new leader announces its epoch: from now on this broker refuses copies from older
/// leaders, and answers what it holds so the new leader can take what it lacks.
async fn fence(
    State(replication): Shared,
    Path(partition): Path<u32>,
    Json(request): Json<FenceRequest>,
) -> Result<Json<FenceAnswer>, PeerError> {
    holds_copy(&replication, partition)?;
    if !replication.leadership().fence(partition, request.epoch) {
        let view = replication.leadership().view(partition);
        let known = serde_json::json!({"epoch": view.current.epoch.max(view.fenced)});
        return Err(PeerError::StaleEpoch { details: known });
    }
    let topics = replication
        .storage
        .topics_with(partition)
        .into_iter()
        .map(|topic| {
            let state = StoredCopy { storage: &replication.storage, topic: &topic, partition }.state();
            (topic, state)
        })
        .collect();
    Ok(Json(FenceAnswer { topics }))
}

#[derive(Deserialize)]
struct EpochParams {
    epoch: u64,
}

async fn epoch_end(
    State(replication): Shared,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<EpochParams>,
) -> Result<Json<EpochEnd>, PeerError> {
    let copy = replica(&replication, &topic, partition)?;
    Ok(Json(copy.epoch_end(params.epoch).await.map_err(PeerError::Internal)?))
}

#[derive(Deserialize)]
struct ReadParams {
    from: u64,
}

/// Up to 1 MiB of records from `from`, framed, with their epochs in [`EPOCHS_HEADER`]; none
/// when retention removed `from` (nothing this copy can give).
async fn read(
    State(replication): Shared,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<ReadParams>,
) -> Result<Response, PeerError> {
    let copy = replica(&replication, &topic, partition)?;
    let copied = copy.read_from(params.from).await.map_err(PeerError::Internal)?;
    let headers = [(EPOCHS_HEADER, format_epochs(&copied.epochs)), (TIMES_HEADER, TimeRun::format(&copied.times))];
    Ok((headers, encode_frames(&copied.records)).into_response())
}

/// What the controller needs to know about a broker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default)]
pub struct Health {
    /// Raft caught up: the broker can take partitions.
    pub ready: bool,
    /// Shutting down: it is handing its partitions over and must not get new ones.
    pub draining: bool,
}

/// A broker configured for another ring than the agreed one answers no health at all: to the
/// controller it is gone, so the partitions it leads fail over and it is given none.
async fn health(State(replication): Shared) -> Result<Json<Health>, PeerError> {
    if let Some(why) = replication.ring_conflict() {
        return Err(PeerError::Unavailable(why));
    }
    Ok(Json(Health { ready: replication.leadership().raft().is_ready(), draining: replication.draining() }))
}

#[derive(Serialize, Deserialize)]
pub struct HandoverRequest {
    pub to: u32,
}

/// The controller asks this broker to hand `partition` to `to` once `to` caught up.
async fn handover(
    State(replication): Shared,
    Path(partition): Path<u32>,
    Json(request): Json<HandoverRequest>,
) -> Result<StatusCode, PeerError> {
    replication.hand_over(partition, request.to).await.map_err(|e| match e {
        ApiError::BadRequest(reason) => PeerError::BadRequest(reason),
        other => PeerError::Unavailable(other.to_string()),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
