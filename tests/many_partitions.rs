//! A broker with more partitions than it may open files (issue 11, many partitions): it opens
//! segment files as needed and closes idle ones, so under a low open-file limit produces keep
//! succeeding, a restart recovers every partition, and every record reads back.

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::StatusCode;
use runnel_broker::partitioning::Ring;
use runnel_tests::{BrokerProcess, TestClient};

/// The broker's soft and hard open-file limit: far fewer than the partitions' segment files.
const OPEN_FILES: u64 = 256;
const TOPICS: usize = 300;
/// Partitions of a topic on a single broker (`RUNNEL_CONSUMER_RANGES` default).
const PARTITIONS: u32 = 4;
/// Concurrent producers.
const PRODUCERS: usize = 8;

/// One key per partition, so each request lands in a chosen partition.
fn key_per_partition() -> Vec<String> {
    let ring = Ring::new(1, PARTITIONS);
    (0..PARTITIONS)
        .map(|p| (0..).map(|i| format!("k{i}")).find(|k| ring.partition_of_key(k.as_bytes()) == p).expect("a key"))
        .collect()
}

/// Produces one record `{round}` to every partition of every topic; returns the failures.
async fn produce_everywhere(client: &Arc<TestClient>, round: u32) -> Vec<String> {
    let keys = Arc::new(key_per_partition());
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|worker| {
            let (client, keys) = (client.clone(), keys.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                for topic in (worker..TOPICS).step_by(PRODUCERS) {
                    for key in keys.iter() {
                        let body = round.to_string();
                        let (status, text) =
                            client.produce(&format!("t-{topic}"), Some(key), "application/x-ndjson", body).await;
                        if status != StatusCode::OK {
                            failed.push(format!("t-{topic} key {key}: {status} {text}"));
                        }
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = Vec::new();
    for task in tasks {
        failed.extend(task.await.expect("producer task"));
    }
    failed
}

#[tokio::test]
async fn a_broker_with_more_partitions_than_open_files_produces_restarts_and_reads_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("RUNNEL_MAX_CONSUMER_TOPICS", "300")];
    let mut broker = BrokerProcess::start_with_open_files(&dir.path().join("broker"), &env, OPEN_FILES);
    let client = Arc::new(TestClient::new(&broker));

    let failed = produce_everywhere(&client, 0).await;
    assert!(failed.is_empty(), "{} of {} produces failed, e.g. {:?}", failed.len(), TOPICS * 4, &failed[..1]);

    // The restart recovers 1,200 partitions (2,400 segment files) under the same limit.
    broker.restart();
    let client = Arc::new(TestClient::new(&broker));
    let failed = produce_everywhere(&client, 1).await;
    assert!(failed.is_empty(), "{} produces failed after the restart, e.g. {:?}", failed.len(), &failed[..1]);

    let topics: Vec<String> = (0..TOPICS).map(|t| format!("t-{t}")).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let (status, body) = client.register("reader", "g", &names, Some("startFromEarliest")).await;
    assert!(status.is_success(), "register: {status} {body}");
    let expected = TOPICS * PARTITIONS as usize * 2;
    let got = client.poll_until("reader", expected, 2000).await;
    let read: BTreeSet<(String, u32, i64, String)> =
        got.into_iter().map(|(t, p, o, v)| (t, p, o, v.to_string())).collect();
    let wanted: BTreeSet<(String, u32, i64, String)> = topics
        .iter()
        .flat_map(|t| (0..PARTITIONS).flat_map(move |p| (0..2).map(move |o| (t.clone(), p, o, o.to_string()))))
        .collect();
    assert_eq!(read.len(), expected, "every record read back exactly once");
    assert_eq!(read, wanted);
    assert!(!broker.log_text().contains("Too many open files"), "no request ran out of files");
}
