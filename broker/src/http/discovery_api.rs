//! The discovery port: the broker list clients start from (SPEC §5), and the cluster view
//! operators look at (which broker leads each partition, in which epoch, and the Raft leader).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use runnel_discovery::BrokerList;
use serde::Serialize;

use super::query::Params;
use super::status::{discovery_status, livez};
use super::{tokens_api, with_fallbacks, SharedState};
use crate::auth::{Access, Need};
use crate::consensus::cluster_state::{BrokerState, Command, CommandResult};
use crate::error::ApiError;

pub fn router(app: SharedState) -> Router {
    with_fallbacks(
        Router::new()
            .route("/v1/brokers", get(brokers))
            .route("/v1/cluster", get(cluster))
            .route("/v1/cluster/resize", post(resize))
            .route("/status", get(discovery_status))
            .route("/livez", get(livez))
            .merge(tokens_api::routes())
            .merge(super::topics_api::routes())
            .merge(super::openapi_api::routes()),
    )
    .with_state(app)
}

/// Every broker a consumer must poll: those in the ring and those leaving it that still
/// serve what only they hold.
async fn brokers(State(app): State<SharedState>) -> Json<BrokerList> {
    let names = app.peers.polled_names();
    Json(BrokerList {
        base_name: None,
        service_name: None,
        length: names.len(),
        names,
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
    /// The current ring generation (0 until the cluster is first resized).
    generation: u32,
    /// Brokers in the current ring.
    brokers: u32,
    /// Every broker the cluster knows, with what it does.
    members: Vec<MemberView>,
    /// Brokers that left the ring and hold nothing any more: they may be stopped.
    removable: Vec<u32>,
    partitions: Vec<PartitionView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberView {
    broker: u32,
    name: String,
    state: BrokerState,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PartitionView {
    partition: u32,
    generation: u32,
    /// Takes no more writes: its generation is not the current one and its ends are final.
    sealed: bool,
    leader: u32,
    epoch: u64,
    /// Brokers holding a copy, the ring owner first.
    replicas: Vec<u32>,
}

async fn cluster(State(app): State<SharedState>) -> Json<ClusterView> {
    let ordinal_of = |addr: &str| (0..app.peers.count()).find(|i| app.peers.peer_addr(*i) == addr);
    let raft_leader = app.raft.leader_addr().and_then(|addr| ordinal_of(&addr));
    let mut raft_voters: Vec<u32> = app.raft.voter_addrs().iter().filter_map(|addr| ordinal_of(addr)).collect();
    raft_voters.sort_unstable();
    let view = app.raft.read(|s| {
        let members: Vec<MemberView> =
            s.brokers.iter().map(|(&broker, b)| MemberView { broker, name: b.name.clone(), state: b.state }).collect();
        let partitions = s
            .layout
            .generations()
            .flat_map(|(generation, g)| g.partitions().map(move |p| (generation, p)))
            .map(|(generation, partition)| {
                let current = s.leader(partition);
                PartitionView {
                    partition,
                    generation,
                    sealed: s.sealed.contains_key(&partition),
                    leader: current.broker,
                    epoch: current.epoch,
                    replicas: s.replicas(partition),
                }
            })
            .collect();
        ClusterView {
            broker: app.peers.ordinal(),
            raft_leader,
            raft_voters,
            generation: s.layout.generation(),
            brokers: s.layout.current_ring().map_or(0, |r| r.brokers()),
            removable: s.brokers_in(BrokerState::Removable).collect(),
            members,
            partitions,
        }
    });
    Json(view)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Resized {
    generation: u32,
    brokers: u32,
    /// False when the cluster already had that size.
    changed: bool,
}

/// `POST /v1/cluster/resize?brokers=N`: opens a generation of N brokers. Growing takes in
/// brokers that joined; shrinking lets the highest ordinals leave (SPEC §9).
async fn resize(State(app): State<SharedState>, access: Access, params: Params) -> Result<Json<Resized>, ApiError> {
    access.require(Need::Cluster)?;
    let brokers: u32 = params
        .first(&["brokers"])
        .ok_or_else(|| ApiError::BadRequest("the brokers parameter is required: ?brokers=N".into()))?
        .parse()
        .map_err(|_| ApiError::BadRequest("brokers must be a whole number".into()))?;
    let (generation, current, refusal) = app
        .raft
        .read(|s| (s.layout.generation(), s.layout.current_ring().map(|r| r.brokers()), s.resize_refusal(brokers)));
    let current = current.ok_or_else(|| ApiError::Unavailable("the cluster has not agreed on its ring yet".into()))?;
    if let Some(why) = refusal {
        return Err(ApiError::ResizeRefused(why));
    }
    if brokers == current {
        return Ok(Json(Resized { generation, brokers, changed: false }));
    }
    match app.raft.propose(Command::Resize { generation, brokers }).await? {
        CommandResult::Applied(true) => {
            tracing::info!(
                from = current,
                to = brokers,
                generation = generation + 1,
                "resize asked: a new generation is open"
            );
            Ok(Json(Resized { generation: generation + 1, brokers, changed: true }))
        }
        _ => Err(ApiError::ResizeRefused("the cluster changed meanwhile (another resize?): look and ask again".into())),
    }
}
