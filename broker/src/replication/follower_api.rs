//! The follower side: accept records at exactly the offset the leader names.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::followers_of;
use crate::cluster::decode_frames;
use crate::error::ApiError;
use crate::http::SharedState;
use crate::store::{validate_topic_name, StorageError};

pub fn router(app: SharedState) -> Router {
    Router::new()
        .route("/cluster/replicate/{topic}/{partition}", post(replicate))
        .route("/cluster/end/{topic}/{partition}", get(end))
        .layer(DefaultBodyLimit::max(crate::cluster::PEER_BODY_LIMIT))
        .with_state(app)
}

/// Where a broker's copy of a partition ends (the next offset it expects).
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplicaEnd {
    pub end: u64,
}

#[derive(Deserialize)]
pub struct ReplicateParams {
    pub base: u64,
}

/// `follower_only`: the leader must not accept copies of its own partition.
fn check_replica(app: &SharedState, topic: &str, partition: u32, follower_only: bool) -> Result<(), ApiError> {
    validate_topic_name(topic)?;
    let follower = followers_of(&app.ring, app.peers.count(), partition).contains(&app.peers.ordinal());
    let leader = app.ring.broker_of(partition) == app.peers.ordinal();
    if !(follower || (leader && !follower_only)) {
        return Err(ApiError::BadRequest(format!("this broker holds no replica of partition {partition}")));
    }
    Ok(())
}

async fn replicate(
    State(app): State<SharedState>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<ReplicateParams>,
    body: Bytes,
) -> Response {
    let result = async {
        check_replica(&app, &topic, partition, true)?;
        let records = decode_frames(&body).map_err(ApiError::BadRequest)?;
        match app.storage.append_at(&topic, partition, params.base, records).await {
            Ok(appended) => {
                Ok((StatusCode::OK, Json(ReplicaEnd { end: appended.base_offset + u64::from(appended.count) })))
            }
            Err(StorageError::OffsetMismatch { end }) => Ok((StatusCode::CONFLICT, Json(ReplicaEnd { end }))),
            Err(e) => Err(ApiError::from(e)),
        }
    }
    .await;
    result.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

async fn end(
    State(app): State<SharedState>,
    Path((topic, partition)): Path<(String, u32)>,
) -> Result<Json<ReplicaEnd>, ApiError> {
    check_replica(&app, &topic, partition, false)?;
    Ok(Json(ReplicaEnd { end: app.storage.bounds(&topic, partition).map_or(0, |(_, end)| end) }))
}
