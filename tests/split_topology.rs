//! Issue 12, its first defect: a broker started with a longer `RUNNEL_BROKER_NAMES` on a running
//! 3-broker cluster joined Raft as a voter, built a ring of 16 partitions while the others had
//! 12, and acknowledged keyed records into partitions 12–15 that no other broker serves. The
//! ring is now agreed in Raft, and a longer list is a grow (`tests/resize.rs`); a broker whose
//! settings contradict the agreed ring (another name for a broker the cluster knows, other
//! ranges) is refused, never acknowledges a write, creates no partition, and its `/status`
//! says why; so does a member restarted with other ranges.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{free_loopback_ip, start_cluster, BrokerProcess};
use serde_json::Value;

/// Waits until `broker`'s producer port reports `condition` in a 503, and returns its message.
async fn wait_for_condition(broker: &BrokerProcess, condition: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(broker.url(9251, "/status")).await {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or_default();
            let found = body["conditions"].as_array().into_iter().flatten().find(|c| c["condition"] == condition);
            if let (StatusCode::SERVICE_UNAVAILABLE, Some(found)) = (status, found) {
                return found["message"].as_str().unwrap_or_default().to_string();
            }
            last = format!("{status} {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{} never reported {condition}; last /status: {last}", broker.ip);
}

/// Keyed produces to `broker`: how many were acknowledged.
async fn acknowledged_keyed(broker: &BrokerProcess, keys: usize) -> usize {
    let http = reqwest::Client::new();
    let mut acknowledged = 0;
    for key in 0..keys {
        let response = http
            .post(broker.url(9251, "/v1/topic/split/messages"))
            .query(&[("partitionKey", format!("key-{key}"))])
            .body(format!("record {key}"))
            .send()
            .await
            .expect("produce");
        acknowledged += usize::from(response.status() == StatusCode::OK);
    }
    acknowledged
}

/// Partition numbers with a directory under `home` for topic `split`.
fn partitions_on_disk(home: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(home.join("topics").join("split")) else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

#[tokio::test]
async fn a_broker_configured_for_another_ring_never_acknowledges_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    assert_eq!(acknowledged_keyed(&brokers[0], 30).await, 30, "the cluster takes keyed writes");
    let names: Vec<String> = brokers.iter().map(|b| b.ip.to_string()).collect();
    let fourth_ip = loop {
        let ip = free_loopback_ip();
        if !brokers.iter().any(|b| b.ip == ip) {
            break ip;
        }
    };
    // Broker 1 under another name: this list contradicts the cluster's.
    let four = format!("{},{},{},{fourth_ip}", names[0], fourth_ip, names[2]);
    let secret = dir.path().join("peer-secret");
    let secret = secret.to_str().expect("UTF-8 path");
    let env = [("RUNNEL_BROKER_NAMES", four.as_str()), ("RUNNEL_ORDINAL", "3"), ("RUNNEL_PEER_SECRET_FILE", secret)];
    let fourth = BrokerProcess::start_unready(fourth_ip, &dir.path().join("broker-3"), &env);

    let why = wait_for_condition(&fourth, "ring_mismatch", Duration::from_secs(20)).await;
    assert!(why.contains(&format!("names broker 1 \"{fourth_ip}\"")) && why.contains(&names[1]), "{why}");
    assert_eq!(acknowledged_keyed(&fourth, 60).await, 0, "a broker outside the agreed ring acknowledged a write");
    let view: Value =
        reqwest::get(brokers[0].url(9250, "/v1/cluster")).await.expect("view").json().await.expect("JSON");
    assert_eq!(view["raftVoters"].as_array().map(Vec::len), Some(3), "it did not join as a voter: {view}");
    for home in brokers.iter().map(|b| b.home.clone()).chain([fourth.home.clone()]) {
        let beyond: Vec<u32> = partitions_on_disk(&home).into_iter().filter(|p| *p >= 12).collect();
        // Partitions 12 and on would be a generation nobody agreed on.
        assert!(beyond.is_empty(), "{}: partitions outside the agreed ring: {beyond:?}", home.display());
    }

    // A member restarted with other ranges refuses to serve as well.
    let (ip, home) = (brokers[2].ip, brokers[2].home.clone());
    brokers[2].kill9();
    let three = names.join(",");
    let env = [
        ("RUNNEL_BROKER_NAMES", three.as_str()),
        ("RUNNEL_ORDINAL", "2"),
        ("RUNNEL_PEER_SECRET_FILE", secret),
        ("RUNNEL_CONSUMER_RANGES", "5"),
    ];
    let changed = BrokerProcess::start_unready(ip, &home, &env);
    let why = wait_for_condition(&changed, "ring_mismatch", Duration::from_secs(20)).await;
    assert!(why.contains("RUNNEL_CONSUMER_RANGES=5") && why.contains("4 ranges"), "{why}");
    assert_eq!(acknowledged_keyed(&changed, 30).await, 0);
    // Once the refused broker's partitions failed over (it answers no health probe), the rest
    // of the cluster takes every write; until then, writes to them get a retriable 503.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let acknowledged = acknowledged_keyed(&brokers[0], 10).await;
        if acknowledged == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the rest of the cluster keeps taking writes: {acknowledged} of 10");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
