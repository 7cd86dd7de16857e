//! How brokers become one Raft group without ever splitting it: a broker with Raft state
//! on disk resumes. A new (or wiped) broker never starts a group of its own, except broker 0
//! of a brand-new cluster (no other broker answers as a member); every other one asks the
//! brokers to add it, and the leader adds it (as a voter while there are fewer than five). A
//! broker that is not yet a voter while voters are missing (a join cut short, even before a
//! restart) keeps asking until it is one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Peers;
use crate::consensus::RaftNode;

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: u64,
    pub peer_addr: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub initialized: bool,
    pub leader: Option<String>,
}

const RETRY: Duration = Duration::from_millis(500);

pub async fn form_cluster(raft: RaftNode, peers: Peers) {
    if raft.is_pristine() {
        let first_of_new_cluster = peers.ordinal() == 0 && !any_peer_is_member(&peers).await;
        if peers.count() == 1 || first_of_new_cluster {
            if let Err(e) = raft.initialize_alone().await {
                tracing::error!("could not initialize the Raft group: {e}");
            }
            return;
        }
    }
    if raft.has_settled_membership() {
        return;
    }
    let request = JoinRequest { node_id: raft.node_id(), peer_addr: peers.peer_addr(peers.ordinal()) };
    // Until this broker is a voter, not merely known: the leader adds a joiner as a learner and
    // then promotes it, and the promotion fails when another broker's join changes the
    // membership at the same moment. A broker that stopped asking then would stay a learner,
    // and the group would lose its quorum with one more broker down.
    while !raft.has_settled_membership() {
        for peer in peers.others() {
            match peers.http().post(peers.url(peer, "/cluster/join")).json(&request).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => tracing::debug!(peer, status = %r.status(), "join not accepted yet"),
                Err(e) => tracing::debug!(peer, "join request failed: {e}"),
            }
        }
        tokio::time::sleep(RETRY).await;
    }
    tracing::info!(node = raft.node_id(), "joined the cluster");
}

async fn any_peer_is_member(peers: &Peers) -> bool {
    for peer in peers.others() {
        let info = peers.http().get(peers.url(peer, "/cluster/info")).timeout(Duration::from_secs(2)).send().await;
        if let Ok(response) = info {
            if response.json::<ClusterInfo>().await.is_ok_and(|i| i.initialized) {
                return true;
            }
        }
    }
    false
}
