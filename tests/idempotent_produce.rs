//! SPEC §12 against real brokers: idempotent producers (a repeat answers its original offsets,
//! a gap 409, an older epoch 403), through any broker and across `kill -9` of the leader and of
//! a single broker, and conditional appends (`Expected-Offset`) under racing writers.

use std::time::Duration;

use reqwest::StatusCode;
use runnel_tests::workload::{cluster_view, Endpoint};
use runnel_tests::{start_cluster, BrokerProcess, TestClient};
use serde_json::Value;

/// An answer: status, the `Producer-*` headers it carried, and its JSON body.
struct Answer {
    status: StatusCode,
    duplicate: bool,
    expected_seq: Option<String>,
    epoch: Option<String>,
    body: Value,
}

impl Answer {
    fn offset(&self) -> Option<u64> {
        self.body["startOffset"].as_str().and_then(|o| o.parse().ok())
    }
}

async fn send(client: &TestClient, topic: &str, key: Option<&str>, headers: &[(&str, String)], body: &str) -> Answer {
    let mut request = client
        .http
        .post(client.messages_url(topic))
        .header("accept", "application/json")
        .header("content-type", "application/x-ndjson")
        .body(body.to_string())
        .timeout(Duration::from_secs(15));
    if let Some(key) = key {
        request = request.query(&[("partitionKey", key)]);
    }
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("produce");
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let (duplicate, expected_seq, epoch) = (
        header("producer-duplicate").is_some_and(|v| v == "true"),
        header("producer-expected-seq"),
        header("producer-epoch"),
    );
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, duplicate, expected_seq, epoch, body }
}

fn producer(id: &str, epoch: u64, seq: u64) -> Vec<(&'static str, String)> {
    vec![("producer-id", id.to_string()), ("producer-epoch", epoch.to_string()), ("producer-seq", seq.to_string())]
}

fn start() -> (tempfile::TempDir, BrokerProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[("RUNNEL_MAX_PRODUCERS_PER_PARTITION", "2")]);
    (dir, broker)
}

#[tokio::test]
async fn a_repeat_is_stored_once_a_gap_is_409_and_an_old_epoch_403() {
    let (_dir, broker) = start();
    let client = TestClient::new(&broker);
    let first = send(&client, "orders", Some("k"), &producer("app-1", 5, 0), "{\"n\":1}\n{\"n\":2}").await;
    assert_eq!((first.status, first.duplicate), (StatusCode::OK, false), "{}", first.body);
    let again = send(&client, "orders", Some("k"), &producer("app-1", 5, 0), "{\"n\":1}\n{\"n\":2}").await;
    assert_eq!((again.status, again.duplicate), (StatusCode::OK, true));
    assert_eq!((again.offset(), again.body["count"].as_u64()), (first.offset(), Some(2)), "the original offsets");
    assert_eq!(again.body["duplicate"], true);

    let gap = send(&client, "orders", Some("k"), &producer("app-1", 5, 3), "{}").await;
    assert_eq!((gap.status, gap.expected_seq.as_deref()), (StatusCode::CONFLICT, Some("1")));
    assert_eq!((gap.body["error"].as_str(), gap.body["expectedSeq"].as_u64()), (Some("sequence_gap"), Some(1)));
    assert_eq!(gap.body["retriable"], false);

    let newer = send(&client, "orders", Some("k"), &producer("app-1", 6, 0), "{}").await;
    assert_eq!(newer.status, StatusCode::OK, "a newer epoch starts at 0");
    let zombie = send(&client, "orders", Some("k"), &producer("app-1", 5, 1), "{}").await;
    assert_eq!((zombie.status, zombie.epoch.as_deref()), (StatusCode::FORBIDDEN, Some("6")));
    assert_eq!(
        (zombie.body["error"].as_str(), zombie.body["retriable"].as_bool()),
        (Some("producer_fenced"), Some(false))
    );

    let plain = send(&client, "orders", Some("k"), &[], "{}").await;
    assert_eq!((plain.status, plain.duplicate), (StatusCode::OK, false), "no headers: as before");
    let end = plain.offset().expect("offset");
    assert_eq!(end, first.offset().expect("offset") + 3, "only the first request, the new epoch's and this one stored");

    // A producer new here may start at any sequence; one below it was never stored here, so it
    // is out of order, not a repeat to answer 200 for (the records would be lost).
    let started = send(&client, "orders", Some("k"), &producer("late", 0, 5), "{}").await;
    assert_eq!((started.status, started.offset()), (StatusCode::OK, Some(end + 1)));
    let below = send(&client, "orders", Some("k"), &producer("late", 0, 2), "{\"lost\":true}").await;
    assert_eq!((below.status, below.duplicate), (StatusCode::CONFLICT, false), "{}", below.body);
    assert_eq!(below.expected_seq.as_deref(), Some("6"));
    let after = send(&client, "orders", Some("k"), &[], "{}").await;
    assert_eq!(after.offset(), Some(end + 2), "the refused request stored nothing");

    for (headers, what) in [
        (vec![("producer-id", "a".to_string())], "one header alone"),
        (vec![("producer-id", "a".to_string()), ("producer-epoch", "1".to_string())], "two headers"),
        (producer("bad id", 0, 0), "an id with a space"),
        (producer(&"x".repeat(65), 0, 0), "an id over 64 characters"),
        (
            vec![("producer-id", "a".into()), ("producer-epoch", "-1".into()), ("producer-seq", "0".into())],
            "a negative epoch",
        ),
        (vec![("expected-offset", "soon".to_string())], "an Expected-Offset that is no offset"),
    ] {
        let refused = send(&client, "orders", Some("k"), &headers, "{}").await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{what}: {}", refused.body);
        assert_eq!(refused.body["error"], "bad_request", "{what}");
    }
    let unkeyed = send(&client, "orders", None, &[("expected-offset", "0".to_string())], "{}").await;
    assert_eq!(unkeyed.status, StatusCode::BAD_REQUEST, "a condition needs a partition it is about");
}

/// An unkeyed idempotent request goes to its producer's partition, so a retry meets its state.
#[tokio::test]
async fn unkeyed_idempotent_requests_stay_on_one_partition_and_survive_kill_9() {
    let (_dir, mut broker) = start();
    let client = TestClient::new(&broker);
    let mut partitions = std::collections::BTreeSet::new();
    for seq in 0..8 {
        let answer = send(&client, "events", None, &producer("unkeyed", 0, seq), "{}").await;
        assert_eq!(answer.status, StatusCode::OK);
        partitions.insert(answer.body["partition"].as_u64());
    }
    assert_eq!(partitions.len(), 1, "one partition for the producer: {partitions:?}");
    let last = send(&client, "events", None, &producer("unkeyed", 0, 7), "{}").await;
    assert!(last.duplicate);

    broker.kill9();
    broker.restart();
    let client = TestClient::new(&broker);
    let after = send(&client, "events", None, &producer("unkeyed", 0, 7), "{}").await;
    assert_eq!(
        (after.status, after.duplicate, after.offset()),
        (StatusCode::OK, true, last.offset()),
        "rebuilt from disk"
    );
    let next = send(&client, "events", None, &producer("unkeyed", 0, 9), "{}").await;
    assert_eq!((next.status, next.expected_seq.as_deref()), (StatusCode::CONFLICT, Some("8")));
}

/// With room for two producers a partition forgets the one that wrote least recently.
#[tokio::test]
async fn the_least_recent_producer_is_forgotten_beyond_the_bound() {
    let (_dir, broker) = start();
    let client = TestClient::new(&broker);
    for id in ["a", "b"] {
        assert_eq!(send(&client, "bounded", Some("k"), &producer(id, 0, 0), "{}").await.status, StatusCode::OK);
    }
    assert_eq!(send(&client, "bounded", Some("k"), &producer("a", 0, 1), "{}").await.status, StatusCode::OK);
    assert_eq!(send(&client, "bounded", Some("k"), &producer("c", 0, 0), "{}").await.status, StatusCode::OK);
    assert!(send(&client, "bounded", Some("k"), &producer("a", 0, 1), "{}").await.duplicate, "a is kept");
    assert!(!send(&client, "bounded", Some("k"), &producer("b", 0, 0), "{}").await.duplicate, "b was forgotten");
}

/// Two writers append at the offset they last saw, one request at a time each: every offset is
/// taken exactly once, the loser of each race gets 412 with the end and tries again there.
#[tokio::test]
async fn racing_conditional_appends_take_each_offset_once() {
    let (_dir, broker) = start();
    let writers = (0..2).map(|w| {
        let client = TestClient::new(&broker);
        tokio::spawn(async move {
            let (mut next, mut stored, mut refused) = (0u64, Vec::new(), 0);
            while stored.len() < 20 {
                let answer = send(
                    &client,
                    "ledger",
                    Some("one"),
                    &[("expected-offset", next.to_string())],
                    &format!("{{\"w\":{w}}}"),
                )
                .await;
                match answer.status {
                    StatusCode::OK => {
                        assert_eq!(answer.offset(), Some(next));
                        stored.push(next);
                        next += 1;
                    }
                    StatusCode::PRECONDITION_FAILED => {
                        assert_eq!(
                            (answer.body["error"].as_str(), answer.body["retriable"].as_bool()),
                            (Some("unexpected_offset"), Some(false))
                        );
                        let end: u64 = answer.body["end"].as_str().and_then(|e| e.parse().ok()).expect("end");
                        assert!(end > next, "the end moved on: {end} after {next}");
                        next = end;
                        refused += 1;
                    }
                    other => panic!("{other}: {}", answer.body),
                }
            }
            (stored, refused)
        })
    });
    let mut all = Vec::new();
    for writer in writers {
        let (stored, _) = writer.await.expect("writer");
        all.extend(stored);
    }
    all.sort_unstable();
    assert_eq!(all, (0..40).collect::<Vec<u64>>(), "every offset stored by exactly one writer");
}

/// Three brokers: a request repeated through every broker is stored once, and after the
/// partition's leader is killed, the new leader (which has the state from the copied batches)
/// answers the repeat with the original offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_through_any_broker_and_after_the_leader_dies_are_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    let first = send(&clients[0], "orders", Some("k"), &producer("p", 1, 0), "{\"n\":1}\n{\"n\":2}").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    for client in &clients {
        let again = send(client, "orders", Some("k"), &producer("p", 1, 0), "{\"n\":1}\n{\"n\":2}").await;
        assert_eq!((again.status, again.duplicate, again.offset()), (StatusCode::OK, true, first.offset()));
    }
    let gap = send(&clients[1], "orders", Some("k"), &producer("p", 1, 5), "{}").await;
    assert_eq!(
        (gap.status, gap.expected_seq.as_deref()),
        (StatusCode::CONFLICT, Some("1")),
        "forwarded with its number"
    );
    let partition = first.body["partition"].as_u64().expect("partition") as u32;
    let (_, view) = cluster_view(&Endpoint::of(&brokers[0])).await.expect("view");
    let leader = view[&partition].0 as usize;
    brokers[leader].kill9();
    let survivor = &clients[(leader + 1) % 3];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let answer = send(survivor, "orders", Some("k"), &producer("p", 1, 0), "{\"n\":1}\n{\"n\":2}").await;
        if answer.status == StatusCode::OK || tokio::time::Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (after.status, after.duplicate, after.offset()),
        (StatusCode::OK, true, first.offset()),
        "{}",
        after.body
    );
    let next = send(survivor, "orders", Some("k"), &producer("p", 1, 1), "{}").await;
    assert_eq!((next.status, next.duplicate), (StatusCode::OK, false));
}
