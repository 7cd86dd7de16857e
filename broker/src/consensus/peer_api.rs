//! The Raft routes of the peer port, and the route that accepts commands forwarded from a
//! broker that is not the leader.

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use super::node::RaftNode;
use super::type_config::{NodeId, TypeConfig};
use crate::cluster_state::{Command, CommandResult};

/// Above openraft's snapshot chunks (1 MiB) and entry batches, with room to spare.
const PEER_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn router(node: RaftNode) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/propose", post(propose))
        .route("/raft/read-index", get(read_index))
        .layer(DefaultBodyLimit::max(PEER_BODY_LIMIT))
        .with_state(node)
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

/// A command forwarded by another broker; answered only if this broker leads (one hop).
async fn propose(State(node): State<RaftNode>, Json(command): Json<Command>) -> Json<Result<CommandResult, String>> {
    Json(node.propose_local(command).await.map_err(|e| e.to_string()))
}

/// The log index a reader must have applied to see every committed change (leader only).
async fn read_index(State(node): State<RaftNode>) -> Json<Result<Option<u64>, String>> {
    Json(node.read_index_here().await.map_err(|e| e.to_string()))
}
