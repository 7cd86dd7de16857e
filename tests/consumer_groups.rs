//! Groups with several members: disjoint assignment, rebalance on goodbye and on timeout.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use runnel_tests::{BrokerProcess, TestClient};
use serde_json::json;

async fn fill(client: &TestClient, topic: &str, keys: usize, from: usize) {
    for k in 0..keys {
        client.produce_lines(topic, Some(&format!("key-{k}")), &[json!({"k": k, "n": from}).to_string()]).await;
    }
}

/// Partitions a member received records from in a run of polls.
fn partitions(records: &[(String, u32, i64, serde_json::Value)]) -> BTreeSet<u32> {
    records.iter().map(|r| r.1).collect()
}

async fn check_handover(leave: &str, timeout_env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), timeout_env);
    let client = TestClient::new(&broker);
    fill(&client, "shared", 64, 0).await;
    client.register("a", "g", &["shared"], Some("startFromEarliest")).await;
    client.register("b", "g", &["shared"], Some("startFromEarliest")).await;

    let got_a = client.poll_until("a", 64, 10).await;
    let got_b = client.poll_until("b", 64, 10).await;
    let (pa, pb) = (partitions(&got_a), partitions(&got_b));
    assert!(pa.is_disjoint(&pb), "members read disjoint partitions: {pa:?} {pb:?}");
    assert_eq!(pa.union(&pb).count(), 4, "together they cover all 4 partitions");
    assert_eq!(got_a.len() + got_b.len(), 64, "every record once");
    // Commit what each has so far.
    assert_eq!(client.commit("a").await, StatusCode::NO_CONTENT);
    assert_eq!(client.commit("b").await, StatusCode::NO_CONTENT);

    fill(&client, "shared", 64, 1).await;
    match leave {
        "goodbye" => assert_eq!(client.goodbye("b", true).await.0, StatusCode::OK),
        _ => {
            // b stops polling; a keeps polling its own partitions until b times out.
            let mut seen_by_a = Vec::new();
            for _ in 0..100 {
                let polled = client.poll("a").await;
                seen_by_a.extend(polled.records());
                if partitions(&seen_by_a).len() == 4 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(partitions(&seen_by_a).len(), 4, "a took over b's partitions after the timeout");
            assert_eq!(client.poll("b").await.status, StatusCode::CONFLICT, "b was unregistered");
            let second_round: Vec<_> = seen_by_a.iter().filter(|r| r.3["n"] == 1).collect();
            assert_eq!(second_round.len(), 64, "b's committed position was honoured: new records once, none skipped");
            return;
        }
    }
    let rest = client.poll_until("a", 64, 20).await;
    assert_eq!(partitions(&rest).len(), 4, "a now reads all partitions");
    assert!(rest.iter().all(|r| r.3["n"] == 1), "resumed from committed offsets, nothing old again");
    assert_eq!(rest.len(), 64);
}

#[tokio::test]
async fn after_goodbye_the_other_member_gets_everything_from_the_committed_offsets() {
    check_handover("goodbye", &[]).await;
}

#[tokio::test]
async fn after_a_timeout_the_other_member_gets_everything_from_the_committed_offsets() {
    check_handover("timeout", &[("RUNNEL_CONSUMER_TIMEOUT_MS", "1500")]).await;
}
