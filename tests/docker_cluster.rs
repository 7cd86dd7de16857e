//! The container image as an operator runs it: three broker containers on a user-defined IPv6
//! network that plays a Kubernetes headless service (the alias `runnel` lists every broker, the
//! alias `runnel-N.runnel` is broker N's own name), found through `RUNNEL_SERVICE_NAME`. Under
//! the fault workload's load (tests/src/workload.rs, the same checker as tests/failover.rs), one
//! broker is killed with `docker kill` and started again, then one is cut off the network and
//! put back; the checker then proves that no acknowledged record was lost, per-key order held
//! and committed offsets never went backwards, and (the producers are idempotent, issue 14)
//! that every record is stored exactly once. Tokens are on (the harness's key) and the brokers
//! talk TLS to each other (a test CA's certificate for their names), as in production.
//!
//! Needs Docker and the image `runnel:dev` (`scripts/build-image`, which .ci/run runs first;
//! `RUNNEL_TEST_IMAGE` picks another tag). Where `docker info` fails it skips on a developer's
//! machine and fails in CI (`CI` set).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_client::{Brokers, Consumer, ConsumerConfig, Producer, StartFrom};
use runnel_tests::docker::{self, wait_ready, DockerCluster};
use runnel_tests::tokens::{self, harness_access, harness_http};
use runnel_tests::workload::{endpoint, set_up, Endpoint, Endpoints, Workload};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// The headless service's name: the alias every broker container carries.
const SERVICE: &str = "runnel";
/// How long a partition may stay without an acknowledged write after a broker fails.
const MAX_UNAVAILABLE: Duration = Duration::from_secs(10);
/// The whole scenario stops itself after this (well before nextest's own limit for this test in
/// .config/nextest.toml), so the containers are always removed by the guard.
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);
/// The topic of the workload, and the topic of the cut-off broker's write.
const TOPIC: &str = "docker-faults";
const CUT_TOPIC: &str = "docker-cut";
/// A discovery port inside the cut-off broker's network namespace that answers with `localhost`.
const LOCAL_DISCOVERY_PORT: &str = "9350";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_containers_on_an_ipv6_network_survive_a_kill_a_restart_and_a_partition() {
    let Some(image) = docker::image_for_test() else { return };
    let started = Instant::now();
    let cluster = tokio::time::timeout(Duration::from_secs(90), DockerCluster::start(&image, 3, SERVICE))
        .await
        .expect("creating and starting the containers took over 90 s");
    eprintln!("{}: 3 containers of {image} on the IPv6 network {}", cluster.run, cluster.network);
    match tokio::time::timeout(SCENARIO_LIMIT, scenario(&cluster)).await {
        Ok(()) => eprintln!("passed in {:?}", started.elapsed()),
        Err(_) => panic!("the scenario did not finish within {SCENARIO_LIMIT:?}"),
    }
}

async fn scenario(cluster: &DockerCluster) {
    let mut endpoints = Vec::new();
    for i in 0..cluster.size() {
        endpoints.push(cluster.endpoint(i).await);
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        wait_ready(endpoint, Some(3), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("broker {i} ({}): {e}; is {} up to date?", endpoint.discovery, cluster.image));
    }
    let endpoints: Endpoints = Endpoints::new(std::sync::Mutex::new(endpoints));
    let formed = wait_balanced(&endpoints, Duration::from_secs(30)).await;
    let leaders: std::collections::BTreeSet<u32> = formed.partitions.values().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), 3, "the partitions are spread over the 3 brokers: {:?}", formed.partitions);
    eprintln!(
        "one cluster: Raft leader {:?} seen by all 3, {} partitions led by {leaders:?}",
        formed.raft_leader,
        formed.partitions.len()
    );

    assert_access_controlled(&endpoint(&endpoints, 0)).await;

    let workload = Workload::start_idempotent(endpoints.clone(), TOPIC, 48, 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!workload.acks().is_empty(), "the workload is acknowledged through the containers");

    // 1. docker kill of the Raft leader (the controller), then docker start of the same container.
    let view = view_of(&endpoint(&endpoints, 0)).await.expect("cluster view");
    let victim = view.raft_leader.expect("a Raft leader") as usize;
    let killed_led = view.led_by(victim);
    // Clients stop using it first (as a client would after its first timeout): a request caught
    // in flight by a vanished address waits for the client's own timeout, not for the cluster.
    set_up(&endpoints, victim, false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked_before = workload.acks().len();
    let killed_at = Instant::now();
    cluster.kill(victim).await;
    eprintln!("killed broker {victim} (the Raft leader, leading partitions {killed_led:?})");
    let survivor = endpoint(&endpoints, (victim + 1) % 3);
    let probed = consumer_calls_work(&survivor, "probe-kill").await;
    eprintln!(
        "register, commit and goodbye of a probe consumer worked through broker {} in {probed:?}",
        (victim + 1) % 3
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let acked_while_down = workload.acks().len() - acked_before;
    assert!(acked_while_down > 0, "no write was acknowledged while broker {victim} was down");
    cluster.start_again(victim).await;
    let down = killed_at.elapsed();
    let back = cluster.hand_to_workload(&endpoints, victim, Some(3)).await;
    let balanced = wait_balanced(&endpoints, Duration::from_secs(60)).await;
    eprintln!(
        "broker {victim} down {down:?} ({acked_while_down} writes acknowledged meanwhile); after docker start it \
         answered in {back:?}, and led its partitions again after {:?} (Raft leader now {:?})",
        killed_at.elapsed() - down,
        balanced.raft_leader
    );

    // 2. docker network disconnect of the (new) Raft leader, then connect it back.
    let victim2 = balanced.raft_leader.expect("a Raft leader") as usize;
    let cut_led = balanced.led_by(victim2);
    let key = key_led_by(&endpoints, &balanced, victim2).await;
    let others: Vec<usize> = (0..3).filter(|i| *i != victim2).collect();
    let majority = producer_on(&endpoints, &others);
    set_up(&endpoints, victim2, false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked_before = workload.acks().len();
    let cut_at = Instant::now();
    cluster.disconnect(victim2).await;
    eprintln!("cut broker {victim2} (the Raft leader, leading partitions {cut_led:?}) off the network");
    // Writes through the majority, to the partition the cut-off broker led, while it also takes one.
    let during = {
        let key = key.0.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..5 {
                let record = json!({"phase": "during", "key": key, "n": n}).to_string();
                send_until_acked(&majority, &key, &record, Duration::from_secs(30)).await;
                acked.push(record);
            }
            acked
        })
    };
    let live = endpoint(&endpoints, others[0]);
    let (refusal, probed) =
        tokio::join!(cut_off_write(cluster, victim2, &key.0), consumer_calls_work(&live, "probe-cut"));
    eprintln!("register, commit and goodbye of a probe consumer worked through broker {} in {probed:?}", others[0]);
    eprintln!("broker {victim2}, cut off, did not acknowledge a write: {refusal}");
    let during = during.await.expect("majority writes");
    let acked_while_cut = workload.acks().len() - acked_before;
    assert!(acked_while_cut > 0, "no write was acknowledged while broker {victim2} was cut off");
    cluster.connect(victim2).await;
    let cut = cut_at.elapsed();
    let back = cluster.hand_to_workload(&endpoints, victim2, Some(3)).await;
    let balanced = wait_balanced(&endpoints, Duration::from_secs(60)).await;
    eprintln!(
        "broker {victim2} cut off {cut:?} ({acked_while_cut} writes acknowledged meanwhile); reconnected, it \
         answered in {back:?}, and led its partitions again after {:?} (Raft leader now {:?})",
        cut_at.elapsed() - cut,
        balanced.raft_leader
    );
    // Its partition is led by it again: what it wrote alone must be gone, what the majority took must be there.
    let after = json!({"phase": "after", "key": key.0}).to_string();
    let rejoined = producer_on(&endpoints, &[victim2]);
    let after_partition = send_until_acked(&rejoined, &key.0, &after, Duration::from_secs(20)).await;
    assert_eq!(after_partition.partition, key.1, "key {} stays on partition {}", key.0, key.1);
    let mut expected = vec![key.2.clone()];
    expected.extend(during);
    expected.push(after);
    check_partition_history(&endpoints, &key.0, &expected).await;

    // 3. The checker.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = workload.finish(Duration::from_secs(30)).await;
    let faults = [("killed", killed_at, &killed_led), ("cut off", cut_at, &cut_led)];
    for (what, at, led) in faults {
        eprintln!("{what}: first acknowledged write per partition it led: {:?}", report.first_acks_after(at, led));
    }
    eprintln!("{} records acknowledged; longest wait {:?}", report.acks().len(), report.longest_wait());
    // No acknowledged record lost, per-key order, offsets never rewound, no write waited too
    // long, and every record stored exactly once.
    report.check(MAX_UNAVAILABLE);
    eprintln!("records stored twice: {}", report.stored_twice());
    for (what, at, led) in faults {
        for (partition, first) in report.first_acks_after(at, led) {
            let first = first.unwrap_or_else(|| panic!("partition {partition} never took a write after it was {what}"));
            assert!(first <= MAX_UNAVAILABLE, "partition {partition} unavailable for {first:?} after it was {what}");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Partition {
    leader: u32,
    epoch: u64,
    owner: u32,
}

/// One broker's `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    raft_leader: Option<u32>,
    raft_voters: Vec<u32>,
    partitions: BTreeMap<u32, Partition>,
}

impl View {
    fn balanced(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.values().all(|p| p.leader == p.owner)
    }

    fn led_by(&self, broker: usize) -> Vec<u32> {
        self.partitions.iter().filter(|(_, p)| p.leader as usize == broker).map(|(n, _)| *n).collect()
    }
}

async fn view_of(endpoint: &Endpoint) -> Option<View> {
    let http = harness_http(Some(Duration::from_secs(2)));
    let body: Value = http.get(format!("{}/v1/cluster", endpoint.discovery)).send().await.ok()?.json().await.ok()?;
    let partitions = body["partitions"]
        .as_array()?
        .iter()
        .map(|p| {
            let partition = Partition {
                leader: p["leader"].as_u64()? as u32,
                epoch: p["epoch"].as_u64()?,
                owner: p["replicas"].as_array()?.first()?.as_u64()? as u32,
            };
            Some((p["partition"].as_u64()? as u32, partition))
        })
        .collect::<Option<_>>()?;
    let raft_voters =
        body["raftVoters"].as_array()?.iter().map(|v| v.as_u64().map(|v| v as u32)).collect::<Option<_>>()?;
    Some(View { raft_leader: body["raftLeader"].as_u64().map(|l| l as u32), raft_voters, partitions })
}

/// Waits until every broker that is up reports the same view (the same Raft leader, the same
/// leaders and epochs: a broker that missed changes would show older epochs), in which all
/// three brokers vote in Raft and every partition is led by its owner. Returns that view.
async fn wait_balanced(endpoints: &Endpoints, within: Duration) -> View {
    let deadline = Instant::now() + within;
    loop {
        let up: Vec<Endpoint> = endpoints.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut views = Vec::new();
        for endpoint in up.iter().filter(|e| e.up) {
            views.push(view_of(endpoint).await);
        }
        if let Some(Some(first)) = views.first() {
            let all_vote = first.raft_voters == [0, 1, 2];
            if first.raft_leader.is_some()
                && all_vote
                && first.balanced()
                && views.iter().all(|v| v.as_ref() == Some(first))
            {
                return first.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the brokers did not agree on a balanced cluster within {within:?}: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Register, commit and goodbye of a probe consumer through a live broker while one is down;
/// returns how long the three took.
async fn consumer_calls_work(live: &Endpoint, id: &str) -> Duration {
    let started = Instant::now();
    let http = harness_http(Some(Duration::from_secs(15)));
    let base = format!("{}/v1/consumer", live.consumer);
    let query = [("consumerId", id), ("group", "probes"), ("topic", TOPIC)];
    let status = |r: Result<reqwest::Response, reqwest::Error>| r.map(|r| r.status()).map_err(|e| e.to_string());
    assert_eq!(
        status(http.put(format!("{base}/register")).query(&query).send().await),
        Ok(StatusCode::OK),
        "register with a broker down"
    );
    let id = [("consumerId", id)];
    assert_eq!(
        status(http.post(format!("{base}/commit")).query(&id).send().await),
        Ok(StatusCode::NO_CONTENT),
        "commit with a broker down"
    );
    assert_eq!(
        status(http.post(format!("{base}/goodbye")).query(&id).send().await),
        Ok(StatusCode::OK),
        "goodbye with a broker down"
    );
    started.elapsed()
}

/// The brokers run as an operator should (SPEC §13): the client ports refuse a request
/// without a token, and the peer port speaks only TLS (the brokers formed a cluster through it).
async fn assert_access_controlled(live: &Endpoint) {
    let http = reqwest::Client::new();
    let open = http.post(format!("{}/v1/topic/{TOPIC}/messages", live.producer)).body("{}").send().await;
    assert_eq!(open.map(|r| r.status()).ok(), Some(StatusCode::UNAUTHORIZED), "a produce without a token");
    let peer = live.producer.replace(":9251", ":9255");
    let plain = http.get(format!("{peer}/raft/node")).timeout(Duration::from_secs(5)).send().await;
    assert!(plain.is_err(), "plain HTTP on the peer port was answered: {plain:?}");
}

/// The client library's producer on some of the brokers (by their current addresses).
fn producer_on(endpoints: &Endpoints, brokers: &[usize]) -> Producer {
    Producer::new(
        Brokers::fixed(brokers.iter().map(|i| host_of(&endpoint(endpoints, *i)))).with_access(harness_access()),
    )
}

/// `[addr]` of an endpoint, as the client library takes a host.
fn host_of(endpoint: &Endpoint) -> String {
    let rest = endpoint.producer.trim_start_matches("http://");
    rest.rsplit_once(':').map_or(rest, |(host, _)| host).to_string()
}

/// A key of the cut-off topic whose partition `broker` leads: (key, partition, the record that
/// was written with it, acknowledged, before the cut).
async fn key_led_by(endpoints: &Endpoints, view: &View, broker: usize) -> (String, u32, String) {
    let producer = producer_on(endpoints, &[0, 1, 2]);
    for k in 0..200 {
        let key = format!("cut-{k}");
        let record = json!({"phase": "before", "key": key}).to_string();
        let stored = send_until_acked(&producer, &key, &record, Duration::from_secs(20)).await;
        if view.partitions.get(&stored.partition).is_some_and(|p| p.leader as usize == broker) {
            return (key, stored.partition, record);
        }
    }
    panic!("no key of {CUT_TOPIC} lands on a partition that broker {broker} leads");
}

async fn send_until_acked(producer: &Producer, key: &str, record: &str, within: Duration) -> runnel_client::Produced {
    let deadline = Instant::now() + within;
    loop {
        match producer.send_batch(CUT_TOPIC, Some(key), vec![record.to_string().into()]).await {
            Ok(stored) => return stored,
            Err(e) => assert!(Instant::now() < deadline, "{record} was not acknowledged within {within:?}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends a write for `key` to broker `i` itself while it is cut off, with the `runnel` tool run
/// from the image inside the broker's network namespace (`--network container:…`), so that
/// `localhost` is the broker. A helper `runnel-discovery` there lists only `localhost`, so the
/// tool's every attempt goes to the cut-off broker. The write must not be acknowledged: the tool
/// gives up with an error, or is still waiting when the test stops it. Returns what happened.
async fn cut_off_write(cluster: &DockerCluster, i: usize, key: &str) -> String {
    let discovery_port = format!("RUNNEL_DISCOVERY_PORT={LOCAL_DISCOVERY_PORT}");
    let mut discovery = cluster.helper_args(
        i,
        "local-discovery",
        "runnel-discovery",
        &["RUNNEL_BROKER_NAMES=localhost", &discovery_port],
    );
    discovery.insert(1, "-d".to_string());
    docker::docker(&discovery.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .unwrap_or_else(|e| panic!("starting runnel-discovery next to broker {i}: {e}"));
    let record = json!({"phase": "cut-off", "key": key}).to_string();
    let mut outcome = None;
    for attempt in 0..20 {
        let name = format!("cut-off-producer-{attempt}");
        let token = format!("RUNNEL_TOKEN={}", tokens::token());
        let mut args = cluster.helper_args(i, &name, "runnel", &[&token]);
        args.insert(1, "-i".to_string());
        args.extend(
            ["produce", CUT_TOPIC, "--key", key, "--host", "localhost", "--discovery-port", LOCAL_DISCOVERY_PORT]
                .map(String::from),
        );
        let mut tool = tokio::process::Command::new(std::env::var("DOCKER").unwrap_or_else(|_| "docker".into()))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("docker run runnel produce");
        let mut stdin = tool.stdin.take().expect("stdin");
        stdin.write_all(format!("{record}\n").as_bytes()).await.expect("write the record");
        drop(stdin);
        let sent_at = Instant::now();
        match tokio::time::timeout(Duration::from_secs(20), tool.wait_with_output()).await {
            Ok(Ok(output)) => {
                let stderr = String::from_utf8_lossy(&output.stderr).trim().replace('\r', " ");
                assert!(
                    !output.status.success(),
                    "broker {i} acknowledged a write while cut off from the others: {stderr}"
                );
                if stderr.contains(&format!(":{LOCAL_DISCOVERY_PORT}")) {
                    // The helper discovery service was not listening yet: not an answer of the broker.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                outcome = Some(format!("`runnel produce` failed after {:?}: {stderr}", sent_at.elapsed()));
            }
            Ok(Err(e)) => panic!("waiting for `runnel produce`: {e}"),
            Err(_) => {
                cluster.remove_helper(&name).await;
                outcome = Some(format!("no acknowledgement after {:?}; the tool was stopped", sent_at.elapsed()));
            }
        }
        break;
    }
    cluster.remove_helper("local-discovery").await;
    outcome.expect("the local discovery service never answered")
}

/// Reads the cut-off topic from the start with a fresh group (through all three brokers, each
/// serving what it leads) and checks what partition `key` holds for it: exactly the acknowledged
/// records, in order, and not the one the broker took while it was cut off.
async fn check_partition_history(endpoints: &Endpoints, key: &str, expected: &[String]) {
    let brokers = Brokers::fixed((0..3).map(|i| host_of(&endpoint(endpoints, i)))).with_access(harness_access());
    let config = ConsumerConfig {
        id: "history".into(),
        group: "history".into(),
        topics: vec![CUT_TOPIC.into()],
        start: StartFrom::Earliest,
        wait: runnel_client::DEFAULT_WAIT,
    };
    let mut consumer = Consumer::connect(brokers, config).await.expect("register the history reader");
    let expected: Vec<Value> = expected.iter().map(|r| serde_json::from_str(r).expect("json")).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<(i64, Value)> = Vec::new();
    loop {
        for record in consumer.poll().await.expect("poll") {
            if record.value["key"] == key {
                seen.push((record.offset, record.value));
            }
        }
        seen.sort_by_key(|(offset, _)| *offset);
        seen.dedup_by_key(|(offset, _)| *offset);
        assert!(
            !seen.iter().any(|(_, v)| v["phase"] == "cut-off"),
            "the write the cut-off broker took alone (never acknowledged) is in the log: {seen:?}"
        );
        // Retried sends may store a record twice (at-least-once); the first copies come in order.
        let mut firsts: Vec<&Value> = Vec::new();
        for (_, v) in &seen {
            if !firsts.contains(&v) {
                firsts.push(v);
            }
        }
        if firsts.len() >= expected.len() {
            assert_eq!(firsts, expected.iter().collect::<Vec<_>>(), "the history of key {key}: {seen:?}");
            break;
        }
        assert!(Instant::now() < deadline, "key {key}: only {seen:?} of {expected:?} read back");
        tokio::time::sleep(consumer.next_poll_in().max(Duration::from_millis(100))).await;
    }
    consumer.close().await.expect("goodbye");
}
