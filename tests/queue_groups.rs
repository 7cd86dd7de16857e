//! Queue groups (SPEC §14) against real brokers: workers as processes, one killed mid-batch;
//! nack with a delay; max_deliver into the dead-letter topic; the partition leader killed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runnel_client::{Brokers, Producer, QueueConsumer, QueueRecord, QueueSettings, SettleResult};
use runnel_tests::{built_binary, start_cluster, BrokerProcess};
use serde_json::{json, Value};

/// Produces `count` records `{"n": i}`, keyed `k{i % 50}`.
async fn produce(brokers: &Brokers, topic: &str, count: u64) {
    let producer = Producer::new(brokers.clone());
    let sends = (0..count).map(|n| {
        let producer = producer.clone();
        let topic = topic.to_string();
        async move { producer.send(&topic, Some(&format!("k{}", n % 50)), json!({ "n": n }).to_string()).await }
    });
    for sent in futures_util::future::join_all(sends).await {
        sent.expect("produce");
    }
}

async fn discover(broker: &BrokerProcess) -> Brokers {
    Brokers::discover(&reqwest::Client::new(), &broker.ip.to_string(), 9250).await.expect("discover")
}

/// The sum over `cluster` of the counter `name` of `group`.
async fn group_counter(cluster: &[BrokerProcess], name: &str, group: &str) -> u64 {
    let mut sum = 0;
    for broker in cluster.iter().filter(|b| b.pid().is_some()) {
        let Ok(response) = reqwest::get(broker.url(9253, "/metrics")).await else { continue };
        let text = response.text().await.expect("metrics text");
        let series = format!("{name}{{group=\"{group}\"}} ");
        sum +=
            text.lines().filter_map(|l| l.strip_prefix(&series)).map(|v| v.parse::<u64>().expect("count")).sum::<u64>();
    }
    sum
}

/// `runnel queue work` as a process, its JSON lines going to `out`.
fn worker(broker: &BrokerProcess, group: &str, topic: &str, batch: usize, process_ms: u64, out: &Path) -> Child {
    let file = std::fs::File::create(out).expect("worker output");
    Command::new(built_binary("runnel"))
        .args(["queue", "work", group, "--topic", topic, "-b", &batch.to_string()])
        .args(["--process-ms", &process_ms.to_string(), "--host", &broker.ip.to_string()])
        .stdout(Stdio::from(file))
        .stderr(Stdio::null())
        .spawn()
        .expect("start a worker")
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

async fn wait_until(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn unacknowledged(brokers: &Brokers, group: &str) -> u64 {
    let shown = QueueConsumer::new(brokers.clone(), group, &[]).describe().await.expect("describe");
    shown["numUnacknowledged"].as_u64().expect("a count")
}

#[tokio::test]
async fn eight_workers_share_twelve_partitions_and_a_killed_worker_s_records_go_to_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, &[]);
    let brokers = discover(&cluster[0]).await;
    let layout: Value =
        reqwest::get(cluster[0].url(9252, "/v1/topic/jobs")).await.expect("layout").json().await.expect("json");
    assert_eq!(layout["partitions"].as_array().expect("partitions").len(), 12);
    let settings = QueueSettings { topics: vec!["jobs".into()], ack_wait_ms: Some(2_000), ..QueueSettings::default() };
    QueueConsumer::new(brokers.clone(), "work", &[]).configure(&settings).await.expect("create the group");
    produce(&brokers, "jobs", 600).await;

    // A worker that leases a batch and takes 100 s a record: it is killed holding its leases.
    let slow_out = dir.path().join("slow.jsonl");
    let mut slow = worker(&cluster[1], "work", "jobs", 30, 100_000, &slow_out);
    wait_until("the slow worker leased", Duration::from_secs(20), async || {
        group_counter(&cluster, "runnel_queue_leased_total", "work").await >= 10
    })
    .await;
    let mut workers: Vec<(Child, std::path::PathBuf)> = (0..7)
        .map(|i| {
            let out = dir.path().join(format!("worker-{i}.jsonl"));
            (worker(&cluster[i % 3], "work", "jobs", 20, 2, &out), out)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.kill().expect("kill -9 the slow worker");
    let _ = slow.wait();

    wait_until("every record acknowledged", Duration::from_secs(60), async || {
        unacknowledged(&brokers, "work").await == 0
    })
    .await;
    for (child, _) in &mut workers {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(lines(&slow_out).is_empty(), "the killed worker acknowledged nothing");
    let mut acked: BTreeMap<u64, u32> = BTreeMap::new();
    let mut redelivered = 0;
    for (_, out) in &workers {
        for line in lines(out).into_iter().filter(|l| l["ack"] == "ok") {
            *acked.entry(line["value"]["n"].as_u64().expect("n")).or_default() += 1;
            redelivered += u32::from(line["deliveryCount"].as_u64() > Some(1));
        }
    }
    assert_eq!(acked.keys().copied().collect::<Vec<_>>(), (0..600).collect::<Vec<_>>(), "every record acked");
    assert!(acked.values().all(|&times| times == 1), "and each once");
    assert!(redelivered >= 10, "the killed worker's records came again ({redelivered})");
    assert_eq!(group_counter(&cluster, "runnel_queue_acked_total", "work").await, 600);
    assert!(group_counter(&cluster, "runnel_queue_redelivered_total", "work").await >= 10);
}

#[tokio::test]
async fn a_nacked_record_comes_back_after_its_delay_and_one_over_max_deliver_goes_to_the_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("broker"), &[]);
    let brokers = discover(&broker).await;
    let settings = QueueSettings {
        topics: vec!["mail".into()],
        ack_wait_ms: Some(10_000),
        max_deliver: Some(2),
        dead_letter_topic: Some("mail-dead".into()),
        ..QueueSettings::default()
    };
    let mut worker = QueueConsumer::new(brokers.clone(), "senders", &["mail"]);
    let created = worker.configure(&settings).await.expect("create");
    assert_eq!((created["maxDeliver"].as_i64(), created["deadLetterTopic"].as_str()), (Some(2), Some("mail-dead")));
    let producer = Producer::new(brokers.clone());
    producer.send("mail", Some("a"), r#"{"to":"poison"}"#).await.expect("produce");
    producer.send("mail", Some("b"), r#"{"to":"fine"}"#).await.expect("produce");

    let mut first = Vec::new();
    while first.len() < 2 {
        first.extend(worker.next(10, Duration::from_secs(2)).await.expect("next"));
    }
    let by_to = |records: &[QueueRecord], to: &str| records.iter().find(|r| r.value["to"] == to).cloned();
    let poison = by_to(&first, "poison").expect("the poison record");
    let fine = by_to(&first, "fine").expect("the fine record");
    assert_eq!(worker.ack(std::slice::from_ref(&fine.ack_token)).await.expect("ack"), [SettleResult::Ok]);
    let given_back = Instant::now();
    assert_eq!(
        worker.nack(std::slice::from_ref(&poison.ack_token), Duration::from_millis(1_500)).await.expect("nack"),
        [SettleResult::Ok]
    );
    assert_eq!(worker.ack(std::slice::from_ref(&poison.ack_token)).await.expect("ack"), [SettleResult::Expired]);
    let again = worker.next(10, Duration::from_secs(5)).await.expect("next");
    assert!(given_back.elapsed() >= Duration::from_millis(1_500), "not before its delay");
    assert_eq!(
        again.iter().map(|r| (r.value["to"].clone(), r.delivery_count)).collect::<Vec<_>>(),
        [(json!("poison"), 2)]
    );
    worker.nack(&[again[0].ack_token.clone()], Duration::ZERO).await.expect("nack");

    // A third delivery would pass maxDeliver: it goes to the dead letters instead.
    assert!(worker.next(10, Duration::from_millis(1_500)).await.expect("next").is_empty());
    let mut letters = QueueConsumer::new(brokers.clone(), "dead-readers", &["mail-dead"]);
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead.is_empty() && Instant::now() < deadline {
        dead = letters.next(10, Duration::from_secs(2)).await.expect("next letter");
    }
    assert_eq!(dead.len(), 1);
    let letter = &dead[0].value;
    assert_eq!((letter["topic"].as_str(), letter["deliveryCount"].as_u64()), (Some("mail"), Some(2)));
    assert_eq!(letter["partition"].as_u64(), Some(u64::from(poison.partition)));
    assert_eq!(letter["offset"], json!(poison.offset.to_string()));
    assert_eq!(letter["value"], json!({"to": "poison"}));
    assert_eq!(unacknowledged(&brokers, "senders").await, 0, "dead-lettered is acknowledged");
    assert_eq!(group_counter(std::slice::from_ref(&broker), "runnel_queue_dead_lettered_total", "senders").await, 1);

    let shown = worker.describe().await.expect("describe");
    assert_eq!(shown["ackWaitMs"], 10_000);
    let refused = reqwest::Client::new()
        .put(broker.url(9252, "/v1/queue/senders"))
        .json(&json!({"topics": ["mail"], "maxDeliver": 0}))
        .send()
        .await
        .expect("put");
    assert_eq!(refused.status(), 400);
    let other_topics =
        reqwest::Client::new().post(broker.url(9252, "/v1/queue/senders/next?topic=other")).send().await.expect("next");
    assert_eq!(other_topics.status(), 409);
    let body: Value = other_topics.json().await.expect("JSON error");
    assert_eq!(body["error"], "queue_conflict");
}

#[tokio::test]
async fn when_a_partition_leader_is_killed_acked_records_stay_acked_and_leased_ones_come_back_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, &[]);
    let brokers = discover(&cluster[0]).await;
    let settings =
        QueueSettings { topics: vec!["orders".into()], ack_wait_ms: Some(120_000), ..QueueSettings::default() };
    let mut first = QueueConsumer::new(brokers.clone(), "shipping", &[]);
    first.configure(&settings).await.expect("create");
    produce(&brokers, "orders", 240).await;
    let layout: Value =
        reqwest::get(cluster[0].url(9252, "/v1/topic/orders")).await.expect("layout").json().await.expect("json");
    let led_by_2: BTreeSet<u32> = layout["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["leader"] == 2)
        .map(|p| p["partition"].as_u64().expect("partition") as u32)
        .collect();
    assert_eq!(led_by_2.len(), 4);

    let mut leased: Vec<QueueRecord> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while leased.len() < 240 && Instant::now() < deadline {
        leased.extend(first.next(240, Duration::from_secs(1)).await.expect("next"));
    }
    assert_eq!(leased.len(), 240, "every record leased once");
    let (even, odd): (Vec<&QueueRecord>, Vec<&QueueRecord>) =
        leased.iter().partition(|r| r.value["n"].as_u64().expect("n") % 2 == 0);
    let tokens = |records: &[&QueueRecord]| records.iter().map(|r| r.ack_token.clone()).collect::<Vec<_>>();
    let results = first.ack(&tokens(&even)).await.expect("ack the even ones");
    assert!(results.iter().all(|r| *r == SettleResult::Ok));

    cluster[2].kill9();
    let killed = Instant::now();
    let back_expected: BTreeSet<u64> =
        odd.iter().filter(|r| led_by_2.contains(&r.partition)).map(|r| r.value["n"].as_u64().expect("n")).collect();
    assert!(!back_expected.is_empty());
    let mut second = QueueConsumer::new(brokers.clone(), "shipping", &[]);
    let mut back: Vec<QueueRecord> = Vec::new();
    while back.len() < back_expected.len() && killed.elapsed() < Duration::from_secs(30) {
        back.extend(second.next(240, Duration::from_secs(1)).await.expect("next after the failover"));
    }
    let came: BTreeSet<u64> = back.iter().map(|r| r.value["n"].as_u64().expect("n")).collect();
    assert_eq!(came, back_expected, "the dead leader's unacknowledged leases, long before ackWaitMs");
    assert_eq!(came.len(), back.len(), "each once");
    let extra = second.next(240, Duration::from_secs(2)).await.expect("next");
    assert!(extra.is_empty(), "no acknowledged record comes again, nor one still leased elsewhere: {extra:?}");

    let old: Vec<&QueueRecord> = odd.iter().copied().filter(|r| led_by_2.contains(&r.partition)).collect();
    let stale = first.ack(&tokens(&old)).await.expect("ack with the old leader's tokens");
    assert!(stale.iter().all(|r| *r == SettleResult::Expired), "their leases ended with the old leader");
    let back_refs: Vec<&QueueRecord> = back.iter().collect();
    assert!(second.ack(&tokens(&back_refs)).await.expect("ack").iter().all(|r| *r == SettleResult::Ok));
    let rest: Vec<&QueueRecord> = odd.iter().copied().filter(|r| !led_by_2.contains(&r.partition)).collect();
    assert!(first.ack(&tokens(&rest)).await.expect("ack").iter().all(|r| *r == SettleResult::Ok));
    assert_eq!(unacknowledged(&brokers, "shipping").await, 0);
}

/// A record as one worker held it: from the lease reaching it to its ack being sent.
#[derive(Debug, Clone)]
struct Held {
    n: u64,
    partition: u32,
    offset: u64,
    deliveries: u32,
    received: Instant,
    ack_sent: Instant,
    result: SettleResult,
}

/// A worker task: leases batches of `batch` until `stop`, holds each 20 ms and 2 ms a record, acks.
fn ordered_worker(
    brokers: &Brokers,
    batch: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Held>> {
    let mut worker = QueueConsumer::new(brokers.clone(), "ordered", &[]);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let records = worker.next(batch, Duration::from_millis(500)).await.expect("next");
            let received = Instant::now();
            tokio::time::sleep(Duration::from_millis(20 + 2 * records.len() as u64)).await;
            let tokens: Vec<String> = records.iter().map(|r| r.ack_token.clone()).collect();
            let ack_sent = Instant::now();
            let results = worker.ack(&tokens).await.expect("ack");
            held.extend(records.iter().zip(results).map(|(r, result)| Held {
                n: r.value["n"].as_u64().expect("n"),
                partition: r.partition,
                offset: r.offset,
                deliveries: r.delivery_count,
                received,
                ack_sent,
                result,
            }));
        }
        held
    })
}

#[tokio::test]
async fn an_ordered_group_leases_a_key_s_records_one_at_a_time_in_offset_order_and_keys_in_parallel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start_cluster(dir.path(), 3, &[]);
    let brokers = discover(&cluster[0]).await;
    let settings = QueueSettings {
        topics: vec!["tasks".into()],
        ack_wait_ms: Some(2_000),
        ordered: Some(true),
        ..QueueSettings::default()
    };
    QueueConsumer::new(brokers.clone(), "ordered", &[]).configure(&settings).await.expect("create the group");
    produce(&brokers, "tasks", 600).await;
    let key_of = |n: u64| n % 50;

    // A worker that takes a batch and never answers: its keys wait for its leases to end.
    let mut stalled = QueueConsumer::new(brokers.clone(), "ordered", &[]);
    let asked = Instant::now();
    let mut stuck = Vec::new();
    while stuck.is_empty() {
        stuck = stalled.next(8, Duration::from_secs(2)).await.expect("next");
    }
    let stuck_keys: BTreeSet<u64> = stuck.iter().map(|r| key_of(r.value["n"].as_u64().expect("n"))).collect();
    assert_eq!(stuck_keys.len(), stuck.len(), "one record of a key at a time, even in one batch");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8).map(|i| ordered_worker(&brokers, 4 + i, stop.clone())).collect();
    wait_until("every record acknowledged", Duration::from_secs(90), async || {
        unacknowledged(&brokers, "ordered").await == 0
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut held: Vec<Held> = Vec::new();
    let mut busy_workers = 0;
    for worker in workers {
        let mine = worker.await.expect("worker");
        busy_workers += usize::from(!mine.is_empty());
        held.extend(mine);
    }
    assert!(busy_workers >= 4, "the keys were spread over the workers ({busy_workers} of 8 got any)");

    let mut acked: BTreeMap<u64, u32> = BTreeMap::new();
    for h in held.iter().filter(|h| h.result == SettleResult::Ok) {
        *acked.entry(h.n).or_default() += 1;
    }
    assert_eq!(acked.keys().copied().collect::<Vec<_>>(), (0..600).collect::<Vec<_>>(), "every record acked");
    assert!(acked.values().all(|&times| times == 1), "and each once");

    let mut by_key: BTreeMap<u64, Vec<&Held>> = BTreeMap::new();
    for h in &held {
        by_key.entry(key_of(h.n)).or_default().push(h);
    }
    for (key, records) in &mut by_key {
        records.sort_by_key(|h| h.received);
        assert!(records.windows(2).all(|w| w[0].partition == w[1].partition), "key {key} in one partition");
        // A lease that ended while its worker still held the record (its ack then came back
        // `expired`) may overlap the next delivery: only acknowledged holds must not.
        for pair in records.windows(2).filter(|pair| pair[0].result == SettleResult::Ok) {
            assert!(
                pair[0].ack_sent < pair[1].received,
                "key {key}: offset {} reached a worker before offset {} was acked",
                pair[1].offset,
                pair[0].offset
            );
            assert!(pair[0].offset < pair[1].offset, "key {key}: acked out of offset order: {pair:?}");
        }
    }
    for record in &stuck {
        let n = record.value["n"].as_u64().expect("n");
        let key = &by_key[&key_of(n)];
        let again = key.iter().find(|h| h.n == n).expect("the stalled worker's record came again");
        assert_eq!(again.deliveries, 2);
        assert!(again.received >= asked + Duration::from_secs(2), "not before its lease ended");
        assert!(key.iter().filter(|h| h.offset > record.offset).all(|h| h.received > again.ack_sent));
        // Meanwhile the other keys of its partition went on (where it has any).
        let others: Vec<&Held> =
            held.iter().filter(|h| h.partition == record.partition && !stuck_keys.contains(&key_of(h.n))).collect();
        if !others.is_empty() {
            assert!(
                others.iter().any(|h| h.result == SettleResult::Ok && h.ack_sent < again.received),
                "partition {}: its other keys waited for the stalled key {}",
                record.partition,
                key_of(n)
            );
        }
    }
    // Keys, not partitions, are what waits: records of one partition were held at once.
    let overlapping = |a: &Held, b: &Held| a.received < b.ack_sent && b.received < a.ack_sent;
    let same_partition_at_once = held
        .iter()
        .enumerate()
        .flat_map(|(i, a)| held[i + 1..].iter().map(move |b| (a, b)))
        .filter(|(a, b)| a.partition == b.partition && overlapping(a, b))
        .count();
    assert!(same_partition_at_once > 0, "no two records of a partition were ever held at once");
}
