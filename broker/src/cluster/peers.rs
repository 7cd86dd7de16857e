//! The other brokers and how to reach them. The cluster state's roster (agreed in Raft) is
//! the truth once it exists; the names this broker was started with (its flags or DNS view)
//! only fill in what the roster does not have yet: the brokers of a cluster still forming,
//! and, for a broker asking to join, the brokers it asks.

use std::sync::Arc;
use std::time::Duration;

use super::ring_agreement::disagreement;
use crate::consensus::cluster_state::{BrokerState, ClusterState};
use crate::consensus::RaftNode;
use crate::partitioning::Ring;
use crate::peer::PeerHttp;

#[derive(Clone)]
pub struct Peers {
    /// The broker names this broker was started with, in ordinal order.
    configured: Arc<Vec<String>>,
    /// `RUNNEL_CONSUMER_RANGES`: partitions per broker range.
    ranges: u32,
    ordinal: u32,
    peer_port: u16,
    raft: RaftNode,
    http: PeerHttp,
}

impl Peers {
    pub fn new(
        configured: Vec<String>,
        ordinal: u32,
        ranges: u32,
        peer_port: u16,
        raft: RaftNode,
        http: PeerHttp,
    ) -> Peers {
        Peers { configured: Arc::new(configured), ranges, ordinal, peer_port, raft, http }
    }

    /// The ring this broker's own settings describe: what it proposes for a new cluster.
    pub fn configured_ring(&self) -> Ring {
        Ring::new(self.configured.len().max(1) as u32, self.ranges)
    }

    pub fn configured_names(&self) -> &[String] {
        &self.configured
    }

    /// Brokers known by ordinal: the roster's and, past it, the configured ones.
    pub fn count(&self) -> u32 {
        let known = self.raft.read(|s| s.brokers.keys().next_back().map_or(0, |last| last + 1));
        known.max(self.configured.len().max(1) as u32)
    }

    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    /// Broker `index`'s name: this broker's own from its settings (it may have moved, see
    /// [`disagreement`]), the others' from the roster.
    fn name(&self, index: u32) -> Option<String> {
        let own = || self.configured.get(index as usize).cloned();
        if index == self.ordinal {
            return own();
        }
        self.raft.read(|s| s.brokers.get(&index).map(|b| b.name.clone())).or_else(own)
    }

    /// The names of the brokers a client must poll: those in the ring and those leaving it
    /// that still hold copies (the configured ones while the cluster has no roster yet).
    pub fn polled_names(&self) -> Vec<String> {
        let polled: Vec<u32> = self.raft.read(|s| {
            s.brokers
                .iter()
                .filter(|(_, b)| matches!(b.state, BrokerState::Serving | BrokerState::Leaving))
                .map(|(ordinal, _)| *ordinal)
                .collect()
        });
        let roster: Vec<String> = polled.into_iter().filter_map(|ordinal| self.name(ordinal)).collect();
        if roster.is_empty() {
            self.configured.to_vec()
        } else {
            roster
        }
    }

    /// `host:port` of broker `index`'s peer listener.
    pub fn peer_addr(&self, index: u32) -> String {
        let host = self.name(index).unwrap_or_else(|| "localhost".to_string());
        format!("{host}:{}", self.peer_port)
    }

    pub fn url(&self, index: u32, path: &str) -> String {
        format!("http://{}{path}", self.peer_addr(index))
    }

    /// Ordinals of every other broker, but those the cluster removed.
    pub fn others(&self) -> Vec<u32> {
        let removed: Vec<u32> = self.raft.read(|s| s.brokers_in(BrokerState::Removable).collect());
        (0..self.count()).filter(|i| *i != self.ordinal && !removed.contains(i)).collect()
    }

    /// Why this broker's settings do not fit the cluster it is in, if they do not.
    pub fn disagreement(&self, state: &ClusterState) -> Option<String> {
        disagreement(&self.configured, self.ranges, self.ordinal, state)
    }

    /// POSTs `body` as JSON to `path` on every other broker at once, each call given up after
    /// `within`; answers in ordinal order.
    pub async fn post_to_others<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
        within: Duration,
    ) -> Vec<(u32, Result<reqwest::Response, reqwest::Error>)> {
        let calls = self.others().into_iter().map(|peer| {
            let call = self.http.post(self.url(peer, path)).json(body).timeout(within).send();
            async move { (peer, call.await) }
        });
        futures_util::future::join_all(calls).await
    }

    pub fn http(&self) -> &PeerHttp {
        &self.http
    }
}
