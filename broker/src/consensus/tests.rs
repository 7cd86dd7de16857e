//! The Raft layer on real files and real sockets.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

use super::cluster_state::{consumer, Command, CommandResult, OffsetCommit};
use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::type_config::{Entry, LogId, StoreError, TypeConfig, Vote};
use super::{RaftConfig, RaftError, RaftNode};
use crate::peer::PeerHttp;

struct TempStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for TempStores {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(openraft::AnyError::new(&e)))?;
        let log =
            LogStore::open(dir.path()).map_err(|e| openraft::StorageIOError::write(openraft::AnyError::new(&e)))?;
        let sm = StateMachine::open(dir.path(), log.space_wait())
            .map_err(|e| openraft::StorageIOError::write(openraft::AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    Suite::test_all(TempStores).expect("openraft's storage test suite");
}

fn entry(term: u64, index: u64) -> Entry {
    Entry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank }
}

#[tokio::test]
async fn log_survives_reopen_and_a_torn_tail_frame_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = LogStore::open(dir.path()).expect("open");
        assert!(log.is_pristine());
        log.blocking_append((1..=10).map(|i| entry(1, i))).await.expect("append");
        log.save_vote(&Vote::new(3, 1)).await.expect("vote");
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 9)).await.expect("truncate");
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 2)).await.expect("purge");
    }
    let mut log = LogStore::open(dir.path()).expect("reopen");
    assert!(!log.is_pristine());
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
    let indexes: Vec<u64> =
        log.try_get_log_entries(0..100).await.expect("read").iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, (3..=8).collect::<Vec<_>>());
    drop(log);

    let file = dir.path().join("raft.log");
    let len = std::fs::metadata(&file).expect("stat").len();
    std::fs::OpenOptions::new().write(true).open(&file).expect("open").set_len(len - 3).expect("cut");
    let mut log = LogStore::open(dir.path()).expect("reopen after cut");
    let indexes: Vec<u64> =
        log.try_get_log_entries(0..100).await.expect("read").iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, (3..=7).collect::<Vec<_>>(), "the cut frame is dropped, the rest kept");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

async fn start(dir: &std::path::Path, id: u64, port: u16, bootstrap: bool, snapshot_every: u64) -> RaftNode {
    start_serving(dir, id, port, bootstrap, snapshot_every).await.0
}

/// Like [`start`], with the task serving the peer port (abort it to free the port).
async fn start_serving(
    dir: &std::path::Path,
    id: u64,
    port: u16,
    bootstrap: bool,
    snapshot_every: u64,
) -> (RaftNode, tokio::task::JoinHandle<()>) {
    let node = RaftNode::start(RaftConfig {
        node_id: id,
        peer_addr: format!("127.0.0.1:{port}"),
        dir: dir.to_path_buf(),
        snapshot_every,
        http: PeerHttp::new(None),
    })
    .await
    .expect("start raft");
    if bootstrap && node.is_pristine() {
        node.initialize_alone().await.expect("initialize");
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind peer port");
    let router = node.peer_router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (node, server)
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn register(id: &str) -> Command {
    Command::Register(consumer(id, "g", &["t"]))
}
fn commit(offset: u64) -> Command {
    Command::Commit(vec![OffsetCommit { group: "g".into(), topic: "t".into(), partition: 0, offset, reset: 0 }])
}

#[tokio::test]
async fn a_single_node_keeps_its_state_across_restarts_with_and_without_snapshots() {
    for snapshot_every in [3, 10_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let node = start(dir.path(), 1, port, true, snapshot_every).await;
        wait_until("ready", || node.is_ready()).await;
        assert_eq!(node.propose(register("c1")).await.expect("propose"), CommandResult::Registered { new_group: true });
        for offset in 1..=10 {
            node.propose(commit(offset)).await.expect("commit");
        }
        node.shutdown().await;
        drop(node);
        let snapshot_built = dir.path().join("snapshot.json").exists();
        assert_eq!(snapshot_built, snapshot_every == 3);

        let node = RaftNode::start(RaftConfig {
            node_id: 1,
            peer_addr: format!("127.0.0.1:{port}"),
            dir: dir.path().to_path_buf(),
            snapshot_every,
            http: PeerHttp::new(None),
        })
        .await
        .expect("restart");
        wait_until("ready after restart", || node.is_ready()).await;
        wait_until("state replayed", || node.read(|s| s.committed("g", "t", 0) == Some(10))).await;
        assert!(node.read(|s| s.consumers.contains_key("c1")));
        assert_eq!(node.propose(register("c1")).await.expect("propose"), CommandResult::AlreadyRegistered);
        node.shutdown().await;
    }
}

/// A broker upgraded onto a snapshot written before groups had idle clocks (the same file
/// without `idle_groups`) loads it, and sweeps its groups from then on.
#[tokio::test]
async fn a_snapshot_from_before_idle_clocks_loads_and_idle_groups_expire_from_the_next_sweep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let (node, server) = start_serving(dir.path(), 1, port, true, 3).await;
    wait_until("ready", || node.is_ready()).await;
    node.propose(register("c1")).await.expect("register");
    node.propose(commit(7)).await.expect("commit");
    node.propose(commit(9)).await.expect("commit");
    node.propose(Command::Goodbye { consumer_id: "c1".into(), offsets: Vec::new() }).await.expect("goodbye");
    let path = dir.path().join("snapshot.json");
    let read_snapshot = || -> Option<serde_json::Value> { serde_json::from_slice(&std::fs::read(&path).ok()?).ok() };
    let left = |s: &serde_json::Value| s["state"]["consumers"] == serde_json::json!({});
    wait_until("a snapshot after the goodbye", || read_snapshot().is_some_and(|s| left(&s))).await;
    node.shutdown().await;
    server.abort();
    let _ = server.await;
    drop(node);
    let mut snapshot = read_snapshot().expect("snapshot");
    assert_eq!(snapshot["state"]["offsets"]["g"]["t"]["0"], 9, "the snapshot holds the group: {snapshot}");
    let state = snapshot["state"].as_object_mut().expect("a state object");
    assert!(state.remove("idle_groups").is_some(), "written by this version");
    std::fs::write(&path, serde_json::to_vec(&snapshot).expect("json")).expect("write the old format");

    let node = start(dir.path(), 1, port, false, 3).await;
    wait_until("ready after restart", || node.is_ready()).await;
    wait_until("state loaded", || node.read(|s| s.committed("g", "t", 0) == Some(9))).await;
    let sweep = |now_ms| Command::SweepGroups { now_ms, retention_ms: 1_000 };
    let started = node.propose(sweep(5_000)).await.expect("sweep");
    assert_eq!(started, CommandResult::GroupsSwept { idle: 1, removed: vec![] }, "its clock starts now");
    let expired = node.propose(sweep(6_000)).await.expect("sweep");
    assert_eq!(expired, CommandResult::GroupsSwept { idle: 0, removed: vec!["g".into()] });
    assert_eq!(node.read(|s| s.committed("g", "t", 0)), None);
    node.shutdown().await;
}

#[tokio::test]
async fn three_nodes_replicate_over_http_and_followers_forward_proposals() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let leader = start(dirs[0].path(), 1, ports[0], true, 10_000).await;
    wait_until("leader ready", || leader.is_ready()).await;
    let mut nodes = vec![leader.clone()];
    for i in 1..3 {
        let node = start(dirs[i].path(), i as u64 + 1, ports[i], false, 10_000).await;
        leader.add_member(i as u64 + 1, format!("127.0.0.1:{}", ports[i])).await.expect("add member");
        nodes.push(node);
    }
    // A follower's proposal is forwarded to the leader and its result comes back.
    let result = nodes[2].propose(register("via-follower")).await.expect("forwarded propose");
    assert_eq!(result, CommandResult::Registered { new_group: true });
    nodes[1].propose(commit(42)).await.expect("forwarded commit");
    for node in &nodes {
        wait_until("replicated", || {
            node.read(|s| s.consumers.contains_key("via-follower") && s.committed("g", "t", 0) == Some(42))
        })
        .await;
    }
    for node in &nodes {
        node.shutdown().await;
    }
}

/// What a joining broker does (cluster formation): asks the leader until it is a voter.
async fn join(leader: &RaftNode, node: &RaftNode, port: u16) {
    while !node.has_settled_membership() {
        if let Err(e) = leader.add_member(node.node_id(), format!("127.0.0.1:{port}")).await {
            tracing::debug!("join refused, asking again: {e}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn brokers_joining_at_once_all_become_voters_and_a_wiped_one_replaces_its_old_id() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let leader = start(dirs[0].path(), 1, ports[0], true, 10_000).await;
    wait_until("leader ready", || leader.is_ready()).await;
    let second = start(dirs[1].path(), 2, ports[1], false, 10_000).await;
    let (third, third_server) = start_serving(dirs[2].path(), 3, ports[2], false, 10_000).await;

    // Both join at the same moment: one promotion finds the other's change under way.
    let joined = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join(join(&leader, &second, ports[1]), join(&leader, &third, ports[2])),
    )
    .await;
    assert!(joined.is_ok(), "both joined within 20 s; voters: {:?}", leader.voter_ids());
    assert_eq!(leader.voter_ids(), BTreeSet::from([1, 2, 3]), "both are voters, not one left a learner");

    // A join under a made-up id at a live voter's address is refused: it would evict that voter.
    let forged = leader.add_member(99, format!("127.0.0.1:{}", ports[1])).await;
    assert!(matches!(forged, Err(RaftError::MemberAlive(_))), "{forged:?}");
    assert_eq!(leader.voter_ids(), BTreeSet::from([1, 2, 3]), "the live voter is kept");

    // Broker 3's disk is wiped: it comes back at the same address with a new id.
    third.shutdown().await;
    third_server.abort();
    let _ = third_server.await;
    drop(third);
    let wiped = start(dirs[3].path(), 4, ports[2], false, 10_000).await;
    tokio::time::timeout(Duration::from_secs(20), join(&leader, &wiped, ports[2])).await.expect("rejoined in 20 s");
    assert_eq!(leader.voter_ids(), BTreeSet::from([1, 2, 4]));
    let nodes: Vec<u64> =
        leader.raft().metrics().borrow().membership_config.membership().nodes().map(|(id, _)| *id).collect();
    assert_eq!(nodes, vec![1, 2, 4], "the old id is gone, not kept as a learner");
    assert_eq!(
        wiped.propose(register("after-rejoin")).await.expect("propose"),
        CommandResult::Registered { new_group: true }
    );
    for node in [leader, second, wiped] {
        node.shutdown().await;
    }
}

#[test]
fn a_damaged_vote_file_stops_the_start_instead_of_forgetting_the_vote() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("vote.json"), b"{not a vote").expect("write");
    assert!(LogStore::open(dir.path()).is_err());
}
