//! SPEC §13, peer part, against real brokers: the peer port refuses (401) every request that is
//! not signed with the cluster's secret, so no one who merely reaches it can truncate, propose,
//! inject or join; a signed request cannot be replayed; a join at a live broker's address is
//! refused; and a cluster without a secret does not start.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use runnel_broker::peer::PeerSecret;
use runnel_tests::workload::{cluster_view, raft_voters, Endpoint};
use runnel_tests::{broker_binary, free_loopback_ip, signed_request, start_cluster, BrokerProcess, TestClient};
use serde_json::{json, Value};

const TOPIC: &str = "guarded";
const KEY: &str = "k";

/// Asserts a 401 with the JSON error body every refused peer request gets.
async fn assert_refused(what: &str, response: reqwest::Response) {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
    assert_eq!(json["error"], "peer_unauthenticated", "{what}: {body}");
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
}

async fn wait_all_voters(endpoint: &Endpoint) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while raft_voters(endpoint).await.as_deref() != Some(&[0, 1, 2]) {
        assert!(Instant::now() < deadline, "the three brokers are not all Raft voters within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn produce(client: &TestClient, lines: &[String]) -> Value {
    let response = client
        .http
        .post(client.messages_url(TOPIC))
        .query(&[("partitionKey", KEY)])
        .header("content-type", "application/x-ndjson")
        .header("accept", "application/json")
        .body(lines.join("\n"))
        .send()
        .await
        .expect("produce");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON acknowledgement")
}

#[tokio::test]
async fn the_peer_port_refuses_unsigned_forged_and_replayed_requests_and_acknowledged_data_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = start_cluster(dir.path(), 3, &[]);
    let secret = brokers[0].peer_secret();
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    wait_all_voters(&Endpoint::of(&brokers[0])).await;

    let lines: Vec<String> = (0..100).map(|i| json!({"seq": i}).to_string()).collect();
    let acked = produce(&clients[0], &lines).await;
    assert_eq!((acked["count"].as_u64(), acked["startOffset"].as_str()), (Some(100), Some("0")), "{acked}");
    let partition = acked["partition"].as_u64().expect("partition") as u32;
    let (_, partitions) = cluster_view(&Endpoint::of(&brokers[0])).await.expect("cluster view");
    let leader = &brokers[partitions[&partition].0 as usize];
    let peer = |path: &str| leader.url(9255, path);
    let http = reqwest::Client::new();

    // What issue 10 found deleting acknowledged records, and its siblings: all unsigned.
    let truncate = peer(&format!("/cluster/truncate/{TOPIC}/{partition}?to=0&epoch=1000000"));
    assert_refused("unsigned truncate", http.post(&truncate).send().await.expect("truncate")).await;
    let propose = json!({"Commit": [{"group": "g", "topic": TOPIC, "partition": partition, "offset": 1_000_000}]});
    let response = http.post(peer("/raft/propose")).json(&propose).send().await.expect("propose");
    assert_refused("unsigned /raft/propose", response).await;
    let mut frame = 6u32.to_le_bytes().to_vec();
    frame.extend_from_slice(b"forged");
    let response =
        http.post(peer(&format!("/cluster/produce/{TOPIC}/{partition}"))).body(frame).send().await.expect("produce");
    assert_refused("unsigned /cluster/produce", response).await;
    let names: Vec<String> = brokers.iter().map(|b| b.ip.to_string()).collect();
    let join = json!({"node_id": 4242, "peer_addr": format!("{}:9255", brokers[1].ip), "ordinal": 1, "names": names, "ranges": 4});
    let response = http.post(peer("/cluster/join")).json(&join).send().await.expect("join");
    assert_refused("unsigned /cluster/join", response).await;

    // Signed with another secret.
    let wrong = PeerSecret::from_bytes(&[b'w'; 40]).expect("a valid secret");
    let response = http.execute(signed_request(&http, &wrong, Method::POST, &truncate, None)).await.expect("send");
    assert_refused("truncate signed with a wrong secret", response).await;

    // A valid signed request, captured and sent again.
    let health = signed_request(&http, &secret, Method::GET, &peer("/cluster/health"), None);
    let replay = health.try_clone().expect("clone the request");
    assert_eq!(http.execute(health).await.expect("health").status(), StatusCode::OK, "a signed request passes");
    // Signed but wrong: every answer of the peer port is its JSON error, also the ones axum
    // gives before a handler runs.
    for (method, path, json, expected) in [
        (Method::GET, "/cluster/nowhere", None, StatusCode::NOT_FOUND),
        (Method::POST, "/cluster/fence/0", Some(json!(["not", "a", "fence"])), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let request = signed_request(&http, &secret, method, &peer(path), json.as_ref());
        let response = http.execute(request).await.expect("signed request");
        assert_eq!(response.status(), expected, "{path}");
        let body: Value = response.json().await.unwrap_or_else(|e| panic!("{path}: a JSON error body: {e}"));
        assert!(body["error"].is_string() && body["message"].is_string(), "{path}: {body}");
    }
    assert_refused("replayed signed request", http.execute(replay).await.expect("replay")).await;

    // Even with the secret, a join under a made-up id at a live broker's address evicts nobody.
    let raft_leader = cluster_view(&Endpoint::of(&brokers[0])).await.expect("view").0.expect("a Raft leader");
    let join_url = brokers[raft_leader as usize].url(9255, "/cluster/join");
    let forged_join = signed_request(&http, &secret, Method::POST, &join_url, Some(&join));
    let response = http.execute(forged_join).await.expect("signed join");
    let (status, body) = (response.status(), response.text().await.unwrap_or_default());
    assert_eq!(status, StatusCode::CONFLICT, "a join at live broker 1's address is refused: {body}");
    let error: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(error["error"], "conflict", "the peer port's one error type answers it: {body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(raft_voters(&Endpoint::of(&brokers[0])).await.as_deref(), Some(&[0, 1, 2][..]), "no voter evicted");

    // All 100 acknowledged records are still there, and the next write does not reuse offset 0.
    assert_eq!(clients[1].register("reader", "readers", &[TOPIC], Some("startFromEarliest")).await.0, StatusCode::OK);
    let mut seen = Vec::new();
    for _ in 0..50 {
        for client in &clients {
            let polled = client.poll("reader").await;
            seen.extend(polled.records().into_iter().map(|(_, _, offset, value)| (offset, value["seq"].clone())));
        }
        if seen.len() >= 100 {
            break;
        }
    }
    seen.sort_by_key(|(offset, _)| *offset);
    let expected: Vec<(i64, Value)> = (0..100).map(|i| (i, json!(i))).collect();
    assert_eq!(seen, expected, "every acknowledged record, once, at its offset");
    let next = produce(&clients[2], &[json!({"seq": 100}).to_string()]).await;
    assert_eq!(next["startOffset"], "100", "{next}");
}

/// Runs the broker with `env` and waits (up to 20 s) for it to exit; its status and output.
fn run_to_exit(ip: Ipv4Addr, home: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(broker_binary())
        .env_clear()
        .env("RUNNEL_HOME", home)
        .env("RUNNEL_LISTEN", ip.to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runnel-broker");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the broker did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

#[test]
fn a_cluster_without_a_usable_peer_secret_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = free_loopback_ip();
    let names = format!("{ip},127.0.0.250,127.0.0.251");
    let cluster = [("RUNNEL_BROKER_NAMES", names.as_str()), ("RUNNEL_ORDINAL", "0")];

    let (code, out) = run_to_exit(ip, &dir.path().join("a"), &cluster);
    assert!(code.is_some_and(|c| c != 0), "exits non-zero ({code:?}): {out}");
    assert!(out.contains("RUNNEL_PEER_SECRET_FILE"), "the message names the setting: {out}");

    let missing = dir.path().join("no-such-secret");
    let env = [&cluster[..], &[("RUNNEL_PEER_SECRET_FILE", missing.to_str().expect("UTF-8"))]].concat();
    let (code, out) = run_to_exit(ip, &dir.path().join("b"), &env);
    assert!(code.is_some_and(|c| c != 0) && out.contains("RUNNEL_PEER_SECRET_FILE"), "unreadable file: {out}");

    let short = dir.path().join("short-secret");
    std::fs::write(&short, "too short\n").expect("write");
    let env = [&cluster[..], &[("RUNNEL_PEER_SECRET_FILE", short.to_str().expect("UTF-8"))]].concat();
    let (code, out) = run_to_exit(ip, &dir.path().join("c"), &env);
    assert!(code.is_some_and(|c| c != 0) && out.contains("at least 32"), "short secret: {out}");

    // A single broker needs no secret.
    let single = BrokerProcess::start(&dir.path().join("single"), &[]);
    drop(single);
}
