//! The membership routes of the peer port: what a starting broker asks (`/cluster/info`) and
//! how it joins the Raft group (`/cluster/join`).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::formation::{ClusterInfo, JoinRequest};
use super::{disagreement, Peers};
use crate::consensus::cluster_state::{BrokerState, Command};
use crate::consensus::RaftNode;
use crate::peer::{answer_bytes, PeerError};

/// What the membership routes need.
#[derive(Clone)]
struct Membership {
    raft: RaftNode,
    peers: Peers,
}

pub fn router(raft: RaftNode, peers: Peers) -> Router {
    Router::new()
        .route("/cluster/info", get(info))
        .route("/cluster/join", post(join))
        .layer(DefaultBodyLimit::max(crate::limits::PEER_BODY_LIMIT))
        .with_state(Membership { raft, peers })
}

async fn info(State(m): State<Membership>) -> Json<ClusterInfo> {
    Json(ClusterInfo { initialized: m.raft.is_initialized(), leader: m.raft.leader_addr() })
}

/// Adds the broker when this one leads; otherwise passes the request to the leader.
async fn join(State(m): State<Membership>, Json(request): Json<JoinRequest>) -> Result<StatusCode, PeerError> {
    if m.raft.is_leader() {
        let (agreed, why) =
            m.raft.read(|s| (s.layout.is_agreed(), disagreement(&request.names, request.ranges, request.ordinal, s)));
        if !agreed {
            return Err(PeerError::Unavailable("the cluster has not agreed on its ring yet".into()));
        }
        if let Some(why) = why {
            return Err(PeerError::Conflict(why));
        }
        m.raft.add_member(request.node_id, request.peer_addr).await?;
        let name = request.names.get(request.ordinal as usize).cloned().unwrap_or_default();
        let known = m.raft.read(|s| s.brokers.get(&request.ordinal).is_some_and(|b| b.state != BrokerState::Removable));
        if !known {
            m.raft.propose(Command::AddBroker { ordinal: request.ordinal, name: name.clone() }).await?;
            tracing::info!(ordinal = request.ordinal, %name, "a broker beyond the ring joined; it is grown in once ready");
        }
        return Ok(StatusCode::OK);
    }
    let leader = m.raft.leader_addr().ok_or_else(|| PeerError::Unavailable("no Raft leader yet".into()))?;
    let response = m
        .peers
        .http()
        .post(format!("http://{leader}/cluster/join"))
        .json(&request)
        .send()
        .await
        .map_err(|e| PeerError::Unavailable(format!("Raft leader {leader} unreachable: {e}")))?;
    answer_bytes(response).await?;
    Ok(StatusCode::OK)
}
