//! The forwarded-read conversation of the peer port, both sides: a broker asked for records
//! of a partition another broker leads asks that leader, which reads them (waiting, if asked)
//! and answers them in [`super::wire`]'s framing, or a [`PeerError`] (`not_leader` when it
//! does not lead the partition (yet), `out_of_range` with the partition's bounds).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{wire, PositionReads, ReadRequest, RecordsRead, Start};
use crate::cluster::Peers;
use crate::error::ApiError;
use crate::peer::{answer_bytes, PeerError};
use crate::timing::FORWARD_TIMEOUT;

pub fn router(reads: Arc<PositionReads>) -> Router {
    Router::new().route("/cluster/records/{topic}/{partition}", get(read)).with_state(reads)
}

#[derive(Deserialize)]
struct ReadParams {
    offset: Option<String>,
    timestamp: Option<String>,
    limit: usize,
    max_bytes: usize,
    wait_ms: u64,
}

async fn read(
    State(reads): State<Arc<PositionReads>>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(params): Query<ReadParams>,
) -> Result<Response, PeerError> {
    let start = Start::parse(params.offset.as_deref(), params.timestamp.as_deref()).map_err(PeerError::BadRequest)?;
    let request = ReadRequest {
        topic,
        partition,
        start,
        limit: params.limit,
        max_bytes: params.max_bytes,
        wait: Duration::from_millis(params.wait_ms),
    };
    reads.check(&request)?;
    let (read, held) = reads.read_here(&request).await?;
    let body = crate::memory::hold_until_sent(wire::encode(&read).into(), held);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// Not answered by the leader asked: ask the partition's leader again.
pub(super) struct Retry(pub String);

/// Asks broker `leader` for the records: its answer, or [`Retry`] when it could not answer
/// for the partition (unreachable, or not its leader).
pub(super) async fn forward(
    peers: &Peers,
    leader: u32,
    request: &ReadRequest,
) -> Result<Result<RecordsRead, ApiError>, Retry> {
    let path = format!(
        "/cluster/records/{}/{}?{}&limit={}&max_bytes={}&wait_ms={}",
        request.topic,
        request.partition,
        request.start.to_query(),
        request.limit,
        request.max_bytes,
        request.wait.as_millis()
    );
    let url = peers.url(leader, &path);
    let response = match peers.http().get(url).timeout(FORWARD_TIMEOUT + request.wait).send().await {
        Ok(response) => response,
        Err(e) if !e.is_timeout() => return Err(Retry(format!("broker {leader} is unreachable: {e}"))),
        Err(e) => {
            return Ok(Err(ApiError::Unavailable(format!(
                "the leader of partition {} (broker {leader}) did not answer in time: {e}",
                request.partition
            ))))
        }
    };
    match answer_bytes(response).await {
        Ok(body) => {
            Ok(wire::decode(&body).map_err(|e| ApiError::Internal(format!("broker {leader} answered a bad read: {e}"))))
        }
        Err(PeerError::NotLeader(_)) => Err(Retry(format!("broker {leader} does not lead it (yet)"))),
        Err(refused) => Ok(Err(ApiError::from(refused))),
    }
}
