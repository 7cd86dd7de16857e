//! Issue 12 in containers: resizing a cluster found through a headless service. Three broker
//! containers on an IPv6 network whose aliases play the service (tests/src/docker.rs) take
//! keyed writes through every broker while a 2-member group polls all of them (the workload of
//! tests/resize.rs). Containers runnel-3, runnel-4 and runnel-5 are then added one at a time, as
//! a StatefulSet scaled up creates its pods, each counting the brokers from the service's
//! records and its own ordinal; while runnel-4 joins, the Raft leader (an original broker) is
//! killed with `docker kill` and started again a few seconds later. Once six brokers serve, a
//! resize call shrinks the cluster to three and the leaving containers are stopped when listed
//! removable. The checker proves every acknowledged record was consumed, per key in order, that
//! no committed offset went backwards and that no write waited too long.
//!
//! Needs Docker and the image `runnel:dev` (`scripts/build-image`; `RUNNEL_TEST_IMAGE` picks
//! another tag). Where `docker info` fails it skips on a developer's machine and fails in CI
//! (`CI` set).

use std::time::{Duration, Instant};

use runnel_tests::docker::{self, DockerCluster};
use runnel_tests::resize_views::{cluster_json, wait_for_removable, wait_for_ring};
use runnel_tests::workload::{endpoint, raft_voters, set_up, wait_for_voters, Endpoints, Workload};
use serde_json::Value;

/// The headless service's name: the alias every broker container carries.
const SERVICE: &str = "runnel";
/// How long a write may wait, and a partition the killed broker led may stay without an
/// acknowledged write: the bound, the same as tests/docker_cluster.rs allows a kill.
const MAX_UNAVAILABLE: Duration = Duration::from_secs(10);
/// The whole scenario stops itself after this (well before nextest's own limit for this test in
/// .config/nextest.toml), so the containers are always removed by the guard.
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);
const TOPIC: &str = "docker-resize";
/// How long the killed broker stays down: a restart's few seconds, as a pod's would take.
const DOWN_FOR: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_containers_grow_to_six_one_at_a_time_through_a_kill_and_shrink_to_three_under_load() {
    let Some(image) = docker::image_for_test() else { return };
    let started = Instant::now();
    let mut cluster = tokio::time::timeout(Duration::from_secs(90), DockerCluster::start(&image, 3, SERVICE))
        .await
        .expect("creating and starting the containers took over 90 s");
    eprintln!("{}: 3 containers of {image} on the IPv6 network {}", cluster.run, cluster.network);
    match tokio::time::timeout(SCENARIO_LIMIT, scenario(&mut cluster)).await {
        Ok(()) => eprintln!("passed in {:?}", started.elapsed()),
        Err(_) => panic!("the scenario did not finish within {SCENARIO_LIMIT:?}"),
    }
}

async fn scenario(cluster: &mut DockerCluster) {
    let endpoints = Endpoints::default();
    for i in 0..cluster.size() {
        cluster.hand_to_workload(&endpoints, i, Some(3)).await;
    }
    let first = endpoint(&endpoints, 0);
    wait_for_voters(&first, &[0, 1, 2], Duration::from_secs(30)).await;
    wait_for_ring(&first, 3, Duration::from_secs(30)).await;
    let workload = Workload::start(endpoints.clone(), TOPIC, 48, 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!workload.acks().is_empty(), "the workload is acknowledged through the containers");

    // The group stops reading while the cluster grows, so the old partitions hold a backlog
    // when the new ones open: reading a new partition before its parents would break key order.
    workload.pause_consuming(true);
    let grow_started = Instant::now();
    let runnel_3 = cluster.add_broker().await;
    cluster.hand_to_workload(&endpoints, runnel_3, None).await;
    eprintln!("runnel-3 answered {:?} after docker start", grow_started.elapsed());

    let runnel_4 = cluster.add_broker().await;
    let added_4 = Instant::now();
    // The Raft leader is the controller: it takes joiners into Raft and opens the new ring
    // generations. Killed while runnel-4 joins, it leaves a grow half done for a new controller
    // to finish, with failovers of its partitions at the same time. (Should a new broker lead
    // Raft by now, an original broker is killed all the same.)
    let view = cluster_json(&first).await.expect("cluster view");
    let raft_leader = view["raftLeader"].as_u64();
    let victim = raft_leader.filter(|l| *l < 3).unwrap_or(1) as usize;
    let victim_led = numbers(current_partitions(&view).filter(|p| p["leader"] == victim));
    // Clients stop using it first (as a client would after its first timeout): a request caught
    // in flight by a vanished address waits for the client's own timeout, not for the cluster.
    set_up(&endpoints, victim, false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(victim).await;
    let killed_at = Instant::now();
    eprintln!(
        "killed broker {victim} (Raft leader {raft_leader:?}, leading partitions {victim_led:?} of generation {}) {:?} \
         after runnel-4's docker start",
        view["generation"],
        killed_at - added_4
    );
    cluster.hand_to_workload(&endpoints, runnel_4, None).await;
    eprintln!("runnel-4 answered {:?} after docker start, with broker {victim} down", added_4.elapsed());

    let runnel_5 = cluster.add_broker().await;
    let added_5 = Instant::now();
    tokio::time::sleep(DOWN_FOR.saturating_sub(killed_at.elapsed())).await;
    cluster.start_again(victim).await;
    let down = killed_at.elapsed();
    cluster.hand_to_workload(&endpoints, runnel_5, None).await;
    let last_ready = Instant::now();
    eprintln!("runnel-5 answered {:?} after docker start", last_ready - added_5);
    let back = cluster.hand_to_workload(&endpoints, victim, None).await;
    eprintln!("broker {victim} was down {down:?}; after docker start it answered in {back:?}");

    let grown = wait_for_ring(&endpoint(&endpoints, 0), 6, Duration::from_secs(90)).await;
    eprintln!(
        "six brokers serving {:?} after the last new container was ready, {:?} after the grow began (generation {})",
        last_ready.elapsed(),
        grow_started.elapsed(),
        grown["generation"]
    );
    let grown_partitions = numbers(current_partitions(&grown));
    tokio::time::sleep(Duration::from_secs(1)).await;
    workload.pause_consuming(false);
    eprintln!("Raft voters of six brokers: {:?}", raft_voters(&endpoint(&endpoints, 0)).await);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Shrink back to three: the highest ordinals leave once nothing only they hold is needed.
    workload.pause_consuming(true);
    let asked = runnel_tests::tokens::harness_http(None)
        .post(format!("{}/v1/cluster/resize", endpoint(&endpoints, 0).discovery))
        .query(&[("brokers", "3")])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("resize call");
    let shrink_asked = Instant::now();
    assert_eq!(asked.status(), reqwest::StatusCode::OK, "resize to 3");
    let answer: Value = asked.json().await.expect("resize answer");
    assert!(answer["brokers"] == 3 && answer["changed"] == true, "resize to 3 answered {answer}");
    let shrunk = wait_for_removable(&endpoint(&endpoints, 0), &[3, 4, 5], Duration::from_secs(90)).await;
    let removable_after = shrink_asked.elapsed();
    eprintln!(
        "runnel-3 to runnel-5 removable {removable_after:?} after the resize call (generation {})",
        shrunk["generation"]
    );
    for i in 3..6 {
        set_up(&endpoints, i, false);
        let code = cluster.stop(i).await;
        assert_eq!(code, 0, "runnel-{i}, removable, stops cleanly on docker stop");
    }
    workload.pause_consuming(false);
    wait_for_ring(&endpoint(&endpoints, 0), 3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let report = workload.finish(Duration::from_secs(30)).await;
    // Only a figure: a partition the grow sealed before it took another write has no first
    // write, and every write's wait (also one to a partition of the killed broker) is checked.
    let first_acks = report.first_acks_after(killed_at, &victim_led);
    eprintln!("killed: first acknowledged write per partition broker {victim} led: {first_acks:?}");
    eprintln!("{} records acknowledged; longest wait {:?}", report.acks().len(), report.longest_wait());
    // No acknowledged record lost, per-key order, offsets never rewound, no write waited too long.
    report.check(MAX_UNAVAILABLE);
    assert!(
        report.acks().iter().any(|a| grown_partitions.contains(&a.partition)),
        "no write reached a partition of the six brokers' generation {grown_partitions:?}"
    );
}

/// The partitions of the view's current generation (those that take writes).
fn current_partitions(view: &Value) -> impl Iterator<Item = &Value> {
    let partitions = view["partitions"].as_array().into_iter().flatten();
    partitions.filter(|p| p["generation"] == view["generation"])
}

fn numbers<'a>(partitions: impl Iterator<Item = &'a Value>) -> Vec<u32> {
    partitions.filter_map(|p| Some(p["partition"].as_u64()? as u32)).collect()
}
