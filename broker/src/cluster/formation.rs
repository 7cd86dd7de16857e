//! How brokers become one Raft group without ever splitting it: a broker with Raft state
//! on disk resumes. A new (or wiped) broker never starts a group of its own, except broker 0
//! of a brand-new cluster (no other broker answers as a member); every other one asks the
//! brokers to add it, and the leader adds it (as a voter while there are fewer than five). A
//! broker that is not yet a voter while voters are missing (a join cut short, even before a
//! restart) keeps asking until it is one.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Peers;
use crate::consensus::cluster_state::BrokerState;
use crate::consensus::RaftNode;
use crate::log_every::LogEvery;
use crate::peer::{answer_bytes, PeerError};

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: u64,
    pub peer_addr: String,
    /// The joiner's ordinal and settings: the leader refuses settings that contradict the
    /// cluster's, and records a broker beyond the ring as joining.
    pub ordinal: u32,
    pub names: Vec<String>,
    pub ranges: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub initialized: bool,
    pub leader: Option<String>,
}

const RETRY: Duration = Duration::from_millis(500);

/// Joins (or forms) the Raft group; a join the cluster refuses (this broker's ring is not the
/// agreed one) is published on `refused` with the leader's reason, and asked again later.
pub async fn form_cluster(raft: RaftNode, peers: Peers, refused: watch::Sender<Option<String>>) {
    if raft.is_pristine() {
        let first_of_new_cluster = peers.ordinal() == 0 && !any_peer_is_member(&peers).await;
        if peers.count() == 1 || first_of_new_cluster {
            if let Err(e) = raft.initialize_alone().await {
                tracing::error!("could not initialize the Raft group: {e}");
            }
            return;
        }
    }
    // A member the roster does not list yet (its join was cut short between the Raft change and
    // `AddBroker`, or it was removed in a shrink and comes back) asks again, or it would never
    // be grown into the ring.
    let ordinal = peers.ordinal();
    let joined = || {
        raft.has_settled_membership()
            && raft.read(|s| s.brokers.get(&ordinal).is_some_and(|b| b.state != BrokerState::Removable))
    };
    if joined() {
        return;
    }
    let request = JoinRequest {
        node_id: raft.node_id(),
        peer_addr: peers.peer_addr(peers.ordinal()),
        ordinal: peers.ordinal(),
        names: peers.configured_names().to_vec(),
        ranges: peers.configured_ring().ranges(),
    };
    let refusals = LogEvery::new(Duration::from_secs(60));
    // Until this broker is a voter, not merely known: the leader adds a joiner as a learner and
    // then promotes it, and the promotion fails when another broker's join changes the
    // membership at the same moment. A broker that stopped asking then would stay a learner,
    // and the group would lose its quorum with one more broker down.
    while !joined() {
        for peer in peers.others() {
            match peers.http().post(peers.url(peer, "/cluster/join")).json(&request).send().await {
                Ok(r) => match answer_bytes(r).await {
                    Ok(_) => {
                        refused.send_replace(None);
                        break;
                    }
                    Err(PeerError::Conflict(why)) => {
                        refusals.note(|unlogged| {
                            tracing::error!(refused_since_last_log = unlogged, "the cluster refuses this broker: {why}")
                        });
                        refused.send_replace(Some(why));
                        break;
                    }
                    Err(e) => tracing::debug!(peer, "join not accepted yet: {e}"),
                },
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
