//! Committed offsets of a group that has had no member and no commit for
//! `RUNNEL_GROUP_RETENTION` are removed on every broker (issue 11, item 6), while a group
//! with a member keeps them however long it lives.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{start_cluster, BrokerProcess, TestClient};
use serde_json::json;

const RECORDS: usize = 36;

/// The value of gauge `name` on `broker`'s metrics port, if it has one.
async fn gauge(http: &reqwest::Client, broker: &BrokerProcess, name: &str) -> Option<i64> {
    let text = http.get(broker.url(9253, "/metrics")).send().await.expect("metrics").text().await.expect("body");
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `id` on every broker (each serves its own partitions) until `count` records came
/// or the rounds ran out; returns the offsets' values in arrival order.
async fn read_everywhere(clients: &[TestClient], id: &str, count: usize) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    for _ in 0..30 {
        for client in clients {
            let polled = client.poll(id).await;
            assert!(matches!(polled.status, StatusCode::OK | StatusCode::NO_CONTENT), "poll {id}: {}", polled.status);
            got.extend(polled.records().into_iter().map(|r| r.3));
        }
        if got.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    got
}

#[tokio::test]
async fn offsets_of_a_group_without_members_expire_after_the_retention_and_a_live_group_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("RUNNEL_GROUP_RETENTION", "2s"), ("RUNNEL_CONSUMER_TIMEOUT_MS", "1000")];
    let brokers = start_cluster(dir.path(), 3, &env);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    let http = reqwest::Client::new();
    for k in 0..RECORDS {
        clients[0].produce_lines("events", Some(&format!("key-{k}")), &[json!({"k": k}).to_string()]).await;
    }

    // Both groups read everything and commit it; "gone" then says goodbye, "kept" stays.
    for (id, group) in [("leaver", "gone"), ("stayer", "kept")] {
        let (status, body) = clients[1].register(id, group, &["events"], Some("startFromEarliest")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(read_everywhere(&clients, id, RECORDS).await.len(), RECORDS, "{group} reads everything");
        assert_eq!(clients[1].commit(id).await, StatusCode::NO_CONTENT);
    }
    assert_eq!(clients[2].goodbye("leaver", true).await.0, StatusCode::OK);

    // "stayer" keeps polling (its consumer timeout is 1 s) while "gone" sits idle past 2 s;
    // neither commits anything more. Expiry is a Raft entry: every broker's count drops.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut expired_everywhere = false;
    while !expired_everywhere && Instant::now() < deadline {
        assert_ne!(clients[0].poll("stayer").await.status, StatusCode::CONFLICT, "a polling member stays registered");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut counts = Vec::new();
        for broker in &brokers {
            counts.push(gauge(&http, broker, "runnel_offset_groups").await);
        }
        expired_everywhere = counts.iter().all(|c| *c == Some(1));
    }

    // A group without offsets is a new group: a member that asks for the earliest offsets
    // reads everything again (before, the old offsets made it start at the end).
    let (status, body) = clients[2].register("returner", "gone", &["events"], Some("startFromEarliest")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = read_everywhere(&clients, "returner", RECORDS).await;
    assert_eq!(again.len(), RECORDS, "the idle group's offsets were removed: {again:?}");

    // The live group's offsets are still there: a member replacing "stayer" reads nothing old.
    assert_eq!(clients[0].goodbye("stayer", true).await.0, StatusCode::OK);
    let (status, body) = clients[0].register("replacement", "kept", &["events"], Some("startFromEarliest")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for client in &clients {
        let polled = client.poll("replacement").await;
        assert_eq!(polled.status, StatusCode::NO_CONTENT, "kept its offsets: {:?}", polled.records());
    }
    assert!(expired_everywhere, "runnel_offset_groups is 1 on every broker once \"gone\" expired");
    assert!(brokers.iter().all(|b| !b.log_text().contains("panicked")));
}
