//! The consumer-coordination conversation of the peer port, both sides: a broker reports the
//! consumers it saw to the Raft leader (which alone times them out), tells every other broker
//! of a registration (each applies it before the registering broker answers), and gathers a
//! consumer's read positions from every broker for a commit or goodbye.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::ConsumerService;
use crate::cluster::Peers;
use crate::consensus::cluster_state::OffsetCommit;
use crate::peer::{answer_bytes, answer_json, PeerError};
use crate::timing::PEER_REQUEST_TIMEOUT;

const ACTIVITY: &str = "/cluster/activity";
const REGISTERED: &str = "/cluster/registered";
const POSITIONS: &str = "/cluster/positions";

/// How long a registration waits for each other broker to apply it.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Serialize, Deserialize)]
pub struct ActivityReport {
    pub consumers: Vec<String>,
}

/// A consumer registered through another broker, which waits for this answer.
#[derive(Serialize, Deserialize)]
pub struct RegistrationNotice {
    pub group: String,
    pub topics: Vec<String>,
    /// A new group starting at the latest offsets: this broker sets them for its partitions.
    pub start_latest: bool,
    /// A new group starting at a time (ms since the Unix epoch): this broker sets its
    /// partitions' offsets to their first record appended then or later. A broker of an
    /// older version ignores it, and the group reads its partitions from the earliest offset.
    #[serde(default)]
    pub start_timestamp: Option<i64>,
}

#[derive(Serialize, Deserialize)]
pub struct PositionsRequest {
    pub consumer_id: String,
    /// The `Poll-Token`s of the responses the consumer processed, one per broker (see
    /// [`super::poll_tokens::PollTokens::caps`]); none from a v1 client.
    #[serde(default)]
    pub acks: Vec<String>,
}

pub fn router(consumers: Arc<ConsumerService>) -> Router {
    Router::new()
        .route(ACTIVITY, post(activity))
        .route(REGISTERED, post(registered))
        .route(POSITIONS, post(positions))
        .layer(DefaultBodyLimit::max(crate::limits::PEER_BODY_LIMIT))
        .with_state(consumers)
}

async fn activity(State(consumers): State<Arc<ConsumerService>>, Json(report): Json<ActivityReport>) -> StatusCode {
    consumers.note_activity(&report.consumers);
    StatusCode::NO_CONTENT
}

/// Applies the registration here before the registering broker answers 200, so this broker
/// deals the group's partitions as that one does from then on.
async fn registered(
    State(consumers): State<Arc<ConsumerService>>,
    Json(notice): Json<RegistrationNotice>,
) -> Result<StatusCode, PeerError> {
    consumers.apply_registration(&notice).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The consumer's uncommitted positions here, for a commit or goodbye made on another broker.
async fn positions(
    State(consumers): State<Arc<ConsumerService>>,
    Json(request): Json<PositionsRequest>,
) -> Json<Vec<OffsetCommit>> {
    Json(consumers.positions_here(&request.consumer_id, &request.acks).await)
}

/// Sends the consumers seen here to the Raft leader at `leader`.
pub async fn report_activity(peers: &Peers, leader: &str, consumers: Vec<String>) {
    let report = ActivityReport { consumers };
    let sent = peers.http().post(format!("http://{leader}{ACTIVITY}")).json(&report).send().await;
    let answer = match sent {
        Ok(response) => answer_bytes(response).await.map(|_| ()),
        Err(e) => Err(PeerError::Unavailable(e.to_string())),
    };
    if let Err(e) = answer {
        tracing::debug!(%leader, "could not report consumer activity: {e}");
    }
}

/// Tells every other broker about a registration and waits until each has applied it. A
/// broker that does not answer within [`NOTICE_TIMEOUT`] is left out (see
/// [`ConsumerService::register`]).
pub async fn notify_registration(peers: &Peers, notice: &RegistrationNotice) {
    let group = &notice.group;
    for (peer, sent) in peers.post_to_others(REGISTERED, notice, NOTICE_TIMEOUT).await {
        match sent {
            Ok(response) => {
                if let Err(e) = answer_bytes(response).await {
                    tracing::warn!(peer, %group, "broker could not apply a registration: {e}");
                }
            }
            Err(e) => tracing::warn!(peer, %group, "broker unreachable to apply a registration: {e}"),
        }
    }
}

/// The consumer's positions on every other broker that answers; one that does not keeps its
/// positions uncommitted (those records may come again, none are skipped).
pub async fn positions_elsewhere(peers: &Peers, consumer_id: &str, acks: &[String]) -> Vec<OffsetCommit> {
    let request = PositionsRequest { consumer_id: consumer_id.to_string(), acks: acks.to_vec() };
    let mut offsets = Vec::new();
    for (peer, sent) in peers.post_to_others(POSITIONS, &request, PEER_REQUEST_TIMEOUT).await {
        let answer = match sent {
            Ok(response) => answer_json::<Vec<OffsetCommit>>(response).await,
            Err(e) => Err(PeerError::Unavailable(format!("unreachable: {e}"))),
        };
        match answer {
            Ok(theirs) => offsets.extend(theirs),
            Err(e) => tracing::warn!(peer, consumer = %consumer_id, "positions not available: {e}"),
        }
    }
    offsets
}
