//! Durability: kill -9 loses nothing acknowledged; torn and corrupt tails are cut at start-up.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use runnel_tests::{BrokerProcess, TestClient};
use serde_json::{json, Value};

fn segments(home: &Path, topic: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(partitions) = std::fs::read_dir(home.join("topics").join(topic)) else { return found };
    for partition in partitions.flatten() {
        for file in std::fs::read_dir(partition.path()).into_iter().flatten().flatten() {
            if file.path().extension().is_some_and(|e| e == "log") {
                found.push(file.path());
            }
        }
    }
    found.sort();
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[tokio::test]
async fn kill_9_keeps_every_acknowledged_record_and_the_committed_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Small polls, so the group can stop in the middle of the topic.
    let mut broker = BrokerProcess::start(&dir.path().join("broker"), &[("RUNNEL_POLL_MAX_BYTES", "900")]);
    let client = TestClient::new(&broker);
    let mut acknowledged = Vec::new();
    for i in 0..300 {
        let record = json!({"i": i}).to_string();
        client.produce_lines("durable", Some("one-key"), std::slice::from_ref(&record)).await;
        acknowledged.push(i);
    }
    client.register("reader", "g", &["durable"], Some("startFromEarliest")).await;
    let first = client.poll("reader").await.records();
    assert!(!first.is_empty() && first.len() < 300, "a partial read: {}", first.len());
    let committed_at = first.last().expect("records").2 + 1;
    assert_eq!(client.commit("reader").await, StatusCode::NO_CONTENT);
    // Read on without committing: these records must come again after the crash.
    let uncommitted = client.poll("reader").await.records();
    assert_eq!(uncommitted.first().map(|r| r.2), Some(committed_at));

    broker.kill9();
    broker.restart();
    let client = TestClient::new(&broker);

    // The group resumes exactly at its committed offset: nothing skipped, nothing before it again.
    let registered = client.register("reader", "g", &["durable"], None).await;
    assert_eq!(
        registered,
        (StatusCode::OK, "Already registered".to_string()),
        "the registration survived the crash too"
    );
    let resumed = client.poll_until("reader", 300 - committed_at as usize, 50).await;
    assert_eq!(resumed.first().map(|r| r.2), Some(committed_at), "resumes at the committed offset");
    let values: Vec<i64> = resumed.iter().map(|r| r.3["i"].as_i64().expect("i")).collect();
    assert_eq!(values, (committed_at..300).collect::<Vec<_>>());

    // A fresh group sees every acknowledged record.
    client.register("auditor", "audit", &["durable"], Some("startFromEarliest")).await;
    let all: Vec<i64> =
        client.poll_until("auditor", 300, 50).await.iter().map(|r| r.3["i"].as_i64().expect("i")).collect();
    assert_eq!(all, acknowledged);
}

#[tokio::test]
async fn a_torn_or_corrupt_last_batch_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("broker");
    let mut broker = BrokerProcess::start(&home, &[]);
    let client = TestClient::new(&broker);
    for batch in 0..10 {
        let lines: Vec<String> =
            (0..5).map(|i| json!({"batch": batch, "i": i, "pad": "x".repeat(100)}).to_string()).collect();
        client.produce_lines("torn", Some("k"), &lines).await;
    }
    assert!(broker.terminate(), "clean shutdown");
    let segment = segments(&home, "torn").pop().expect("a segment file");
    let len = std::fs::metadata(&segment).expect("stat").len();

    // The copy gets one flipped byte in the last batch, the original loses half of it.
    let corrupt_home = dir.path().join("corrupt");
    copy_dir(&home, &corrupt_home);
    let corrupt_segment = corrupt_home.join(segment.strip_prefix(&home).expect("under home"));
    let mut bytes = std::fs::read(&corrupt_segment).expect("read");
    let last = bytes.len() - 20;
    bytes[last] ^= 0x40;
    std::fs::write(&corrupt_segment, bytes).expect("write");
    let file = std::fs::OpenOptions::new().write(true).open(&segment).expect("open");
    file.set_len(len - 150).expect("cut");

    for home in [&home, &corrupt_home] {
        let mut broker = BrokerProcess::start(home, &[]);
        let client = TestClient::new(&broker);
        client.register("r", "g", &["torn"], Some("startFromEarliest")).await;
        let records = client.poll_until("r", 45, 30).await;
        let batches: Vec<i64> = records.iter().map(|r| r.3["batch"].as_i64().expect("batch")).collect();
        assert_eq!(records.len(), 45, "the nine complete batches are kept ({})", home.display());
        assert_eq!(batches.last(), Some(&8));
        assert_eq!(client.poll("r").await.status, StatusCode::NO_CONTENT, "nothing of the damaged batch is served");
        // New writes continue right after the kept data.
        let (_, ack) = client.produce("torn", Some("k"), "application/json", json!({"after": true}).to_string()).await;
        assert_eq!(ack, "OK");
        let next = client.poll_until("r", 1, 20).await;
        assert_eq!(next.first().map(|r| (r.2, r.3.clone())), Some((45, json!({"after": true}))));
        let log = broker.log_text();
        assert!(log.contains("dropped a torn or corrupt tail"), "the broker reports what it dropped:\n{log}");
        broker.kill9();
    }
}

/// What a writer saw of the shutdown: the records acknowledged, and how its last request ended.
struct WriterOutcome {
    acked: Vec<i64>,
    /// A request that was sent and then lost its connection without an answer: a write in
    /// flight that the shutdown dropped. A refused connection (the listener had closed) or a
    /// 503 is a clean end.
    cut_off: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_writes_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("broker");
    let mut broker = BrokerProcess::start(&home, &[]);
    let client = TestClient::new(&broker);
    let url = client.messages_url("graceful");
    // A fresh connection per request: a pooled one the server closed while idle would fail
    // a request that was never in flight.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let mut outcome = WriterOutcome { acked: Vec::new(), cut_off: None };
                for i in 0.. {
                    let body = json!({"w": w, "i": i}).to_string();
                    match http.post(&url).query(&[("partitionKey", format!("w{w}"))]).body(body).send().await {
                        Ok(r) if r.status() == StatusCode::OK => outcome.acked.push(i),
                        Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => break,
                        Ok(r) => panic!("writer {w}: unexpected {}", r.status()),
                        Err(e) if e.is_connect() => break,
                        Err(e) => {
                            outcome.cut_off = Some(format!("writer {w}, record {i}: {e:?}"));
                            break;
                        }
                    }
                }
                outcome
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // The writers keep writing while the broker stops (this waits on a blocking thread).
    let exited_cleanly = tokio::task::spawn_blocking(move || (broker.terminate(), broker)).await.expect("terminate");
    assert!(exited_cleanly.0, "SIGTERM exits with status 0");
    let mut acked_total = 0;
    let mut expected: Vec<(i64, i64)> = Vec::new();
    for (w, writer) in writers.into_iter().enumerate() {
        let outcome = writer.await.expect("writer");
        assert_eq!(outcome.cut_off, None, "a write in flight at SIGTERM got no answer");
        acked_total += outcome.acked.len();
        expected.extend(outcome.acked.into_iter().map(|i| (w as i64, i)));
    }
    assert!(acked_total > 0, "some writes were acknowledged before the shutdown");

    let broker = BrokerProcess::start(&home, &[]);
    let client = TestClient::new(&broker);
    client.register("r", "g", &["graceful"], Some("startFromEarliest")).await;
    let records = client.poll_until("r", acked_total, 100).await;
    let mut got: Vec<(i64, i64)> = records
        .iter()
        .map(|r: &(String, u32, i64, Value)| (r.3["w"].as_i64().expect("w"), r.3["i"].as_i64().expect("i")))
        .collect();
    got.sort();
    expected.sort();
    // Every acknowledged record is there (a write cut off mid-shutdown may be stored unacknowledged).
    for record in &expected {
        assert!(got.binary_search(record).is_ok(), "acknowledged record {record:?} lost");
    }
}
