//! Issue 13, item 1: a poll with `wait=MS` is held until records become readable in a
//! partition the broker serves for the consumer, and answers within moments of the produce
//! (not after the v1 `Retry-After: 1` pause); at the deadline it answers 204; a shutdown
//! releases it at once.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{start_cluster, BrokerProcess, TestClient};
use serde_json::{json, Value};

/// The bound from an acknowledged produce to the long-poll's answer.
const ANSWER_WITHIN: Duration = Duration::from_millis(50);

/// Starts a long-poll of `consumer` on `broker`; resolves to (answer, when it came).
fn long_poll(
    broker: &BrokerProcess,
    consumer: &str,
    wait: Duration,
) -> tokio::task::JoinHandle<(runnel_tests::Polled, Instant)> {
    let (client, consumer) = (TestClient::new(broker), consumer.to_string());
    tokio::spawn(async move {
        let polled = client.poll_waiting(&consumer, wait).await;
        (polled, Instant::now())
    })
}

#[tokio::test]
async fn a_waiting_poll_answers_within_moments_of_a_produce_and_204_at_its_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    assert_eq!(client.register("c1", "g", &["lp"], Some("startFromLatest")).await.0, StatusCode::OK);

    let waiting = long_poll(&broker, "c1", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.produce_lines("lp", Some("k"), &[json!({"n": 1}).to_string()]).await;
    let acked = Instant::now();
    let (polled, answered) = waiting.await.expect("poll task");
    assert_eq!(polled.status, StatusCode::OK);
    assert_eq!(polled.records().iter().map(|r| r.3.clone()).collect::<Vec<Value>>(), vec![json!({"n": 1})]);
    let late = answered.saturating_duration_since(acked);
    assert!(late <= ANSWER_WITHIN, "the long-poll answered {late:?} after the produce was acknowledged");

    // Nothing new: 204 at the deadline, asking to poll again at once.
    let started = Instant::now();
    let polled = client.poll_waiting("c1", Duration::from_millis(500)).await;
    let took = started.elapsed();
    assert_eq!(polled.status, StatusCode::NO_CONTENT);
    assert_eq!(polled.retry_after(), Some("0"));
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1500), "held {took:?}");

    // Longer than RUNNEL_POLL_WAIT_MAX_MS: a clear 400.
    let response = client
        .http
        .post(broker.url(9252, "/v1/consumer/poll"))
        .query(&[("consumerId", "c1"), ("wait", "30001")])
        .send()
        .await
        .expect("poll");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("a JSON error");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("RUNNEL_POLL_WAIT_MAX_MS")), "{body}");

    // A shutdown answers a waiting poll at once instead of cutting it off.
    let waiting = long_poll(&broker, "c1", Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    let pid = broker.pid().expect("running");
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    let (polled, answered) = waiting.await.expect("poll task");
    assert_eq!(polled.status, StatusCode::NO_CONTENT);
    let released = answered - stopping;
    assert!(released < Duration::from_secs(2), "the waiting poll was released {released:?} after SIGTERM");
    assert!(broker.terminate_wait(), "the broker stops cleanly");
}

#[tokio::test]
async fn in_a_cluster_the_leader_s_waiting_poll_answers_a_produce_through_another_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = start_cluster(dir.path(), 3, &[]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    assert_eq!(clients[0].register("c1", "g", &["lp3"], Some("startFromLatest")).await.0, StatusCode::OK);
    // Until every broker serves its partitions (took them over), it has nothing of the
    // consumer's to wait on and says so (204, `Retry-After: 5`).
    for client in &clients {
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.poll("c1").await.retry_after() == Some("5") {
            assert!(Instant::now() < deadline, "a broker serves none of its partitions");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for round in 0..3 {
        // The consumer waits on every broker, as a client polls them all.
        let waiting: Vec<_> = brokers.iter().map(|b| long_poll(b, "c1", Duration::from_secs(2))).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        clients[round % 3]
            .produce_lines("lp3", Some(&format!("key-{round}")), &[json!({"round": round}).to_string()])
            .await;
        let acked = Instant::now();
        let mut first: Option<(Instant, Value)> = None;
        let mut answers = Vec::new();
        for task in waiting {
            let (polled, answered) = task.await.expect("poll task");
            answers.push((
                polled.status,
                polled.retry_after().map(String::from),
                answered.saturating_duration_since(acked),
            ));
            if polled.status == StatusCode::OK {
                let value = polled.records()[0].3.clone();
                first = Some((answered, value));
            }
        }
        let (answered, value) = first.unwrap_or_else(|| panic!("no waiting poll returned the record: {answers:?}"));
        assert_eq!(value, json!({"round": round}));
        let late = answered.saturating_duration_since(acked);
        assert!(late <= ANSWER_WITHIN, "round {round}: answered {late:?} after the produce was acknowledged");
    }
}

/// A long-poll on a broker that serves none of the consumer's partitions waits too, and reads
/// as soon as a rebalance gives it some there: a v1 answer ("nothing of yours here, come back
/// in 5 s") would have left the records waiting out the pause.
#[tokio::test]
async fn a_waiting_poll_with_nothing_assigned_reads_at_once_when_a_rebalance_gives_it_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    // Five members, four partitions: c5 gets none.
    for member in ["c1", "c2", "c3", "c4", "c5"] {
        assert_eq!(client.register(member, "g", &["rb"], Some("startFromEarliest")).await.0, StatusCode::OK);
    }
    for k in 0..40 {
        client.produce_lines("rb", Some(&format!("key-{k}")), &[json!({"k": k}).to_string()]).await;
    }
    assert_eq!(client.poll("c5").await.retry_after(), Some("5"), "nothing of c5's is served here");
    let waiting = long_poll(&broker, "c5", Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = Instant::now();
    assert_eq!(client.goodbye("c1", false).await.0, StatusCode::OK);
    let (polled, answered) = waiting.await.expect("poll task");
    assert_eq!(polled.status, StatusCode::OK, "the rebalance gave c5 a partition with records");
    assert!(!polled.records().is_empty());
    let took = answered.saturating_duration_since(left);
    assert!(took < Duration::from_secs(2), "answered {took:?} after the rebalance");
}

/// A waiting poll on a broker that takes a partition over (its leader was killed) reads the
/// partition's records once it serves it, with nothing produced meanwhile to wake it.
#[tokio::test]
async fn a_waiting_poll_reads_a_partition_its_broker_took_over() {
    use runnel_tests::workload::{cluster_view, Endpoint};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    assert_eq!(clients[0].register("c1", "g", &["moved"], Some("startFromEarliest")).await.0, StatusCode::OK);
    let (status, ack) = clients[0].produce_keyed("moved", "k", &json!({"n": 1})).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    let p = ack["partition"].as_u64().expect("partition") as u32;
    let (_, partitions) = cluster_view(&Endpoint::of(&brokers[0])).await.expect("the cluster view");
    let leader = partitions[&p].0 as usize;
    let others: Vec<usize> = (0..3).filter(|b| *b != leader).collect();
    // Their own partitions hold nothing: the polls wait.
    let waiting: Vec<_> = others.iter().map(|&b| long_poll(&brokers[b], "c1", Duration::from_secs(12))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    brokers[leader].kill9();
    let mut answers = Vec::new();
    for task in waiting {
        let (polled, answered) = task.await.expect("poll task");
        answers.push((polled.status, polled.records().len(), answered.saturating_duration_since(killed)));
    }
    let (_, _, took) = answers
        .iter()
        .find(|(status, records, _)| *status == StatusCode::OK && *records == 1)
        .unwrap_or_else(|| panic!("no waiting poll read the moved partition: {answers:?}"));
    assert!(*took < Duration::from_secs(10), "read {took:?} after the kill (failover takes 1.5–3 s): {answers:?}");
}
