//! One broker's Raft member: starts openraft on the on-disk stores, proposes commands
//! (forwarding them to the leader when needed) and exposes the applied state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError as OpenRaftError};
use openraft::{BasicNode, ChangeMembers, Config, SnapshotPolicy};

use super::cluster_state::{ClusterState, Command, CommandResult};
use super::log_store::LogStore;
use super::network::PeerNetwork;
use super::state_machine::StateMachine;
use super::type_config::{NodeId, Raft};
use crate::peer::{answer_json, PeerError, PeerHttp, PeerRequest};
use crate::timing::{PROPOSE_TIMEOUT, QUORUM_LOST_AFTER, RAFT_ELECTION_MAX, RAFT_ELECTION_MIN, RAFT_HEARTBEAT};

/// Pause between attempts while no leader can take a proposal.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// See [`RaftNode::changes`].
pub type RaftChanges = tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, openraft::BasicNode>>;

pub struct RaftConfig {
    pub node_id: NodeId,
    /// `host:port` of this node's peer listener, as other nodes reach it.
    pub peer_addr: String,
    pub dir: PathBuf,
    /// Build a snapshot (and purge the log before it) after this many entries.
    pub snapshot_every: u64,
    /// The broker's signed client for the RPCs and forwarded proposals.
    pub http: PeerHttp,
}

/// Voters beyond this many make commits slower without adding useful fault tolerance;
/// further brokers join as learners (they still apply every entry).
pub const MAX_VOTERS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("{0}")]
    Unavailable(String),
    #[error("raft storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("raft: {0}")]
    Fatal(String),
    /// A join at the address of a member that still answers there under its own id.
    #[error("{0}")]
    MemberAlive(String),
}

/// How a Raft failure answers on the peer port (proposals and reads forwarded to the leader,
/// joins).
impl From<RaftError> for PeerError {
    fn from(e: RaftError) -> Self {
        match e {
            RaftError::Unavailable(reason) => PeerError::Unavailable(reason),
            RaftError::MemberAlive(reason) => PeerError::Conflict(reason),
            other => PeerError::Internal(other.to_string()),
        }
    }
}

/// What a peer's error answer means to this node: only a leader that cannot decide *now*
/// (no quorum, leadership moving) is worth asking again.
impl From<PeerError> for RaftError {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::Unavailable(reason) => RaftError::Unavailable(reason),
            PeerError::NotLeader(_) | PeerError::WrongNode(_) => RaftError::Unavailable(e.to_string()),
            PeerError::Conflict(reason) => RaftError::MemberAlive(reason),
            other => RaftError::Fatal(format!("the Raft leader refused the request: {other}")),
        }
    }
}

/// How long a join waits for the member already at the joiner's address to say it is alive.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(1);

/// See [`RaftNode::standing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftStanding {
    pub term: u64,
    pub has_leader: bool,
    pub is_leader: bool,
}

/// What [`RaftNode::health`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftHealth {
    Healthy,
    /// The node has not applied the log it had at start yet.
    Starting,
    /// No leader is known (an election is under way, or this node is cut off from a majority).
    NoLeader,
    /// This node leads, but a majority has not answered it for a while (`None`: never).
    QuorumLost {
        ms_since_ack: Option<u64>,
    },
    /// A Raft write waits for disk space (it resumes by itself once space is freed).
    WaitingForDisk,
    /// Raft stopped for good (a fatal error): only a restart brings it back.
    Stopped(String),
}

#[derive(Clone)]
pub struct RaftNode {
    raft: Raft,
    state: Arc<RwLock<ClusterState>>,
    network: PeerNetwork,
    /// Set once this node has caught up with the log it found at start; stays set.
    caught_up: Arc<AtomicBool>,
    node_id: NodeId,
    peer_addr: String,
    /// The store held no Raft state at start (a new or wiped broker).
    pristine: bool,
    /// The log store openraft writes through (kept to end its waits for disk space at shutdown).
    log_store: LogStore,
}

impl RaftNode {
    pub async fn start(config: RaftConfig) -> Result<RaftNode, RaftError> {
        let log_store = LogStore::open(&config.dir)?;
        let state_machine = StateMachine::open(&config.dir, log_store.space_wait())?;
        let pristine = log_store.is_pristine();
        let raft_config = Config {
            cluster_name: "runnel".into(),
            heartbeat_interval: RAFT_HEARTBEAT.as_millis() as u64,
            election_timeout_min: RAFT_ELECTION_MIN.as_millis() as u64,
            election_timeout_max: RAFT_ELECTION_MAX.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: 1000,
            // Chunks and entry batches small enough for the peer port's body limit and for
            // a slow follower to take within the RPC timeouts.
            snapshot_max_chunk_size: 1024 * 1024,
            install_snapshot_timeout: 5000,
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Fatal(e.to_string()))?;
        let network = PeerNetwork::new(config.http);
        let state = state_machine.state.clone();
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network.clone(), log_store.clone(), state_machine)
            .await
            .map_err(|e| RaftError::Fatal(e.to_string()))?;
        let node = RaftNode {
            raft,
            state,
            network,
            caught_up: Arc::new(AtomicBool::new(false)),
            node_id: config.node_id,
            peer_addr: config.peer_addr,
            pristine,
            log_store,
        };
        node.watch_catch_up();
        Ok(node)
    }

    /// Marks the node caught up once a leader is known and everything logged at that point is applied.
    fn watch_catch_up(&self) {
        let mut metrics = self.raft.metrics();
        let caught_up = self.caught_up.clone();
        tokio::spawn(async move {
            loop {
                let done = {
                    let m = metrics.borrow();
                    let applied = m.last_applied.map_or(0, |id| id.index);
                    m.current_leader.is_some() && applied >= m.last_log_index.unwrap_or(0)
                };
                if done {
                    caught_up.store(true, Ordering::Release);
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Changes whenever Raft's state does (an entry applied, a leader elected, a membership
    /// change), so tasks wait on it instead of polling the state.
    pub fn changes(&self) -> RaftChanges {
        self.raft.metrics()
    }

    pub(super) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Proposes `command`, waits until it is committed and applied, and returns its result.
    /// A follower forwards the command to the leader.
    /// While leadership moves (the leader died, an election runs), it retries for up to 5 s.
    pub async fn propose(&self, command: Command) -> Result<CommandResult, RaftError> {
        self.retrying(|| async {
            match self.write(command.clone()).await {
                Ok(result) => Ok(result),
                Err(Forward::To(addr)) => {
                    let call = self.network.http().post(format!("http://{addr}/raft/propose")).json(&command);
                    self.ask_leader(&addr, call).await
                }
                Err(Forward::Failed(e)) => Err(e),
            }
        })
        .await
    }

    /// Runs `attempt` until it succeeds or fails for a reason other than
    /// [`RaftError::Unavailable`], for up to 5 s, pausing between attempts.
    async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T, RaftError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, RaftError>>,
    {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        loop {
            match attempt().await {
                Err(RaftError::Unavailable(reason)) if Instant::now() + RETRY_PAUSE < deadline => {
                    tracing::debug!("Raft not available yet, retrying: {reason}");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// Sends `call` to the Raft leader at `addr`, which answers `T` as JSON, or a [`PeerError`].
    /// A leader that was cut off may never answer: once another is elected, the call is given
    /// up as unavailable (and the caller retries with the new one).
    async fn ask_leader<T: serde::de::DeserializeOwned>(&self, addr: &str, call: PeerRequest) -> Result<T, RaftError> {
        let ask = async {
            let response = call
                .timeout(PROPOSE_TIMEOUT)
                .send()
                .await
                .map_err(|e| RaftError::Unavailable(format!("Raft leader {addr} unreachable: {e}")))?;
            Ok(answer_json(response).await?)
        };
        tokio::select! {
            answer = ask => answer,
            _ = self.leader_moves_from(addr) => Err(RaftError::Unavailable(format!("Raft leadership moved from {addr}"))),
        }
    }

    /// Like [`RaftNode::propose`], but never forwards (used for commands forwarded to us).
    pub async fn propose_local(&self, command: Command) -> Result<CommandResult, RaftError> {
        match self.write(command).await {
            Ok(result) => Ok(result),
            Err(Forward::To(addr)) => Err(RaftError::Unavailable(format!("leadership moved to {addr}"))),
            Err(Forward::Failed(e)) => Err(e),
        }
    }

    async fn write(&self, command: Command) -> Result<CommandResult, Forward> {
        let written = tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(command)).await;
        match written {
            Err(_) => Err(Forward::Failed(RaftError::Unavailable("no Raft commit within 5 s (no quorum?)".into()))),
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(OpenRaftError::APIError(ClientWriteError::ForwardToLeader(to)))) => match to.leader_node {
                Some(node) => Err(Forward::To(node.addr)),
                None => Err(Forward::Failed(RaftError::Unavailable("no Raft leader elected".into()))),
            },
            Ok(Err(e)) => Err(Forward::Failed(RaftError::Unavailable(e.to_string()))),
        }
    }

    /// On the leader: confirms leadership with a quorum and returns the index everything
    /// committed so far is at (openraft's linearizable read index), once applied here.
    pub async fn read_index_here(&self) -> Result<Option<u64>, RaftError> {
        let read = tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.ensure_linearizable()).await;
        match read {
            Ok(Ok(log_id)) => Ok(log_id.map(|id| id.index)),
            Ok(Err(e)) => Err(RaftError::Unavailable(e.to_string())),
            Err(_) => Err(RaftError::Unavailable("no quorum confirmed the Raft leader within 5 s".into())),
        }
    }

    /// Resolves once this node knows a Raft leader other than the one at `addr`.
    async fn leader_moves_from(&self, addr: &str) {
        loop {
            if self.leader_addr().is_some_and(|leader| leader != addr) {
                return;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Waits until this broker applied every change committed before the call (a read
    /// barrier), so a consumer registered through another broker a moment ago is known here.
    /// While leadership moves, it asks the new leader (for up to 5 s in all).
    pub async fn catch_up_with_leader(&self) -> Result<(), RaftError> {
        self.retrying(|| self.catch_up_once()).await
    }

    async fn catch_up_once(&self) -> Result<(), RaftError> {
        let index = if self.is_leader() {
            self.read_index_here().await?
        } else {
            let leader = self.leader_addr().ok_or_else(|| RaftError::Unavailable("no Raft leader elected".into()))?;
            let call = self.network.http().get(format!("http://{leader}/raft/read-index"));
            self.ask_leader(&leader, call).await?
        };
        self.raft
            .wait(Some(PROPOSE_TIMEOUT))
            .applied_index_at_least(index, "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| RaftError::Unavailable(format!("this broker did not catch up with Raft: {e}")))
    }

    /// Runs `f` on the applied state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.current_leader == Some(m.id)
    }

    /// This node applied the log it had at start (and saw a leader once): its view of the
    /// cluster state is not from before a restart. Stays true through later elections.
    pub fn has_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// A leader is known and this node caught up with the log it had at start.
    pub fn is_ready(&self) -> bool {
        self.health() == RaftHealth::Healthy
    }

    /// Whether this node can take part in Raft now, and why not.
    pub fn health(&self) -> RaftHealth {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if let Err(fatal) = &m.running_state {
            return RaftHealth::Stopped(fatal.to_string());
        }
        if !self.has_caught_up() {
            return RaftHealth::Starting;
        }
        // openraft's metrics stop moving while its core waits in a write: they would still
        // say all is well.
        if self.log_store.space_wait().is_waiting() {
            return RaftHealth::WaitingForDisk;
        }
        match m.current_leader {
            None => RaftHealth::NoLeader,
            // A leader cut off from a majority keeps calling itself leader: it only knows it
            // lost the quorum by how long its heartbeats have gone unanswered.
            Some(leader) if leader == m.id => match m.millis_since_quorum_ack {
                Some(ms) if ms <= QUORUM_LOST_AFTER.as_millis() as u64 => RaftHealth::Healthy,
                ms => RaftHealth::QuorumLost { ms_since_ack: ms },
            },
            Some(_) => RaftHealth::Healthy,
        }
    }

    /// The store held no Raft state when this node started.
    pub fn is_pristine(&self) -> bool {
        self.pristine
    }

    /// This node knows a membership (it initialized a group or was added to one).
    pub fn is_initialized(&self) -> bool {
        self.raft.metrics().borrow().membership_config.membership().nodes().next().is_some()
    }

    /// This node has the place it will keep in the group: a voter, or a learner because the
    /// group already has [`MAX_VOTERS`] voters. A node can be a learner for a moment while it
    /// joins (added as a learner, then promoted); that is not settled.
    pub fn has_settled_membership(&self) -> bool {
        let voters = self.voter_ids();
        voters.contains(&self.node_id) || (self.is_member() && voters.len() >= MAX_VOTERS)
    }

    /// The voting members, as this node knows the membership.
    pub fn voter_ids(&self) -> BTreeSet<NodeId> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    fn is_member(&self) -> bool {
        self.raft.metrics().borrow().membership_config.membership().get_node(&self.node_id).is_some()
    }

    /// Starts a new group with this node as its only voter. Only for a brand-new cluster:
    /// the caller has made sure no other broker already belongs to one.
    pub async fn initialize_alone(&self) -> Result<(), RaftError> {
        let members = BTreeMap::from([(self.node_id, BasicNode { addr: self.peer_addr.clone() })]);
        self.raft.initialize(members).await.map_err(|e| RaftError::Fatal(e.to_string()))?;
        tracing::info!(node = self.node_id, addr = %self.peer_addr, "initialized a new Raft group");
        Ok(())
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// This node's view of Raft for `/metrics`: its current term, whether it knows a leader,
    /// and whether it is the leader.
    pub fn standing(&self) -> RaftStanding {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        RaftStanding {
            term: m.current_term,
            has_leader: m.current_leader.is_some(),
            is_leader: m.current_leader == Some(m.id),
        }
    }

    /// Peer address of the current leader, if one is known.
    pub fn leader_addr(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
    }

    /// Peer addresses of the voting members, as this node knows the membership.
    pub fn voter_addrs(&self) -> Vec<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        membership.voter_ids().filter_map(|id| membership.get_node(&id).map(|n| n.addr.clone())).collect()
    }

    /// Adds a broker (on the leader): as a learner that catches up, then as a voter while
    /// there are fewer than [`MAX_VOTERS`]. An older node id at the same address (the broker
    /// was wiped and came back with a new id) is removed, so it does not count as a dead voter;
    /// but only when that address does not answer as the older id, or a join naming another
    /// broker's address would evict a live member ([`RaftError::MemberAlive`]).
    /// Every change is relative to the membership when it applies (add these, remove those),
    /// so two brokers joining at once cannot undo each other; the one that finds a change
    /// under way gets an error and asks again.
    pub async fn add_member(&self, node_id: NodeId, peer_addr: String) -> Result<(), RaftError> {
        let unavailable = |e: &dyn std::fmt::Display| RaftError::Unavailable(e.to_string());
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        let stale: BTreeSet<NodeId> =
            membership.nodes().filter(|(id, n)| **id != node_id && n.addr == peer_addr).map(|(id, _)| *id).collect();
        if !stale.is_empty() {
            if let Some(alive) = self.node_id_at(&peer_addr).await.filter(|id| stale.contains(id)) {
                return Err(RaftError::MemberAlive(format!(
                    "Raft node {alive} is alive at {peer_addr}: node {node_id} cannot join at its address"
                )));
            }
        }
        if membership.voter_ids().any(|id| stale.contains(&id)) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(stale.clone()), true)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        if !stale.is_empty() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(stale.clone()), false)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        if membership.get_node(&node_id).is_none() {
            self.raft
                .add_learner(node_id, BasicNode { addr: peer_addr.clone() }, true)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        let voters = self.voter_ids();
        if !voters.contains(&node_id) && voters.len() < MAX_VOTERS {
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        tracing::info!(node = node_id, addr = %peer_addr, replaced = ?stale, "broker joined the Raft group");
        Ok(())
    }

    /// Removes the broker at `peer_addr` from the group (on the leader): a broker that left
    /// the ring and holds nothing. Learners then take the freed votes, up to [`MAX_VOTERS`],
    /// so the group keeps as many voters as it can.
    pub async fn remove_member_at(&self, peer_addr: &str) -> Result<(), RaftError> {
        let unavailable = |e: &dyn std::fmt::Display| RaftError::Unavailable(e.to_string());
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        let gone: BTreeSet<NodeId> =
            membership.nodes().filter(|(_, n)| n.addr == peer_addr).map(|(id, _)| *id).collect();
        if gone.is_empty() {
            return Ok(());
        }
        if membership.voter_ids().any(|id| gone.contains(&id)) {
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(gone.clone()), true)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(gone.clone()), false)
            .await
            .map_err(|e| unavailable(&e))?;
        let membership = self.raft.metrics().borrow().membership_config.membership().clone();
        let free = MAX_VOTERS.saturating_sub(membership.voter_ids().count());
        let promoted: BTreeSet<NodeId> = membership.learner_ids().take(free).collect();
        if !promoted.is_empty() {
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(promoted.clone()), false)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        tracing::info!(addr = %peer_addr, removed = ?gone, ?promoted, "broker left the Raft group");
        Ok(())
    }

    /// The node id the broker at `addr` answers with, if it answers within [`LIVENESS_TIMEOUT`].
    async fn node_id_at(&self, addr: &str) -> Option<NodeId> {
        let call = self.network.http().get(format!("http://{addr}/raft/node")).timeout(LIVENESS_TIMEOUT);
        answer_json::<NodeId>(call.send().await.ok()?).await.ok()
    }

    pub fn peer_router(&self) -> axum::Router {
        super::peer_api::router(self.clone())
    }

    pub async fn shutdown(&self) {
        // Raft's core may be waiting inside a write for disk space; it must see the shutdown.
        self.log_store.stop_waiting();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

enum Forward {
    To(String),
    Failed(RaftError),
}
