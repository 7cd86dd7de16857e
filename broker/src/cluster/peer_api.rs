//! Broker-to-broker routes of the peer port (besides Raft's own): joining, forwarded
//! produces, consumer activity for the inactivity timeout, and new registrations (applied here
//! before the registering broker answers, and a new group's start positions).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::formation::{ClusterInfo, JoinRequest};
use crate::cluster_state::OffsetCommit;
use crate::error::ApiError;
use crate::http::SharedState;
use crate::store::validate_topic_name;

pub fn router(app: SharedState) -> Router {
    Router::new()
        .route("/cluster/info", get(info))
        .route("/cluster/join", post(join))
        .route("/cluster/produce/{topic}/{partition}", post(produce))
        .route("/cluster/activity", post(activity))
        .route("/cluster/registered", post(registered))
        .route("/cluster/positions", post(positions))
        .layer(DefaultBodyLimit::max(crate::limits::PEER_BODY_LIMIT))
        .with_state(app)
}

async fn info(State(app): State<SharedState>) -> Json<ClusterInfo> {
    Json(ClusterInfo { initialized: app.raft.is_initialized(), leader: app.raft.leader_addr() })
}

/// Adds the broker when this one leads; otherwise passes the request to the leader.
async fn join(State(app): State<SharedState>, Json(request): Json<JoinRequest>) -> Result<StatusCode, ApiError> {
    if app.raft.is_leader() {
        app.raft.add_member(request.node_id, request.peer_addr).await?;
        return Ok(StatusCode::OK);
    }
    let leader = app.raft.leader_addr().ok_or_else(|| ApiError::Unavailable("no Raft leader yet".into()))?;
    let response = app
        .peers
        .http()
        .post(format!("http://{leader}/cluster/join"))
        .json(&request)
        .send()
        .await
        .map_err(|e| ApiError::Unavailable(format!("Raft leader {leader} unreachable: {e}")))?;
    match response.status() {
        status if status.is_success() => Ok(StatusCode::OK),
        StatusCode::CONFLICT => Err(ApiError::JoinConflict(answer_message(response).await)),
        status => Err(ApiError::Unavailable(format!("Raft leader {leader} answered {status}"))),
    }
}

/// The `message` of a JSON error answer (its whole text if it is not one).
async fn answer_message(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or(text)
}

/// A produce forwarded by the broker that received it; records are framed (u32 length, bytes).
async fn produce(
    State(app): State<SharedState>,
    Path((topic, partition)): Path<(String, u32)>,
    body: Bytes,
) -> Response {
    let result = async {
        validate_topic_name(&topic)?;
        if partition >= app.ring.partitions() {
            return Err(ApiError::BadRequest(format!("no partition {partition}")));
        }
        let records = super::record_frames::decode_frames(&body).map_err(ApiError::BadRequest)?;
        Ok(Json(app.replication.append(&topic, partition, records).await?))
    }
    .await;
    result.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

#[derive(Serialize, Deserialize)]
pub struct ActivityReport {
    pub consumers: Vec<String>,
}

async fn activity(State(app): State<SharedState>, Json(report): Json<ActivityReport>) -> StatusCode {
    app.consumers.note_activity(&report.consumers);
    StatusCode::NO_CONTENT
}

/// A consumer registered through another broker, which waits for this answer.
#[derive(Serialize, Deserialize)]
pub struct RegistrationNotice {
    pub group: String,
    pub topics: Vec<String>,
    /// A new group starting at the latest offsets: this broker sets them for its partitions.
    pub start_latest: bool,
}

/// Applies the registration here before the registering broker answers 200, so this broker
/// deals the group's partitions as that one does from then on.
async fn registered(
    State(app): State<SharedState>,
    Json(notice): Json<RegistrationNotice>,
) -> Result<StatusCode, ApiError> {
    app.consumers.apply_registration(&notice).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, Deserialize)]
pub struct PositionsRequest {
    pub consumer_id: String,
}

/// The consumer's uncommitted positions here, for a commit or goodbye made on another broker.
async fn positions(State(app): State<SharedState>, Json(request): Json<PositionsRequest>) -> Json<Vec<OffsetCommit>> {
    let consumer = app.raft.read(|s| s.consumers.get(&request.consumer_id).cloned());
    Json(match consumer {
        Some(consumer) => app.consumers.local_positions(&consumer).await,
        None => Vec::new(),
    })
}
