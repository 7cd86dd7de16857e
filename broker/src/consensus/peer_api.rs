//! The Raft routes of the peer port, and the route that accepts commands forwarded from a
//! broker that is not the leader.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use super::cluster_state::{Command, CommandResult};
use super::node::RaftNode;
use super::type_config::{NodeId, TypeConfig};
use crate::peer::PeerError;

/// Names the node a Raft RPC is meant for. A broker wiped and started again at the same address
/// has a new node id: it must refuse RPCs meant for the old one, or the leader would read its
/// empty log as the old node's log going backwards (which openraft treats as a fatal bug).
pub const RAFT_TARGET_HEADER: &str = "x-runnel-raft-target";

pub fn router(node: RaftNode) -> Router {
    let node_rpcs = Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route_layer(middleware::from_fn_with_state(node.clone(), only_for_this_node));
    Router::new()
        .merge(node_rpcs)
        .route("/raft/propose", post(propose))
        .route("/raft/read-index", get(read_index))
        .route("/raft/node", get(node_id))
        .layer(DefaultBodyLimit::max(crate::limits::PEER_BODY_LIMIT))
        .with_state(node)
}

/// [`PeerError::WrongNode`] (421 Misdirected Request) for an RPC meant for another node id
/// than this one.
async fn only_for_this_node(State(node): State<RaftNode>, request: Request, next: Next) -> Response {
    let target = request.headers().get(RAFT_TARGET_HEADER).and_then(|v| v.to_str().ok()?.parse::<NodeId>().ok());
    match target {
        Some(target) if target != node.node_id() => {
            let message = format!("this address now serves Raft node {}, not {target}", node.node_id());
            PeerError::WrongNode(message).into_response()
        }
        _ => next.run(request).await,
    }
}

async fn append(
    State(node): State<RaftNode>,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(node.raft().append_entries(rpc).await)
}

async fn vote(
    State(node): State<RaftNode>,
    Json(rpc): Json<VoteRequest<NodeId>>,
) -> Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
    Json(node.raft().vote(rpc).await)
}

async fn snapshot(
    State(node): State<RaftNode>,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>> {
    Json(node.raft().install_snapshot(rpc).await)
}

/// A command forwarded by another broker; answered only if this broker leads (one hop), else
/// 503 (the sender retries with the leader it learns of).
async fn propose(State(node): State<RaftNode>, Json(command): Json<Command>) -> Result<Json<CommandResult>, PeerError> {
    Ok(Json(node.propose_local(command).await?))
}

/// This broker's node id: a join at this address asks it to tell whether this node is alive.
async fn node_id(State(node): State<RaftNode>) -> Json<NodeId> {
    Json(node.node_id())
}

/// The log index a reader must have applied to see every committed change (leader only).
async fn read_index(State(node): State<RaftNode>) -> Result<Json<Option<u64>>, PeerError> {
    Ok(Json(node.read_index_here().await?))
}
