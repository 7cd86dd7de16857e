//! What clients make a broker keep is bounded by what the replicated state holds: topics that
//! do not exist cost no replication tasks, and consumers that left are forgotten on every
//! broker, not only on the Raft leader.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{start_cluster, BrokerProcess, TestClient};
use serde_json::json;

/// The value of gauge `name` on `broker`'s metrics port.
async fn gauge(http: &reqwest::Client, broker: &BrokerProcess, name: &str) -> i64 {
    let text = http.get(broker.url(9253, "/metrics")).send().await.expect("metrics").text().await.expect("body");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gauge {name} in:\n{text}"))
}

/// Waits until `name` is 0 on every broker; panics with the values after `within`.
async fn all_reach_zero(http: &reqwest::Client, brokers: &[BrokerProcess], name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut values = Vec::new();
        for broker in brokers {
            values.push(gauge(http, broker, name).await);
        }
        if values.iter().all(|v| *v == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} per broker is still {values:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn clients_cannot_make_brokers_keep_tasks_or_consumers_that_the_cluster_does_not_have() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = start_cluster(dir.path(), 3, &[("RUNNEL_CONSUMER_TIMEOUT_MS", "5000")]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    let http = reqwest::Client::new();

    // Issue 10 defect 3: every poll started a replicator per follower for each named topic,
    // whether it existed or not, and none ever ended.
    let ghosts: Vec<String> = (0..100).map(|i| format!("ghost-{i}")).collect();
    let names: Vec<&str> = ghosts.iter().map(String::as_str).collect();
    let (status, body) = clients[0].register("wide", "wide", &names, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..3 {
        for client in &clients {
            let polled = client.poll("wide").await;
            assert_eq!(polled.status, StatusCode::NO_CONTENT);
        }
    }
    for broker in &brokers {
        assert_eq!(gauge(&http, broker, "runnel_replicated_partitions").await, 0, "topics that do not exist");
    }
    let too_many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let (status, body) = clients[0].register("wider", "wide", &too_many, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "over RUNNEL_MAX_CONSUMER_TOPICS: {body}");
    assert_eq!(clients[0].goodbye("wide", false).await.0, StatusCode::OK);

    // Issue 10 defect 4: only the Raft leader forgot consumers and groups that had left.
    clients[0].produce_lines("real", Some("k"), &[json!({"n": 1}).to_string()]).await;
    for i in 0..20 {
        let id = format!("member-{i}");
        let (status, body) =
            clients[0].register(&id, &format!("group-{i}"), &["real"], Some("startFromEarliest")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for client in &clients {
            client.poll(&id).await;
        }
    }
    for i in 0..20 {
        assert_eq!(clients[0].goodbye(&format!("member-{i}"), true).await.0, StatusCode::OK);
    }
    all_reach_zero(&http, &brokers, "runnel_consumers_tracked", Duration::from_secs(10)).await;
    all_reach_zero(&http, &brokers, "runnel_cursor_groups", Duration::from_secs(10)).await;
    assert!(brokers.iter().all(|b| !b.log_text().contains("panicked")));
}
