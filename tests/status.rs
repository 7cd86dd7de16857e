//! Issue 11, item 5: `/status` says what the broker can do. It was 200 on a Raft leader cut off
//! from its majority and with the produce memory spent; now each of those is a 503 naming the
//! condition, while `/livez` stays 200 (restarting would not help).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{stalled_produce, start_cluster, BrokerProcess, Stall};
use serde_json::Value;

async fn get(broker: &BrokerProcess, port: u16, path: &str) -> (StatusCode, Value) {
    let response = reqwest::get(broker.url(port, path)).await.expect("request");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

fn conditions(body: &Value) -> Vec<String> {
    body["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["condition"].as_str().map(String::from))
        .collect()
}

/// Waits until `port`'s `/status` is `status`, and returns its body.
async fn wait_status(broker: &BrokerProcess, port: u16, status: StatusCode, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = get(broker, port, "/status").await;
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/status on {port} stayed {got}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_raft_leader_cut_off_from_its_majority_is_not_ready_but_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let (_, view) = get(&brokers[0], 9250, "/v1/cluster").await;
    let leader = view["raftLeader"].as_u64().expect("a Raft leader") as usize;
    let ready = wait_status(&brokers[leader], 9251, StatusCode::OK, Duration::from_secs(10)).await;
    assert_eq!((ready["ready"].as_bool(), conditions(&ready).len()), (Some(true), 0), "{ready}");

    for (i, broker) in brokers.iter_mut().enumerate() {
        if i != leader {
            broker.kill9();
        }
    }
    let cut_off = wait_status(&brokers[leader], 9251, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10)).await;
    let found = conditions(&cut_off);
    assert!(found.iter().any(|c| c == "raft_quorum_lost" || c == "no_raft_leader"), "{cut_off}");
    let (live, body) = get(&brokers[leader], 9251, "/livez").await;
    assert_eq!(live, StatusCode::OK, "a lost quorum is not a reason to restart: {body}");

    for (i, broker) in brokers.iter_mut().enumerate() {
        if i != leader {
            broker.restart();
        }
    }
    wait_status(&brokers[leader], 9251, StatusCode::OK, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn spent_produce_memory_makes_the_producer_port_not_ready_and_the_consumer_port_stays_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 16 MiB of produce bodies; each stalled request below holds 1 MiB of it.
    let env = [("RUNNEL_MEMORY_LIMIT", "64MiB"), ("RUNNEL_BODY_TIMEOUT_MS", "20000")];
    let broker = BrokerProcess::start(&dir.path().join("b"), &env);
    let mut stalled = Vec::new();
    for _ in 0..16 {
        // Past the 16 KiB read before a body reserves anything.
        stalled.push(stalled_produce(&broker, Stall::Declared { declared: 1 << 20, sent: 20 * 1024 }).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let big = vec![b'y'; 512 * 1024];
    let refused =
        reqwest::Client::new().post(broker.url(9251, "/v1/topic/t/messages")).body(big).send().await.expect("produce");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["retriable"], true, "{body}");

    let (status, body) = get(&broker, 9251, "/status").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(conditions(&body), vec!["memory_exhausted".to_string()], "{body}");
    let (status, body) = get(&broker, 9252, "/status").await;
    assert_eq!(status, StatusCode::OK, "polls do not need produce memory: {body}");
    let (status, _) = get(&broker, 9251, "/livez").await;
    assert_eq!(status, StatusCode::OK);

    drop(stalled);
    wait_status(&broker, 9251, StatusCode::OK, Duration::from_secs(10)).await;
}
