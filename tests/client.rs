//! The Rust client and the `runnel` tool against real brokers.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runnel_client::{Brokers, ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig, StartFrom};
use runnel_tests::{built_binary, start_cluster, BrokerProcess};
use serde_json::json;

async fn produce_range(producer: &Producer, from: u64, to: u64) {
    for n in from..to {
        let key = format!("k{}", n % 10);
        producer.send("flow", Some(&key), json!({"n": n}).to_string()).await.expect("produce");
    }
}

/// Polls (all `consumers` at once) until every n in 0..upto was delivered; `delivered`
/// keeps every delivery in arrival order, repeats included.
async fn read_until(consumers: &mut [Consumer], delivered: &mut Vec<u64>, upto: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: BTreeSet<u64> = delivered.iter().copied().collect();
        let missing: Vec<u64> = (0..upto).filter(|n| !seen.contains(n)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "missing records: {missing:?}");
        // Concurrently, as separate applications would: each poll may wait for records.
        let polls = futures_util::future::join_all(consumers.iter_mut().map(Consumer::poll)).await;
        for record in polls.into_iter().flat_map(|polled| polled.expect("poll")) {
            delivered.push(record.value["n"].as_u64().expect("n"));
        }
        let pause = consumers.iter().map(Consumer::next_poll_in).min().unwrap_or_default();
        tokio::time::sleep(pause.min(Duration::from_millis(200))).await;
    }
}

/// Per key (n % keys), the first delivery of each record comes in the order it was produced.
fn assert_key_order(delivered: &[u64], keys: u64) {
    let mut first = BTreeSet::new();
    let mut last_per_key: Vec<Option<u64>> = vec![None; keys as usize];
    for &n in delivered {
        if first.insert(n) {
            let last = &mut last_per_key[(n % keys) as usize];
            assert!(last.is_none_or(|l| l < n), "key {} delivered {n} after {last:?}", n % keys);
            *last = Some(n);
        }
    }
}

#[tokio::test]
async fn a_consumer_keeps_going_through_a_timeout_a_broker_restart_and_a_rebalance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(&dir.path().join("broker"), &[("RUNNEL_CONSUMER_TIMEOUT_MS", "1000")]);
    let brokers = Brokers::fixed([broker.ip.to_string()]);
    let producer = Producer::new(brokers.clone());
    let mut seen = Vec::new();

    produce_range(&producer, 0, 100).await;
    let mut consumers = vec![Consumer::connect(brokers.clone(), reader_config("a")).await.expect("connect")];
    read_until(&mut consumers, &mut seen, 100).await;
    consumers[0].commit().await.expect("commit");

    // Silent past the timeout: the broker unregisters it, the next poll gets 409 and the
    // client registers again by itself.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    produce_range(&producer, 100, 150).await;
    read_until(&mut consumers, &mut seen, 150).await;
    assert!(broker.log_text().contains("consumers timed out and were unregistered"), "the consumer really timed out");

    // The broker is killed and comes back.
    broker.kill9();
    broker.restart();
    produce_range(&producer, 150, 200).await;
    read_until(&mut consumers, &mut seen, 200).await;

    // A second member joins: partitions are dealt again, nothing is lost.
    consumers.push(Consumer::connect(brokers.clone(), reader_config("b")).await.expect("connect b"));
    produce_range(&producer, 200, 300).await;
    read_until(&mut consumers, &mut seen, 300).await;
    assert_key_order(&seen, 10);
    for consumer in consumers {
        consumer.close().await.expect("goodbye");
    }
}

/// A member of the group that reads topic `flow` from the start.
fn reader_config(id: &str) -> ConsumerConfig {
    ConsumerConfig {
        id: id.into(),
        group: "flow-readers".into(),
        topics: vec!["flow".into()],
        start: StartFrom::Earliest,
        wait: runnel_client::DEFAULT_WAIT,
    }
}

/// Sends `n` in from..to in order per key, the keys in parallel, as an application would.
async fn produce_keyed(producer: &Producer, keys: u64, from: u64, to: u64) {
    let tasks = (0..keys).map(|k| {
        let producer = producer.clone();
        tokio::spawn(async move {
            for n in (from..to).filter(|n| n % keys == k) {
                let key = format!("k{k}");
                producer.send("flow", Some(&key), json!({"n": n, "key": k}).to_string()).await.expect("produce");
            }
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.expect("producer task");
    }
}

#[tokio::test]
async fn in_a_cluster_the_client_carries_on_through_a_broker_death_and_its_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, &[]);
    let http = reqwest::Client::new();
    let brokers = Brokers::discover(&http, &cluster[0].ip.to_string(), 9250).await.expect("discover");
    assert_eq!(brokers.hosts.len(), 3, "discovery lists every broker");
    let producer = Producer::new(brokers.clone());
    let mut consumers = vec![
        Consumer::connect(brokers.clone(), reader_config("a")).await.expect("connect a"),
        Consumer::connect(brokers.clone(), reader_config("b")).await.expect("connect b"),
    ];
    let mut seen = Vec::new();
    produce_keyed(&producer, 12, 0, 120).await;
    read_until(&mut consumers, &mut seen, 120).await;

    // A broker that leads partitions dies: the producer moves on to the others, its
    // partitions move to their copies, and the consumers find them there.
    cluster[2].kill9();
    let status = Command::new(built_binary("runnel"))
        .args(["status", "--host", &cluster[0].ip.to_string()])
        .output()
        .expect("runnel status");
    assert_eq!(status.status.code(), Some(3), "scripts can tell a broker is down");
    let dead = cluster[2].ip.to_string();
    assert!(String::from_utf8_lossy(&status.stdout).lines().any(|l| l.starts_with(&dead) && l.contains("unreachable")));
    produce_keyed(&producer, 12, 120, 240).await;
    read_until(&mut consumers, &mut seen, 240).await;

    cluster[2].restart();
    produce_keyed(&producer, 12, 240, 360).await;
    read_until(&mut consumers, &mut seen, 360).await;
    assert_key_order(&seen, 12);
    for consumer in consumers {
        consumer.close().await.expect("goodbye");
    }
}

#[tokio::test]
async fn the_cli_produces_stdin_lines_and_consumes_them_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]);
    let runnel = built_binary("runnel");
    let host = broker.ip.to_string();

    let mut produce = Command::new(&runnel)
        .args(["produce", "--host", &host, "cli-topic", "--key", "k"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("runnel produce");
    {
        use std::io::Write;
        let mut stdin = produce.stdin.take().expect("stdin");
        stdin.write_all(b"{\"n\":1}\nplain text\n{\"n\":3}\n").expect("write");
    }
    assert!(produce.wait().expect("wait").success());

    let out = Command::new(&runnel)
        .args(["consume", "--host", &host, "cli-topic", "-n", "3", "--offsets"])
        .output()
        .expect("runnel consume");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let values: Vec<&str> = lines.iter().map(|l| l.rsplit('\t').next().unwrap_or_default()).collect();
    assert_eq!(values, vec![r#"{"n":1}"#, r#""plain text""#, r#"{"n":3}"#], "{lines:?}");
    assert!(lines[0].starts_with("cli-topic\t"));

    let status = Command::new(&runnel).args(["status", "--host", &host]).output().expect("runnel status");
    assert!(status.status.success());
    let brokers = Command::new(&runnel).args(["brokers", "--host", &host]).output().expect("runnel brokers");
    assert!(String::from_utf8_lossy(&brokers.stdout).contains(&host));
    let unreachable = Command::new(&runnel)
        .args(["status", "--host", "127.0.0.1", "--discovery-port", "1"])
        .output()
        .expect("status");
    assert_eq!(unreachable.status.code(), Some(1), "scripts can tell a failure");
}

/// Issue 13, item 1: the client long-polls by default, so a poll started before a produce
/// returns its record as soon as it is acknowledged (a v1 poll would have answered "nothing
/// new, retry in a second" at once).
#[tokio::test]
async fn a_client_poll_waits_for_the_next_record_and_returns_it_within_moments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]);
    let brokers = Brokers::fixed([broker.ip.to_string()]);
    let mut consumer =
        Consumer::connect(brokers.clone(), ConsumerConfig::new("waiter", "waiters", &["flow"])).await.expect("connect");
    let polling = tokio::spawn(async move {
        let records = consumer.poll().await.expect("poll");
        (records, Instant::now(), consumer)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    Producer::new(brokers).send("flow", Some("k"), json!({"n": 1}).to_string()).await.expect("produce");
    let acked = Instant::now();
    let (records, returned, consumer) = polling.await.expect("poll task");
    assert_eq!(records.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), vec![json!({"n": 1})]);
    let late = returned.saturating_duration_since(acked);
    assert!(late < Duration::from_millis(100), "the poll returned {late:?} after the produce was acknowledged");
    consumer.close().await.expect("goodbye");
}

/// Issue 13, item 5: `runnel read` reads a partition from a position with no group, and
/// `runnel tail` prints a topic's records as they are appended.
#[tokio::test]
async fn the_cli_reads_a_partition_from_a_position_and_tails_a_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]);
    let host = broker.ip.to_string();
    let runnel = built_binary("runnel");
    let producer = Producer::new(Brokers::fixed([host.clone()]));
    for n in 0..5 {
        producer.send("tailed", Some("k"), json!({"n": n}).to_string()).await.expect("produce");
    }
    let read = |args: &[&str]| {
        let out =
            Command::new(&runnel).args(["read", "--host", &host, "tailed"]).args(args).output().expect("runnel read");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    let holding: Vec<String> = (0..4).map(|p| p.to_string()).filter(|p| !read(&["-p", p]).is_empty()).collect();
    assert_eq!(holding.len(), 1, "one key, one partition");
    let p = holding[0].as_str();
    assert_eq!(read(&["-p", p]), (0..5).map(|n| format!("{{\"n\":{n}}}")).collect::<Vec<_>>());
    assert_eq!(read(&["-p", p, "--from", "3"]), vec![r#"{"n":3}"#, r#"{"n":4}"#]);
    assert_eq!(read(&["-p", p, "--from", "1", "-n", "1"]), vec![r#"{"n":1}"#]);
    assert!(read(&["-p", p, "--from", "latest"]).is_empty());
    let with_offsets = read(&["-p", p, "--from", "@0", "-n", "1", "--offsets"]);
    assert!(with_offsets[0].starts_with(&format!("{p}\t0\t")), "{with_offsets:?}");

    // A new group can start at a time: from the first record appended then or later.
    let third = read(&["-p", p, "--from", "3", "-n", "1", "--offsets"]);
    let time = third[0].split('\t').nth(2).expect("the append time").to_string();
    let from_time = Command::new(&runnel)
        .args(["consume", "--host", &host, "tailed", "--group", "from-time", "--from", &format!("@{time}")])
        .output()
        .expect("runnel consume");
    assert!(from_time.status.success(), "{}", String::from_utf8_lossy(&from_time.stderr));
    let consumed: Vec<String> = String::from_utf8_lossy(&from_time.stdout).lines().map(str::to_string).collect();
    let first = consumed.iter().position(|l| l == r#"{"n":3}"#).expect("record 3 is read");
    assert!(!consumed.contains(&r#"{"n":0}"#.to_string()), "nothing before the time: {consumed:?}");
    assert_eq!(consumed[first..], [r#"{"n":3}"#, r#"{"n":4}"#], "{consumed:?}");

    // tail follows every partition, here from the earliest records on (the live part of the
    // stream is tests/streams.rs'), whenever it subscribes.
    let tail = Command::new(&runnel)
        .args(["tail", "--host", &host, "tailed", "-n", "7", "--from", "earliest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runnel tail");
    tokio::time::sleep(Duration::from_millis(500)).await;
    producer.send("tailed", Some("k"), json!({"n": 5}).to_string()).await.expect("produce");
    producer.send("tailed", Some("other-key"), json!({"n": 6}).to_string()).await.expect("produce");
    let out = tokio::task::spawn_blocking(move || tail.wait_with_output()).await.expect("join").expect("tail output");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(lines, (0..7).map(|n| format!("{{\"n\":{n}}}")).collect::<Vec<_>>());
}

/// Issue 14: the client's producer is idempotent by default. Its batches of many keys, sent
/// at once, are numbered per partition (none refused, none taken for a repeat), and a producer
/// started later with the same id fences the earlier one (403, nothing stored).
#[tokio::test]
async fn the_producer_is_idempotent_by_default_and_a_later_one_with_its_id_fences_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]);
    let brokers = Brokers::fixed([broker.ip.to_string()]);
    let config = ProducerConfig { producer_id: Some("orders-writer".into()), ..ProducerConfig::default() };
    let old = Producer::with_config(brokers.clone(), config.clone());
    assert_eq!(old.producer_id(), Some("orders-writer"));
    let sends = (0..200).map(|i| {
        let old = old.clone();
        async move { old.send("fenced", Some(&format!("k{}", i % 20)), json!({ "n": i }).to_string()).await }
    });
    let stored = futures_util::future::join_all(sends).await;
    assert!(stored.iter().all(|s| s.as_ref().is_ok_and(|p| !p.duplicate)), "{:?}", stored.iter().find(|s| s.is_err()));
    let unkeyed = old.send_batch("fenced", None, vec!["{}".into()]).await.expect("unkeyed");
    assert!(!unkeyed.duplicate);

    tokio::time::sleep(Duration::from_millis(5)).await;
    let new = Producer::with_config(brokers.clone(), config);
    new.send_batch("fenced", Some("k1"), vec!["{\"by\":\"new\"}".into()]).await.expect("the new producer");
    let refused = old.send_batch("fenced", Some("k1"), vec!["{\"by\":\"old\"}".into()]).await;
    assert!(
        matches!(&refused, Err(ClientError::Status { status, .. }) if *status == reqwest::StatusCode::FORBIDDEN),
        "{refused:?}"
    );
    let metrics = reqwest::get(broker.url(9253, "/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("runnel_produce_duplicates_total 0"), "no repeats without faults");
    assert!(metrics.contains("runnel_produce_records_total 202"), "every record stored once");
}

/// The sum over `cluster` of the counter `name` (its one unlabelled line).
async fn counter_sum(cluster: &[BrokerProcess], name: &str) -> u64 {
    let mut sum = 0;
    for broker in cluster {
        let text = reqwest::get(broker.url(9253, "/metrics")).await.expect("metrics").text().await.expect("text");
        let line = text.lines().find(|l| l.split(' ').next() == Some(name));
        sum += line.and_then(|l| l.split(' ').nth(1)).map_or(0, |v| v.parse::<u64>().expect("a count"));
    }
    sum
}

#[tokio::test]
async fn an_idempotent_producer_sends_each_batch_to_the_leader_of_its_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, &[]);
    let brokers = Brokers::discover(&reqwest::Client::new(), &cluster[0].ip.to_string(), 9250).await.expect("discover");
    assert!(brokers.in_ordinal_order, "a discovered list names the brokers in ordinal order");
    let send_keyed = |producer: Producer, topic: &'static str| async move {
        for i in 0..30 {
            let stored = producer.send_batch(topic, Some(&format!("k{i}")), vec!["{}".into()]).await.expect("stored");
            assert!(!stored.duplicate);
        }
        producer.send_batch(topic, None, vec!["{}".into()]).await.expect("unkeyed");
    };

    send_keyed(Producer::new(brokers.clone()), "direct").await;
    assert_eq!(counter_sum(&cluster, "runnel_produce_forwarded_total").await, 0, "every batch went to its leader");
    assert_eq!(counter_sum(&cluster, "runnel_produce_records_total").await, 31);

    // A list in no known order: batches go round the brokers, which pass most of them on.
    let unordered = Brokers { in_ordinal_order: false, ..brokers };
    send_keyed(Producer::new(unordered), "round").await;
    let forwarded = counter_sum(&cluster, "runnel_produce_forwarded_total").await;
    assert!((5..=31).contains(&forwarded), "{forwarded} of 31 batches passed on");
    assert_eq!(counter_sum(&cluster, "runnel_produce_records_total").await, 62);
}
