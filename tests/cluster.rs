//! Several brokers as one cluster (static topology): Raft-replicated consumer state,
//! produce forwarding to the partition's broker, a group reading every broker.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use runnel_tests::{start_cluster, TestClient};
use serde_json::{json, Value};

#[tokio::test]
async fn keyed_records_spread_over_all_brokers_and_a_group_reads_each_once_in_key_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = start_cluster(dir.path(), 3, &[]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();

    // Everything is produced through broker 0; keys spread over the 12 partitions of 3 brokers.
    let mut expected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for round in 0..4 {
        for k in 0..60 {
            let key = format!("key-{k}");
            clients[0].produce_lines("spread", Some(&key), &[json!({"key": key, "seq": round}).to_string()]).await;
            expected.entry(key).or_default().push(round);
        }
    }
    for i in 0..3 {
        let partitions =
            std::fs::read_dir(dir.path().join(format!("broker-{i}/topics/spread"))).expect("topic dir").count();
        assert_eq!(partitions, 12, "with 3 copies, broker {i} holds all 12 partitions (leads 4, follows 8)");
    }

    // Registered on broker 1, the group is known everywhere; members poll every broker.
    for member in ["a", "b", "c"] {
        let (status, body) = clients[1].register(member, "readers", &["spread"], Some("startFromEarliest")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut partitions_by_member: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    let mut total = 0;
    for _ in 0..40 {
        for member in ["a", "b", "c"] {
            for client in &clients {
                let polled = client.poll(member).await;
                assert!(
                    polled.status == StatusCode::OK || polled.status == StatusCode::NO_CONTENT,
                    "{}",
                    polled.status
                );
                for (_, partition, _, value) in polled.records() {
                    partitions_by_member.entry(member).or_default().insert(partition);
                    let key = value["key"].as_str().expect("key").to_string();
                    seen.entry(key).or_default().push(value["seq"].as_i64().expect("seq"));
                    total += 1;
                }
            }
        }
        if total >= 240 {
            break;
        }
    }
    assert_eq!(total, 240, "every record exactly once");
    assert_eq!(seen, expected, "per-key order holds");
    let sets: Vec<&BTreeSet<u32>> = partitions_by_member.values().collect();
    assert_eq!(sets.len(), 3);
    assert!(sets[0].is_disjoint(sets[1]) && sets[1].is_disjoint(sets[2]) && sets[0].is_disjoint(sets[2]));
    assert_eq!(sets.iter().map(|s| s.len()).sum::<usize>(), 12, "the three members cover all 12 partitions");
}

#[tokio::test]
async fn registration_and_commits_hold_on_every_broker_and_survive_one_broker_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    assert_eq!(clients[2].register("c1", "g", &["t"], None).await.0, StatusCode::OK);
    for client in &clients {
        assert_eq!(client.register("c1", "g", &["t"], None).await.1, "Already registered", "the same view everywhere");
        assert_ne!(client.poll("c1").await.status, StatusCode::CONFLICT);
    }

    // With one broker gone, a majority remains: register, commit and goodbye keep working.
    brokers[0].kill9();
    for (i, client) in clients.iter().enumerate().skip(1) {
        let id = format!("late-{i}");
        assert_eq!(client.register(&id, "g", &["t"], None).await.0, StatusCode::OK, "register via broker {i}");
        assert_eq!(client.commit(&id).await, StatusCode::NO_CONTENT);
        assert_eq!(client.goodbye(&id, true).await.0, StatusCode::OK);
    }
    let brokers_json: Value =
        reqwest::get(brokers[1].url(9250, "/v1/brokers")).await.expect("brokers").json().await.expect("json");
    assert_eq!(brokers_json["length"], 3);
}

#[tokio::test]
async fn a_goodbye_on_one_broker_commits_what_was_read_on_every_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = start_cluster(dir.path(), 3, &[]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    for k in 0..60 {
        clients[k % 3].produce_lines("handoff", Some(&format!("k{k}")), &[json!({"k": k}).to_string()]).await;
    }
    clients[0].register("a", "g", &["handoff"], Some("startFromEarliest")).await;
    let mut read = 0;
    for _ in 0..20 {
        for client in &clients {
            read += client.poll("a").await.records().len();
        }
        if read >= 60 {
            break;
        }
    }
    assert_eq!(read, 60);
    // Goodbye through one broker only: the positions reached on the other two count too.
    assert_eq!(clients[2].goodbye("a", true).await.0, StatusCode::OK);
    clients[1].register("b", "g", &["handoff"], None).await;
    for client in &clients {
        let polled = client.poll("b").await;
        assert_eq!(polled.status, StatusCode::NO_CONTENT, "nothing is delivered twice: {:?}", polled.records());
    }
    for k in 0..12 {
        clients[0].produce_lines("handoff", Some(&format!("k{k}")), &[json!({"new": k}).to_string()]).await;
    }
    let mut fresh = Vec::new();
    for _ in 0..20 {
        for client in &clients {
            fresh.extend(client.poll("b").await.records().into_iter().map(|r| r.3));
        }
        if fresh.len() >= 12 {
            break;
        }
    }
    assert_eq!(fresh.len(), 12);
    assert!(fresh.iter().all(|v| v.get("new").is_some()));
}

/// Where `broker`'s copy of a partition ends (its peer port's replica endpoint).
async fn replica_end(broker: &runnel_tests::BrokerProcess, topic: &str, partition: u32) -> u64 {
    let body: Value = broker.peer_get(&format!("/cluster/end/{topic}/{partition}")).await.json().await.expect("json");
    body["end"].as_u64().expect("end")
}

#[tokio::test]
async fn acknowledged_records_are_on_a_majority_and_a_returning_follower_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    // Partition p is led by broker p / 4 and followed by the next two brokers.
    let mut acked: BTreeMap<u32, u64> = BTreeMap::new();
    for k in 0..90 {
        let (status, ack) = clients[k % 3].produce_keyed("copies", &format!("k{k}"), &json!({"k": k})).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        let partition = ack["partition"].as_u64().expect("partition") as u32;
        let end = ack["startOffset"].as_str().and_then(|s| s.parse::<u64>().ok()).expect("offset") + 1;
        let slot = acked.entry(partition).or_default();
        *slot = (*slot).max(end);
    }
    for (&partition, &end) in &acked {
        let leader = (partition / 4) as usize;
        let mut copies = 0;
        for follower in [(leader + 1) % 3, (leader + 2) % 3] {
            if replica_end(&brokers[follower], "copies", partition).await >= end {
                copies += 1;
            }
        }
        assert!(copies >= 1, "partition {partition}: an acknowledged record is on the leader and a follower");
    }

    // Broker 2 goes down: every write is still acknowledged (2 of 3 copies), those to the
    // partitions it led once a survivor took them over.
    brokers[2].kill9();
    for k in 0..30 {
        let (status, ack) = clients[k % 2].produce_keyed("copies", &format!("down{k}"), &json!({"down": k})).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
    }
    brokers[2].restart();
    // Broker 2 catches up on every partition, whoever leads it now.
    for partition in 0..12u32 {
        let mut caught_up = false;
        for _ in 0..100 {
            let others = replica_end(&brokers[0], "copies", partition)
                .await
                .max(replica_end(&brokers[1], "copies", partition).await);
            if replica_end(&brokers[2], "copies", partition).await >= others {
                caught_up = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(caught_up, "broker 2 caught up on partition {partition}");
    }
}

#[tokio::test]
async fn without_a_majority_of_copies_a_write_is_not_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let client = TestClient::new(&brokers[0]);
    brokers[1].kill9();
    brokers[2].kill9();
    // Unkeyed records stay on broker 0's own partitions, whose followers are both down.
    let started = std::time::Instant::now();
    let response =
        client.http.post(client.messages_url("lonely")).body("{\"alone\":true}").send().await.expect("produce");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

/// The first segment's base offset and the bytes of the log files of a partition's copy.
fn copy_on_disk(home: &std::path::Path, topic: &str, partition: u32) -> Option<(u64, u64)> {
    let entries = std::fs::read_dir(home.join("topics").join(topic).join(partition.to_string())).ok()?;
    let logs: Vec<(u64, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((name, e.metadata().ok()?.len()))
        })
        .collect();
    let first = logs.iter().map(|(base, _)| *base).min()?;
    Some((first, logs.iter().map(|(_, bytes)| bytes).sum()))
}

/// Issue 12 (a shrink copies what retention keeps): a copy that comes back empty after
/// retention deleted the leader's oldest records could never catch up (its leader had nothing
/// to send from offset 0). It now starts again at the leader's first retained record.
#[tokio::test]
async fn a_wiped_follower_catches_up_from_the_leader_s_first_retained_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small =
        [("RUNNEL_SEGMENT_BYTES", "65536"), ("RUNNEL_RETENTION_BYTES", "131072"), ("RUNNEL_RETENTION_CHECK_MS", "100")];
    let mut brokers = start_cluster(dir.path(), 3, &small);
    let client = TestClient::new(&brokers[0]);
    // Partition 0 (3 brokers × 4 ranges): led by broker 0, copies on 1 and 2.
    let ring = runnel_broker::partitioning::Ring::new(3, 4);
    let key = (0..).map(|i| format!("k{i}")).find(|k| ring.partition_of_key(k.as_bytes()) == 0).expect("a key");
    let record = "x".repeat(4000);
    let mut trimmed = None;
    for _ in 0..400 {
        let (status, ack) = client.produce_keyed("trimmed", &key, &json!({ "pad": record })).await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        trimmed = copy_on_disk(&brokers[0].home, "trimmed", 0).filter(|(start, _)| *start > 0);
        if trimmed.is_some() {
            break;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (start, _) = copy_on_disk(&brokers[0].home, "trimmed", 0).expect("the leader's copy");
    assert!(trimmed.is_some() && start > 0, "retention deleted the leader's oldest segment");

    brokers[2].kill9();
    std::fs::remove_dir_all(&brokers[2].home).expect("wipe broker 2");
    brokers[2].restart();
    // A new record shows the leader that broker 2's copy is not where it was.
    let (status, ack) = client.produce_keyed("trimmed", &key, &json!({ "after": "the wipe" })).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let end = replica_end(&brokers[0], "trimmed", 0).await;
    let mut copy = None;
    for _ in 0..200 {
        copy = copy_on_disk(&brokers[2].home, "trimmed", 0);
        if copy.is_some_and(|(_, bytes)| bytes > 0) && replica_end(&brokers[2], "trimmed", 0).await >= end {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (copy_start, bytes) = copy.unwrap_or_else(|| {
        let log = brokers[0].log_text();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!("broker 2 has no copy of partition 0 again; broker 0's log ends with {tail:#?}")
    });
    assert!(bytes > 0 && replica_end(&brokers[2], "trimmed", 0).await >= end, "broker 2 caught up to {end}");
    assert!(copy_start >= start, "it starts at the leader's retained start {start}, not {copy_start}");
}
