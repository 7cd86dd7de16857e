//! Failover and hand-over in a 3-broker cluster under continuous load: kill -9 of the Raft
//! leader and of a partition leader (then restart), and a SIGTERM, checked by the workload's
//! checker (every acknowledged record consumed, per-key order, offsets never rewound).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::workload::{cluster_view, raft_voters, set_up, Endpoint, Endpoints, Workload};
use runnel_tests::{start_cluster, BrokerProcess, TestClient};

/// The bound on how long a partition may stay unavailable.
const MAX_UNAVAILABLE: Duration = Duration::from_secs(10);

fn endpoints(brokers: &[BrokerProcess]) -> Endpoints {
    Endpoints::new(std::sync::Mutex::new(brokers.iter().map(Endpoint::of).collect()))
}

/// Waits until all three brokers vote in Raft, as a formed cluster must: with a broker left a
/// learner, losing one voter would stop every consumer call.
async fn wait_all_voters(endpoints: &Endpoints) {
    let first = endpoints.lock().unwrap_or_else(|p| p.into_inner())[0].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let voters = raft_voters(&first).await;
        if voters.as_deref() == Some(&[0, 1, 2]) {
            return;
        }
        assert!(Instant::now() < deadline, "the three brokers are not all Raft voters within 30 s: {voters:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every partition is led by its ring owner again; returns how long it took.
async fn wait_balanced(endpoints: &Endpoints, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let first_up = endpoints.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|e| e.up).cloned();
        if let Some((_, partitions)) = cluster_view(&first_up.expect("a broker is up")).await {
            if partitions.values().all(|(leader, owner)| leader == owner) {
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < within, "the cluster did not return to balance within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Register, commit and goodbye through a live broker while another is down.
async fn consumer_calls_work(client: &TestClient, id: &str) {
    assert_eq!(client.register(id, "probes", &["faults"], None).await.0, StatusCode::OK, "register with a broker down");
    assert_eq!(client.commit(id).await, StatusCode::NO_CONTENT, "commit with a broker down");
    assert_eq!(client.goodbye(id, true).await.0, StatusCode::OK, "goodbye with a broker down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leaders_are_replaced_and_no_acknowledged_record_is_lost() {
    kill_leaders_twice(false).await;
}

/// Issue 14: idempotent producers, each request retried through any broker until it is
/// acknowledged, while leaders are killed: every record is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producers_store_each_record_once_while_leaders_are_killed() {
    assert_eq!(kill_leaders_twice(true).await, 0);
}

/// Kills the Raft leader, then a broker that only leads partitions (each restarted after 6 s),
/// under the workload; checks the report; answers how many records were stored twice.
async fn kill_leaders_twice(idempotent: bool) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let endpoints = endpoints(&brokers);
    wait_all_voters(&endpoints).await;
    let workload = match idempotent {
        true => Workload::start_idempotent(endpoints.clone(), "faults", 48, 4).await,
        false => Workload::start(endpoints.clone(), "faults", 48, 4).await,
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut failovers = Vec::new();
    for round in 0..2 {
        let any = endpoints.lock().unwrap_or_else(|p| p.into_inner())[0].clone();
        let (raft_leader, partitions) = cluster_view(&any).await.expect("cluster view");
        let raft_leader = raft_leader.expect("a Raft leader") as usize;
        // Round 0 kills the Raft leader (the controller); round 1 a broker that only leads partitions.
        let victim = if round == 0 { raft_leader } else { (raft_leader + 1) % 3 };
        let led: Vec<u32> = partitions.iter().filter(|(_, (l, _))| *l as usize == victim).map(|(p, _)| *p).collect();
        assert!(!led.is_empty(), "broker {victim} leads something");
        let killed_at = Instant::now();
        brokers[victim].kill9();
        set_up(&endpoints, victim, false);
        let survivor = TestClient::new(&brokers[(victim + 1) % 3]);
        consumer_calls_work(&survivor, &format!("probe-{round}")).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        failovers.push((victim, killed_at, led));
        brokers[victim].restart();
        set_up(&endpoints, victim, true);
        let balanced = wait_balanced(&endpoints, Duration::from_secs(30)).await;
        eprintln!("round {round}: broker {victim} back; balanced again after {balanced:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let report = workload.finish(Duration::from_secs(30)).await;
    for (victim, killed_at, led) in &failovers {
        let firsts = report.first_acks_after(*killed_at, led);
        eprintln!("broker {victim} killed: first acknowledged write per partition it led: {firsts:?}");
        for (partition, first) in firsts {
            let first = first.unwrap_or_else(|| panic!("partition {partition} never took a write after the kill"));
            assert!(first <= MAX_UNAVAILABLE, "partition {partition} unavailable for {first:?}");
        }
    }
    eprintln!("{} records acknowledged; longest wait {:?}", report.acks().len(), report.longest_wait());
    report.check(MAX_UNAVAILABLE);
    eprintln!(
        "idempotent producers: {idempotent}; records stored twice: {}; delivered again to the group: {}",
        report.stored_twice(),
        report.delivered_again()
    );
    report.stored_twice()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_hands_partitions_over_without_a_failed_produce() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    wait_all_voters(&endpoints(&brokers)).await;
    let endpoint0 = Endpoint::of(&brokers[0]);
    let led_by_0: Vec<u32> = cluster_view(&endpoint0)
        .await
        .expect("cluster view")
        .1
        .into_iter()
        .filter(|(_, (leader, _))| *leader == 0)
        .map(|(p, _)| p)
        .collect();
    assert_eq!(led_by_0.len(), 4);

    // Keyed writes through brokers 1 and 2 (raw HTTP, no client retries) while broker 0 stops.
    let writer = {
        let urls = [clients[1].messages_url("handover"), clients[2].messages_url("handover")];
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut failures = Vec::new();
            let started = Instant::now();
            let mut sent = 0u32;
            while started.elapsed() < Duration::from_secs(6) {
                let url = &urls[sent as usize % 2];
                let response = http
                    .post(url)
                    .query(&[("partitionKey", format!("k{}", sent % 64))])
                    .body(format!("{sent}"))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == StatusCode::OK => {}
                    Ok(r) => failures.push(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
                    Err(e) => failures.push(e.to_string()),
                }
                sent += 1;
            }
            (sent, failures)
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(brokers[0].terminate(), "broker 0 exits cleanly on SIGTERM");
    let (sent, failures) = writer.await.expect("writer");
    assert!(
        failures.is_empty(),
        "{} of {sent} produces failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let (_, partitions) = cluster_view(&Endpoint::of(&brokers[1])).await.expect("cluster view");
    for p in &led_by_0 {
        assert_ne!(partitions[p].0, 0, "partition {p} moved away from the stopped broker");
    }
    // Back after the restart, broker 0 gets its partitions again.
    brokers[0].restart();
    let endpoints = endpoints(&brokers);
    wait_balanced(&endpoints, Duration::from_secs(30)).await;
}
