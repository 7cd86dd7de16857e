//! SPEC §4 on one broker: register / poll / commit / goodbye and their status codes.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use runnel_tests::{BrokerProcess, TestClient};
use serde_json::{json, Value};

fn start() -> (tempfile::TempDir, BrokerProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]);
    (dir, broker)
}

#[tokio::test]
async fn records_come_back_exactly_in_order_with_their_offsets() {
    let (_dir, broker) = start();
    let client = TestClient::new(&broker);
    // 40 keys, 5 records each, in several requests: order per key must hold.
    let mut expected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for round in 0..5 {
        for k in 0..40 {
            let key = format!("key-{k}");
            client.produce_lines("events", Some(&key), &[json!({"key": key, "seq": round}).to_string()]).await;
            expected.entry(key).or_default().push(round);
        }
    }
    assert_eq!(
        client.register("reader", "g1", &["events"], Some("startFromEarliest")).await,
        (StatusCode::OK, "OK".into())
    );
    let records = client.poll_until("reader", 200, 50).await;
    assert_eq!(records.len(), 200, "every record exactly once");

    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut last_offset: BTreeMap<u32, i64> = BTreeMap::new();
    for (topic, partition, offset, value) in &records {
        assert_eq!(topic, "events");
        let previous = last_offset.insert(*partition, *offset);
        assert_eq!(previous.map_or(0, |p| p + 1), *offset, "offsets in partition {partition} are contiguous from 0");
        let key = value["key"].as_str().expect("key").to_string();
        seen.entry(key).or_default().push(value["seq"].as_i64().expect("seq"));
    }
    assert_eq!(seen, expected, "per-key order holds");
    assert!(last_offset.len() > 1, "40 keys spread over several partitions");
    assert_eq!(client.poll("reader").await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn poll_bodies_are_valid_json_for_any_record() {
    let (_dir, broker) = start();
    let client = TestClient::new(&broker);
    client.register("r", "g", &["mixed"], Some("startFromEarliest")).await;
    for (content_type, body) in [
        ("application/json", b"{\"ok\":true}".to_vec()),
        ("text/plain", b"plain \"text\" with\ttabs".to_vec()),
        ("application/octet-stream", vec![0xff, 0x00, 0x80, b'"']),
        ("text/plain", b"{\"broken\":".to_vec()),
    ] {
        let (status, _) = client.produce("mixed", Some("one-key"), content_type, body).await;
        assert_eq!(status, StatusCode::OK);
    }
    let values: Vec<Value> = client.poll_until("r", 4, 20).await.into_iter().map(|r| r.3).collect();
    assert_eq!(
        values,
        vec![
            json!({"ok": true}),
            json!("plain \"text\" with\ttabs"),
            json!({"base64": "/wCAIg=="}),
            json!("{\"broken\":"),
        ]
    );
}

#[tokio::test]
async fn status_codes_of_the_consumer_api() {
    let (_dir, broker) = start();
    let client = TestClient::new(&broker);
    let http = &client.http;
    let consumer = broker.url(9252, "/v1/consumer");

    assert_eq!(client.poll("nobody").await.status, StatusCode::CONFLICT);
    assert_eq!(client.commit("nobody").await, StatusCode::CONFLICT);
    assert_eq!(client.goodbye("nobody", true).await.0, StatusCode::CONFLICT);

    // Old spelling consumer_id, POST accepted for register.
    let r = http
        .post(format!("{consumer}/register?consumer_id=c1&group=g&topic=t1&topic=t2"))
        .send()
        .await
        .expect("register");
    assert_eq!((r.status(), r.text().await.expect("body")), (StatusCode::OK, "OK".to_string()));
    assert_eq!(client.register("c1", "g", &["t2", "t1"], None).await, (StatusCode::OK, "Already registered".into()));
    let (status, body) = client.register("c1", "other-group", &["t1"], None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = client.register("c2", "g", &["t1"], Some("fromTheMiddle")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let polled = client.poll("c1").await;
    assert_eq!(polled.status, StatusCode::NO_CONTENT, "registered, nothing produced yet");
    assert_eq!(polled.retry_after(), Some("1"));

    // A fifth member of a group over 4 partitions has nothing to read on this broker.
    for i in 0..5 {
        client.register(&format!("m{i}"), "crowd", &["solo"], None).await;
    }
    let idle: Vec<_> = futures_polls(&client, 5).await;
    assert_eq!(idle.iter().filter(|(_, ra)| ra.as_deref() == Some("5")).count(), 1, "{idle:?}");

    assert_eq!(client.commit("c1").await, StatusCode::NO_CONTENT);
    assert_eq!(client.goodbye("c1", true).await, (StatusCode::OK, "OK".into()));
    assert_eq!(client.poll("c1").await.status, StatusCode::CONFLICT, "gone after goodbye");
    assert_eq!(client.goodbye("c1", true).await.0, StatusCode::CONFLICT);
}

async fn futures_polls(client: &TestClient, members: usize) -> Vec<(StatusCode, Option<String>)> {
    let mut out = Vec::new();
    for i in 0..members {
        let polled = client.poll(&format!("m{i}")).await;
        out.push((polled.status, polled.retry_after().map(str::to_string)));
    }
    out
}

#[tokio::test]
async fn new_groups_start_at_latest_or_earliest() {
    let (_dir, broker) = start();
    let client = TestClient::new(&broker);
    client.produce_lines("history", Some("k"), &["{\"old\":1}".into(), "{\"old\":2}".into()]).await;
    client.register("late", "latest-group", &["history"], None).await;
    client.register("early", "earliest-group", &["history"], Some("startFromEarliest")).await;
    client.produce_lines("history", Some("k"), &["{\"new\":1}".into()]).await;

    let late: Vec<Value> = client.poll_until("late", 1, 20).await.into_iter().map(|r| r.3).collect();
    assert_eq!(late, vec![json!({"new": 1})], "startFromLatest sees only what came after registering");
    let early: Vec<Value> = client.poll_until("early", 3, 20).await.into_iter().map(|r| r.3).collect();
    assert_eq!(early.len(), 3, "startFromEarliest sees the history too");
}

#[tokio::test]
async fn the_next_poll_commits_the_previous_one_and_goodbye_without_commit_does_not() {
    let (_dir, broker) = start();
    let client = TestClient::new(&broker);
    let lines: Vec<String> = (0..10).map(|i| json!({"i": i}).to_string()).collect();
    client.produce_lines("auto", Some("k"), &lines).await;

    client.register("a", "g", &["auto"], Some("startFromEarliest")).await;
    assert_eq!(client.poll_until("a", 10, 20).await.len(), 10);
    // Second poll: commits offset 10 (auto-commit), finds nothing new.
    assert_eq!(client.poll("a").await.status, StatusCode::NO_CONTENT);
    client.produce_lines("auto", Some("k"), &[json!({"i": 10}).to_string()]).await;
    assert_eq!(client.poll_until("a", 1, 20).await.len(), 1);
    // Leave without committing record 10: the next member gets it again, and nothing older.
    assert_eq!(client.goodbye("a", false).await.0, StatusCode::OK);
    client.register("b", "g", &["auto"], None).await;
    let again: Vec<Value> = client.poll_until("b", 1, 20).await.into_iter().map(|r| r.3).collect();
    assert_eq!(again, vec![json!({"i": 10})]);
}
