//! Replication routes of the peer port: a follower's side of copying (end, replicate,
//! truncate), what a new leader asks of the other copies (fence, epoch end, read), and what
//! the controller asks of a broker (health, hand-over).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::leader::SEND_BYTES;
use crate::cluster::{decode_frames, encode_frames};
use crate::error::ApiError;
use crate::http::SharedState;
use crate::store::{validate_topic_name, EpochStart, StorageError};

/// Header carrying the leader epochs of the records in a body, as `epoch:start,…`.
pub const EPOCHS_HEADER: &str = "x-runnel-epochs";

pub fn router(app: SharedState) -> Router {
    Router::new()
        .route("/cluster/replicate/{topic}/{partition}", post(replicate))
        .route("/cluster/end/{topic}/{partition}", get(end))
        .route("/cluster/truncate/{topic}/{partition}", post(truncate))
        .route("/cluster/fence/{partition}", post(fence))
        .route("/cluster/epoch-end/{topic}/{partition}", get(epoch_end))
        .route("/cluster/read/{topic}/{partition}", get(read))
        .route("/cluster/health", get(health))
        .route("/cluster/handover/{partition}", post(handover))
        .layer(DefaultBodyLimit::max(crate::limits::PEER_BODY_LIMIT))
        .with_state(app)
}

/// Where a broker's copy of a topic partition ends, and the epoch of its newest record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyState {
    pub end: u64,
    pub last_epoch: u64,
}

pub fn format_epochs(epochs: &[EpochStart]) -> String {
    epochs.iter().map(|e| format!("{}:{}", e.epoch, e.start)).collect::<Vec<_>>().join(",")
}

pub fn parse_epochs(headers: &HeaderMap) -> Result<Vec<EpochStart>, ApiError> {
    let Some(value) = headers.get(EPOCHS_HEADER) else { return Ok(Vec::new()) };
    let text = value.to_str().map_err(|_| ApiError::BadRequest(format!("{EPOCHS_HEADER} is not text")))?;
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (epoch, start) = pair.split_once(':').unwrap_or((pair, ""));
            match (epoch.parse(), start.parse()) {
                (Ok(epoch), Ok(start)) => Ok(EpochStart { epoch, start }),
                _ => Err(ApiError::BadRequest(format!("bad {EPOCHS_HEADER} entry {pair:?}"))),
            }
        })
        .collect()
}

fn copy_state(app: &SharedState, topic: &str, partition: u32) -> CopyState {
    app.replication.local_state(topic, partition)
}

fn holds_copy(app: &SharedState, partition: u32) -> Result<(), ApiError> {
    if !app.replication.leadership().replicas(partition).contains(&app.peers.ordinal()) {
        return Err(ApiError::BadRequest(format!("this broker holds no replica of partition {partition}")));
    }
    Ok(())
}

fn check_replica(app: &SharedState, topic: &str, partition: u32) -> Result<(), ApiError> {
    validate_topic_name(topic)?;
    holds_copy(app, partition)
}

#[derive(Deserialize)]
struct CopyParams {
    base: u64,
    epoch: u64,
}

/// Stores records copied from the leader of `epoch` at exactly `base`: 409 with this copy's
/// state when it ends elsewhere, 412 when a newer leader was announced here.
async fn replicate(
    State(app): State<SharedState>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<CopyParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        check_replica(&app, &topic, partition)?;
        if !app.replication.leadership().accepts_copy(partition, params.epoch) {
            return Ok((StatusCode::PRECONDITION_FAILED, Json(copy_state(&app, &topic, partition))));
        }
        let epochs = parse_epochs(&headers)?;
        let records = decode_frames(&body).map_err(ApiError::BadRequest)?;
        match app.storage.append_at(&topic, partition, params.base, records, epochs).await {
            Ok(_) => Ok((StatusCode::OK, Json(copy_state(&app, &topic, partition)))),
            Err(StorageError::OffsetMismatch { .. }) => {
                Ok((StatusCode::CONFLICT, Json(copy_state(&app, &topic, partition))))
            }
            Err(e) => Err(ApiError::from(e)),
        }
    }
    .await;
    result.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

async fn end(
    State(app): State<SharedState>,
    Path((topic, partition)): Path<(String, u32)>,
) -> Result<Json<CopyState>, ApiError> {
    check_replica(&app, &topic, partition)?;
    Ok(Json(copy_state(&app, &topic, partition)))
}

#[derive(Deserialize)]
struct TruncateParams {
    to: u64,
    epoch: u64,
}

/// Cuts this copy at `to`, on behalf of the leader of `epoch`.
async fn truncate(
    State(app): State<SharedState>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<TruncateParams>,
) -> Result<Json<CopyState>, ApiError> {
    check_replica(&app, &topic, partition)?;
    if !app.replication.leadership().accepts_copy(partition, params.epoch) {
        return Err(ApiError::NotLeader(partition));
    }
    app.storage.truncate(&topic, partition, params.to).await?;
    Ok(Json(copy_state(&app, &topic, partition)))
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
    State(app): State<SharedState>,
    Path(partition): Path<u32>,
    Json(request): Json<FenceRequest>,
) -> Result<Json<FenceAnswer>, ApiError> {
    holds_copy(&app, partition)?;
    if !app.raft.has_caught_up() || !app.replication.leadership().fence(partition, request.epoch) {
        return Err(ApiError::NotLeader(partition));
    }
    let topics = app
        .storage
        .topics_with(partition)
        .into_iter()
        .map(|t| {
            let state = copy_state(&app, &t, partition);
            (t, state)
        })
        .collect();
    Ok(Json(FenceAnswer { topics }))
}

#[derive(Deserialize)]
struct EpochParams {
    epoch: u64,
}

/// Where records of `epoch` end in this copy, and where the copy ends.
#[derive(Serialize, Deserialize)]
pub struct EpochEnd {
    pub epoch_end: u64,
    pub end: u64,
}

async fn epoch_end(
    State(app): State<SharedState>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<EpochParams>,
) -> Result<Json<EpochEnd>, ApiError> {
    check_replica(&app, &topic, partition)?;
    Ok(Json(EpochEnd {
        epoch_end: app.storage.end_of_epoch(&topic, partition, params.epoch),
        end: app.storage.end(&topic, partition),
    }))
}

#[derive(Deserialize)]
struct ReadParams {
    from: u64,
}

/// Up to 1 MiB of records from `from`, framed, with their epochs in [`EPOCHS_HEADER`].
async fn read(
    State(app): State<SharedState>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<ReadParams>,
) -> Result<Response, ApiError> {
    check_replica(&app, &topic, partition)?;
    let read = app.storage.read(&topic, partition, params.from, SEND_BYTES).await?;
    // Retention may have removed `from`: then there is nothing this copy can give.
    let contiguous = read.records.first().is_some_and(|r| r.offset == params.from);
    let records: Vec<Bytes> = if contiguous { read.records.into_iter().map(|r| r.value).collect() } else { Vec::new() };
    let first = params.from;
    let epochs = app.storage.epochs_covering(&topic, partition, first, first + records.len() as u64);
    Ok(([(EPOCHS_HEADER, format_epochs(&epochs))], encode_frames(&records)).into_response())
}

/// What the controller needs to know about a broker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default)]
pub struct Health {
    /// Raft caught up: the broker can take partitions.
    pub ready: bool,
    /// Shutting down: it is handing its partitions over and must not get new ones.
    pub draining: bool,
}

async fn health(State(app): State<SharedState>) -> Json<Health> {
    Json(Health { ready: app.raft.is_ready(), draining: app.shutting_down() })
}

#[derive(Serialize, Deserialize)]
pub struct HandoverRequest {
    pub to: u32,
}

/// The controller asks this broker to hand `partition` to `to` once `to` caught up.
async fn handover(
    State(app): State<SharedState>,
    Path(partition): Path<u32>,
    Json(request): Json<HandoverRequest>,
) -> Result<StatusCode, ApiError> {
    app.replication.hand_over(partition, request.to).await?;
    Ok(StatusCode::NO_CONTENT)
}
