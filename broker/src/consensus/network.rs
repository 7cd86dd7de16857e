//! Raft RPCs to other brokers: JSON over HTTP to their peer port.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::peer_api::RAFT_TARGET_HEADER;
use super::type_config::{Node, NodeId, TypeConfig};
use crate::peer::PeerHttp;

#[derive(Clone)]
pub struct PeerNetwork {
    http: PeerHttp,
}

impl PeerNetwork {
    pub fn new(http: PeerHttp) -> PeerNetwork {
        PeerNetwork { http }
    }

    pub fn http(&self) -> &PeerHttp {
        &self.http
    }
}

pub struct PeerClient {
    http: PeerHttp,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient { http: self.http.clone(), target, addr: node.addr.clone() }
    }
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let url = format!("http://{}{path}", self.addr);
        let call = self.http.post(url).header(RAFT_TARGET_HEADER, self.target.to_string()).json(request);
        let response = call.timeout(option.hard_ttl()).send().await.map_err(|e| {
            if e.is_connect() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        if response.status() == reqwest::StatusCode::MISDIRECTED_REQUEST {
            let answer = response.text().await.unwrap_or_default();
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(answer))));
        }
        let result: Result<Resp, E> = response.json().await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        self.call("/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("/raft/vote", &rpc, &option).await
    }
}
