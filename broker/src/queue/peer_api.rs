//! The queue-settling conversation of the peer port, both sides: a broker that got tokens of
//! partitions another broker leads sends them there (`POST /cluster/queue/settle`, JSON
//! `{group, op, delayMs?, tokens}`), and the leader answers one result per token.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::ack_token::AckToken;
use super::settle::{Settle, SettleResult};
use super::QueueService;
use crate::cluster::Peers;
use crate::error::ApiError;
use crate::peer::{answer_json, PeerError};
use crate::timing::FORWARD_TIMEOUT;

const PATH: &str = "/cluster/queue/settle";

pub fn router(queues: Arc<QueueService>) -> Router {
    Router::new().route(PATH, post(settle)).with_state(queues)
}

#[derive(Serialize, Deserialize)]
struct SettleRequest {
    group: String,
    #[serde(flatten)]
    settle: Settle,
    tokens: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct SettleAnswer {
    results: Vec<SettleResult>,
}

async fn settle(
    State(queues): State<Arc<QueueService>>,
    Json(request): Json<SettleRequest>,
) -> Result<Json<SettleAnswer>, PeerError> {
    let decoded: Vec<Option<AckToken>> = request.tokens.iter().map(|t| AckToken::decode(t)).collect();
    let known: Vec<AckToken> = decoded.iter().flatten().cloned().collect();
    let mut settled = queues.settle_here(&request.group, request.settle, &known).await?.into_iter();
    let results = decoded.iter().map(|t| t.as_ref().and_then(|_| settled.next()).unwrap_or(SettleResult::Unknown));
    Ok(Json(SettleAnswer { results: results.collect() }))
}

/// Settles `tokens` on broker `leader`: one result per token.
pub(super) async fn settle_on(
    peers: &Peers,
    leader: u32,
    group: &str,
    settle: Settle,
    tokens: Vec<String>,
) -> Result<Vec<SettleResult>, ApiError> {
    let count = tokens.len();
    let request = SettleRequest { group: group.to_string(), settle, tokens };
    let response =
        peers.http().post(peers.url(leader, PATH)).json(&request).timeout(FORWARD_TIMEOUT).send().await.map_err(
            |e| {
                ApiError::Unavailable(format!(
                    "broker {leader}, which leads some of the tokens' partitions, did not answer: {e}"
                ))
            },
        )?;
    let answer: SettleAnswer = answer_json(response).await?;
    if answer.results.len() != count {
        return Err(ApiError::Internal(format!(
            "broker {leader} answered {} results for {count} tokens",
            answer.results.len()
        )));
    }
    Ok(answer.results)
}
