//! The discovery port: the broker list clients start from (SPEC §5), and the cluster view
//! operators look at (which broker leads each partition, in which epoch, and the Raft leader).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use runnel_discovery::BrokerList;
use serde::Serialize;

use super::status::{discovery_status, livez};
use super::{with_fallbacks, SharedState};

pub fn router(app: SharedState) -> Router {
    with_fallbacks(
        Router::new()
            .route("/v1/brokers", get(brokers))
            .route("/v1/cluster", get(cluster))
            .route("/status", get(discovery_status))
            .route("/livez", get(livez)),
    )
    .with_state(app)
}

async fn brokers(State(app): State<SharedState>) -> Json<BrokerList> {
    Json(BrokerList {
        base_name: None,
        service_name: None,
        length: app.peers.names().len(),
        names: app.peers.names().to_vec(),
        producer_port: app.producer_port,
        consumer_port: app.consumer_port,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterView {
    /// The broker answering.
    broker: u32,
    /// Ordinal of the Raft leader (the controller), as this broker knows it.
    raft_leader: Option<u32>,
    /// Ordinals of the brokers that vote in Raft (up to five; the rest follow as learners).
    raft_voters: Vec<u32>,
    partitions: Vec<PartitionView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PartitionView {
    partition: u32,
    leader: u32,
    epoch: u64,
    /// Brokers holding a copy, the ring owner first.
    replicas: Vec<u32>,
}

async fn cluster(State(app): State<SharedState>) -> Json<ClusterView> {
    let leadership = app.replication.leadership();
    let ordinal_of = |addr: &str| (0..app.peers.count()).find(|i| app.peers.peer_addr(*i) == addr);
    let raft_leader = app.raft.leader_addr().and_then(|addr| ordinal_of(&addr));
    let mut raft_voters: Vec<u32> = app.raft.voter_addrs().iter().filter_map(|addr| ordinal_of(addr)).collect();
    raft_voters.sort_unstable();
    let partitions = (0..app.ring.partitions())
        .map(|partition| {
            let current = leadership.current(partition);
            PartitionView {
                partition,
                leader: current.broker,
                epoch: current.epoch,
                replicas: leadership.replicas(partition),
            }
        })
        .collect();
    Json(ClusterView { broker: app.peers.ordinal(), raft_leader, raft_voters, partitions })
}
