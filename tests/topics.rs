//! Topics as objects (SPEC §15) against real brokers: create, identical and conflicting
//! creates, describe, change, and a delete that waits for a broker that is down, refusing
//! writes until every copy removed its files; auto-creation turned off; per-topic retention.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{start_cluster, BrokerProcess, TestClient};
use serde_json::{json, Value};

async fn call(method: reqwest::Method, broker: &BrokerProcess, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, broker.url(9250, path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("topic call");
    let status = response.status();
    (status, response.json().await.expect("a JSON answer"))
}

async fn wait_until(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn holds_files(broker: &BrokerProcess, topic: &str) -> bool {
    broker.home.join("topics").join(topic).exists()
}

/// The sum over a described topic's partitions of `field` (decimal strings or numbers).
fn total(described: &Value, field: &str) -> u64 {
    let partitions = described["partitions"].as_array().expect("partitions");
    partitions
        .iter()
        .map(|p| match &p[field] {
            Value::String(s) => s.parse::<u64>().expect("a decimal"),
            other => other.as_u64().unwrap_or(0),
        })
        .sum()
}

#[tokio::test]
async fn topics_are_created_described_changed_and_deleted_on_every_copy_even_one_that_was_down() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, &[]);
    let settings = json!({"retentionBytes": 1_048_576});
    let (status, created) = call(Method::PUT, &cluster[0], "/v1/topics/orders", Some(settings.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["set"], settings);
    assert_eq!(created["settings"]["retentionBytes"], 1_048_576);
    assert_eq!(created["settings"]["retention"], "7days", "the broker's default where not set");
    let (status, _) = call(Method::PUT, &cluster[1], "/v1/topics/orders", Some(settings)).await;
    assert_eq!(status, StatusCode::OK, "the same settings again");
    let (status, conflict) = call(Method::PUT, &cluster[2], "/v1/topics/orders", Some(json!({}))).await;
    assert_eq!((status, conflict["error"].as_str()), (StatusCode::CONFLICT, Some("topic_conflict")));
    let (status, bad) = call(Method::PUT, &cluster[0], "/v1/topics/bad", Some(json!({"segmentBytes": 1}))).await;
    assert_eq!((status, bad["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));

    let client = TestClient::new(&cluster[0]);
    let lines: Vec<String> = (0..30).map(|n| json!({"n": n}).to_string()).collect();
    for chunk in lines.chunks(3) {
        client.produce_lines("orders", None, chunk).await;
    }
    client.produce_lines("auto", None, &["{}".to_string()]).await;
    wait_until("a first produce created its topic, seen from another broker", Duration::from_secs(10), async || {
        let (_, listed) = call(Method::GET, &cluster[1], "/v1/topics", None).await;
        let names: Vec<String> = listed["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .filter_map(|t| t["topic"].as_str().map(String::from))
            .collect();
        names == ["auto", "orders"]
    })
    .await;
    let (status, described) = call(Method::GET, &cluster[2], "/v1/topics/orders", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(12));
    assert_eq!(total(&described, "end"), 30);
    assert!(total(&described, "bytes") >= 30 * 8, "bytes on disk: {described}");
    for p in described["partitions"].as_array().expect("partitions") {
        assert_eq!(p["copies"].as_array().map(Vec::len), Some(3), "{p}");
        assert!(p["copies"].as_array().expect("copies").contains(&p["leader"]), "{p}");
    }

    let patch = json!({"retention": "1h", "retentionBytes": null});
    let (status, changed) = call(Method::PATCH, &cluster[1], "/v1/topics/orders", Some(patch)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changed["set"], json!({"retention": "1h"}));
    assert_eq!(changed["settings"]["retentionBytes"], 0, "back to the default: no bound");
    let (status, _) = call(Method::PATCH, &cluster[1], "/v1/topics/nothing", Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Broker 2 is down: the deletion waits for it, and the topic takes no write meanwhile.
    cluster[2].kill9();
    let (status, deleting) = call(Method::DELETE, &cluster[0], "/v1/topics/orders", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deleting}");
    assert_eq!(deleting["state"], "deleting");
    wait_until("brokers 0 and 1 removed the files and said so", Duration::from_secs(10), async || {
        let (_, shown) = call(Method::GET, &cluster[1], "/v1/topics/orders", None).await;
        shown["pendingBrokers"] == json!([2])
            && !holds_files(&cluster[0], "orders")
            && !holds_files(&cluster[1], "orders")
    })
    .await;
    assert!(holds_files(&cluster[2], "orders"), "the broker that is down still has them");
    let (status, refused) = client.produce("orders", None, "application/x-ndjson", "{}").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.contains("topic_deleting"), "{refused}");
    let (status, again) = call(Method::PUT, &cluster[1], "/v1/topics/orders", Some(json!({}))).await;
    assert_eq!((status, again["error"].as_str()), (StatusCode::CONFLICT, Some("topic_deleting")));

    cluster[2].restart();
    wait_until("the deletion is over", Duration::from_secs(30), async || {
        call(Method::GET, &cluster[0], "/v1/topics/orders", None).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert!(!holds_files(&cluster[2], "orders"), "the broker that was down removed its files too");
    client.produce_lines("orders", None, &["{}".to_string()]).await;
    let (_, recreated) = call(Method::GET, &cluster[1], "/v1/topics/orders", None).await;
    assert_eq!(recreated["set"], json!({}), "created again by a produce, with the defaults");
    assert_eq!(total(&recreated, "end"), 1, "nothing of the old topic is left: {recreated}");
}

#[tokio::test]
async fn without_auto_creation_a_produce_to_an_unknown_topic_is_404_and_a_topic_s_retention_is_its_own() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("RUNNEL_AUTO_CREATE_TOPICS", "false"), ("RUNNEL_RETENTION_CHECK_MS", "200")];
    let broker = BrokerProcess::start(&dir.path().join("broker"), &env);
    let client = TestClient::new(&broker);
    let (status, body) = client.produce("events", None, "application/x-ndjson", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(body["error"], "topic_not_found");
    assert!(!broker.home.join("topics").join("events").exists(), "nothing was created");

    // Two topics: one keeps at most 128 KiB a partition in 64 KiB segments, one the defaults.
    let small = json!({"retentionBytes": 131_072, "segmentBytes": 65_536});
    assert_eq!(call(Method::PUT, &broker, "/v1/topics/events", Some(small)).await.0, StatusCode::CREATED);
    assert_eq!(call(Method::PUT, &broker, "/v1/topics/audit", None).await.0, StatusCode::CREATED);
    let record = json!({"pad": "x".repeat(1000)}).to_string();
    for _ in 0..40 {
        let batch = vec![record.clone(); 10];
        client.produce_lines("events", Some("k"), &batch).await;
        client.produce_lines("audit", Some("k"), &batch).await;
    }
    wait_until("retention trimmed the small topic", Duration::from_secs(10), async || {
        let (_, events) = call(Method::GET, &broker, "/v1/topics/events", None).await;
        total(&events, "start") > 0 && total(&events, "bytes") <= 131_072 + 65_536 + 16_384
    })
    .await;
    let (_, audit) = call(Method::GET, &broker, "/v1/topics/audit", None).await;
    assert_eq!((total(&audit, "start"), total(&audit, "end")), (0, 400), "the other topic keeps everything");
    assert_dir_segments(&broker.home.join("topics").join("audit"), 1);
}

/// Every partition directory of a topic has at most `max` segment files.
fn assert_dir_segments(topic: &Path, max: usize) {
    for partition in std::fs::read_dir(topic).expect("topic dir").flatten() {
        let logs = std::fs::read_dir(partition.path())
            .expect("partition dir")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .count();
        assert!(logs <= max, "{} has {logs} segments", partition.path().display());
    }
}

/// A group that read a deleted topic reads a new topic of the name from its start: neither its
/// committed offsets nor its consumer's cursor of the old topic carry over.
#[tokio::test]
async fn a_group_reads_a_topic_created_again_under_a_deleted_one_s_name_from_its_start() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]);
    let client = TestClient::new(&broker);
    let old: Vec<String> = (0..5).map(|n| json!({"old": n}).to_string()).collect();
    client.produce_lines("jobs", Some("k"), &old).await;
    let (status, body) = client.register("c1", "workers", &["jobs"], Some("startFromEarliest")).await;
    assert!(status.is_success(), "{body}");
    assert_eq!(client.poll_until("c1", 5, 50).await.len(), 5);
    assert_eq!(client.commit("c1").await, StatusCode::NO_CONTENT);

    assert_eq!(call(Method::DELETE, &broker, "/v1/topics/jobs", None).await.0, StatusCode::ACCEPTED);
    wait_until("the deletion is over", Duration::from_secs(10), async || {
        call(Method::GET, &broker, "/v1/topics/jobs", None).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    let new: Vec<String> = (0..2).map(|n| json!({"new": n}).to_string()).collect();
    client.produce_lines("jobs", Some("k"), &new).await;
    let got = client.poll_until("c1", 2, 50).await;
    let values: Vec<Value> = got.iter().map(|r| r.3.clone()).collect();
    assert_eq!(values, [json!({"new": 0}), json!({"new": 1})], "from the new topic's start: {got:?}");
    assert_eq!(got.iter().map(|r| r.2).collect::<Vec<_>>(), [0, 1]);
}
