//! The partition-bounds conversation of the peer port, both sides: a broker asks every other
//! one for the bounds of the partitions it leads, for some topics (and optionally a time),
//! and each answers with what it serves as leader right now.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::Bounds;
use crate::cluster::Peers;
use crate::peer::{answer_json, PeerError};
use crate::store::validate_topic_name;

const BOUNDS: &str = "/cluster/bounds";

/// How long a broker's answer is waited for: a view of lag or a reset plan answers within
/// this however many brokers are down.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, Deserialize)]
pub struct BoundsRequest {
    pub topics: Vec<String>,
    /// Also the first offset appended at or after this time (ms since the Unix epoch).
    pub timestamp: Option<i64>,
}

/// One topic partition the answering broker serves as leader, in `epoch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedBounds {
    pub topic: String,
    pub partition: u32,
    pub epoch: u64,
    pub start: u64,
    pub end: u64,
    pub at_timestamp: Option<u64>,
    /// Bytes of the leader's copy on its disk (absent from a broker of an earlier version).
    #[serde(default)]
    pub bytes: u64,
}

pub fn router(bounds: Arc<Bounds>) -> Router {
    Router::new()
        .route(BOUNDS, post(answer))
        .layer(DefaultBodyLimit::max(crate::limits::PEER_BODY_LIMIT))
        .with_state(bounds)
}

async fn answer(
    State(bounds): State<Arc<Bounds>>,
    Json(request): Json<BoundsRequest>,
) -> Result<Json<Vec<LedBounds>>, PeerError> {
    for topic in &request.topics {
        validate_topic_name(topic).map_err(|e| PeerError::BadRequest(e.to_string()))?;
    }
    Ok(Json(bounds.led_here(&request).await))
}

/// What every other broker that answers within [`ANSWER_WITHIN`] leads, each with its ordinal.
pub async fn ask_others(peers: &Peers, request: &BoundsRequest) -> Vec<(u32, LedBounds)> {
    let mut led = Vec::new();
    for (peer, sent) in peers.post_to_others(BOUNDS, request, ANSWER_WITHIN).await {
        let answer = match sent {
            Ok(response) => answer_json::<Vec<LedBounds>>(response).await,
            Err(e) => Err(PeerError::Unavailable(format!("unreachable: {e}"))),
        };
        match answer {
            Ok(theirs) => led.extend(theirs.into_iter().map(|l| (peer, l))),
            Err(e) => tracing::debug!(peer, "no partition bounds from this broker: {e}"),
        }
    }
    led
}
