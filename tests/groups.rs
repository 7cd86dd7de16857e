//! Issue 13, items 4 and 5 (SPEC §11): a group's committed offsets, ends and lag from any
//! broker, resetting them (earliest, latest, offset, timestamp, shift; dry run; refused with
//! members unless forced), a forced reset moving a member, the reset surviving the Raft
//! leader's death, the lag metrics, `onNewGroup=startFromTimestamp`, and `runnel groups`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use runnel_tests::workload::{cluster_view, Endpoint};
use runnel_tests::{built_binary, start_cluster, BrokerProcess, TestClient};
use serde_json::{json, Value};

/// Per partition (committed, end, lag), the offsets parsed from their decimal strings.
type Offsets = BTreeMap<u32, (Option<u64>, Option<u64>, Option<u64>)>;

fn number(value: &Value) -> Option<u64> {
    value.as_str().map(|s| s.parse().expect("an offset is a decimal string"))
}

async fn describe(http: &reqwest::Client, broker: &BrokerProcess, group: &str) -> (StatusCode, Value) {
    let response = http.get(broker.url(9252, &format!("/v1/groups/{group}"))).send().await.expect("describe");
    (response.status(), response.json().await.expect("a JSON answer"))
}

/// The offsets of `topic` in a group's description.
fn offsets_of(view: &Value, topic: &str) -> Offsets {
    let topic = view["topics"].as_array().expect("topics").iter().find(|t| t["topic"] == topic).expect("the topic");
    topic["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let partition = p["partition"].as_u64().expect("partition") as u32;
            (partition, (number(&p["committed"]), number(&p["end"]), number(&p["lag"])))
        })
        .collect()
}

async fn reset(
    http: &reqwest::Client,
    broker: &BrokerProcess,
    group: &str,
    query: &str,
    body: Value,
) -> (StatusCode, Value) {
    let url = broker.url(9252, &format!("/v1/groups/{group}/offsets{query}"));
    let response = http.post(url).json(&body).send().await.expect("reset");
    (response.status(), response.json().await.expect("a JSON answer"))
}

/// Per partition of a reset's answer: (current, new).
fn plan(answer: &Value) -> BTreeMap<u32, (Option<u64>, u64)> {
    answer["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let new = number(&p["new"]).expect("new");
            (p["partition"].as_u64().expect("partition") as u32, (number(&p["current"]), new))
        })
        .collect()
}

/// Produces one record with `key`; returns its partition.
async fn produce(client: &TestClient, topic: &str, key: &str, value: Value) -> u32 {
    let (status, body) = client.produce_keyed(topic, key, &value).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["partition"].as_u64().expect("partition") as u32
}

/// Polls `id` on every broker until `count` records came; returns (partition, offset) of each.
async fn read_everywhere(clients: &[TestClient], id: &str, count: usize) -> Vec<(u32, i64)> {
    let mut got = Vec::new();
    for _ in 0..50 {
        for client in clients {
            got.extend(client.poll(id).await.records().into_iter().map(|r| (r.1, r.2)));
        }
        if got.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got.len(), count, "{id} read {got:?}");
    got
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// 12 records over 12 keys; per partition: (records of the first round, records in all).
async fn first_round(client: &TestClient, topic: &str) -> BTreeMap<u32, (u64, u64)> {
    let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for k in 0..12 {
        let p = produce(client, topic, &format!("key-{k}"), json!({"round": 1, "k": k})).await;
        let c = counts.entry(p).or_default();
        (c.0, c.1) = (c.0 + 1, c.1 + 1);
    }
    counts
}

/// 5 more records over the first 5 keys.
async fn second_round(client: &TestClient, topic: &str, counts: &mut BTreeMap<u32, (u64, u64)>) {
    for k in 0..5 {
        let p = produce(client, topic, &format!("key-{k}"), json!({"round": 2, "k": k})).await;
        counts.entry(p).or_default().1 += 1;
    }
}

#[tokio::test]
async fn a_group_s_lag_is_what_was_produced_minus_what_it_committed_and_each_reset_moves_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    let http = reqwest::Client::new();

    let mut counts = first_round(&client, "orders").await;
    assert_eq!(client.register("c1", "g", &["orders"], Some("startFromEarliest")).await.0, StatusCode::OK);
    read_everywhere(std::slice::from_ref(&client), "c1", 12).await;
    assert_eq!(client.commit("c1").await, StatusCode::NO_CONTENT);
    second_round(&client, "orders", &mut counts).await;

    let (status, view) = describe(&http, &broker, "g").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["members"], json!([{"id": "c1", "topics": ["orders"]}]));
    let offsets = offsets_of(&view, "orders");
    assert_eq!(offsets.len(), 4, "every partition of the topic: {view}");
    for (p, (committed, end, lag)) in &offsets {
        let (first, all) = counts.get(p).copied().unwrap_or_default();
        let committed_expected = (first > 0).then_some(first);
        assert_eq!((*committed, *end, *lag), (committed_expected, Some(all), Some(all - first)), "partition {p}");
    }
    assert_eq!(view["lag"], "5", "{view}");
    let listed: Value =
        http.get(broker.url(9252, "/v1/groups")).send().await.expect("list").json().await.expect("JSON");
    assert_eq!(listed, json!({"groups": [{"group": "g", "members": 1}]}));
    let (status, unknown) = describe(&http, &broker, "nobody").await;
    assert_eq!((status, unknown["error"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_group")));

    // With a member: refused, dry run included, and nothing moves.
    for query in ["", "?dryRun=true"] {
        let (status, refused) = reset(&http, &broker, "g", query, json!({"topic": "orders", "to": "earliest"})).await;
        assert_eq!((status, refused["error"].as_str()), (StatusCode::CONFLICT, Some("group_has_members")), "{query}");
        assert!(refused["message"].as_str().is_some_and(|m| m.contains("c1") && m.contains("force")), "{refused}");
    }
    assert_eq!(client.goodbye("c1", false).await.0, StatusCode::OK);

    // A dry run answers the plan and changes nothing.
    let (status, planned) =
        reset(&http, &broker, "g", "?dryRun=true", json!({"topic": "orders", "to": "earliest"})).await;
    assert_eq!(status, StatusCode::OK, "{planned}");
    assert_eq!(planned["dryRun"], true);
    for (p, (current, new)) in plan(&planned) {
        assert_eq!((current, new), (offsets[&p].0, 0), "partition {p}");
    }
    assert_eq!(offsets_of(&describe(&http, &broker, "g").await.1, "orders"), offsets, "a dry run changes nothing");

    // Earliest: every partition back to its start, so its lag is all of it.
    let (status, applied) = reset(&http, &broker, "g", "", json!({"topic": "orders", "to": "earliest"})).await;
    assert_eq!((status, applied["dryRun"].as_bool()), (StatusCode::OK, Some(false)), "{applied}");
    let now = offsets_of(&describe(&http, &broker, "g").await.1, "orders");
    for (p, (committed, end, lag)) in &now {
        assert_eq!((*committed, *lag), (Some(0), *end), "partition {p}");
    }

    // Latest, on one partition only; an offset; a shift back, stopping at the start.
    let (&busy, &(_, busy_all)) = counts.iter().max_by_key(|(_, c)| c.1).expect("a partition with records");
    let (status, _) =
        reset(&http, &broker, "g", "", json!({"topic": "orders", "partitions": [busy], "to": "latest"})).await;
    assert_eq!(status, StatusCode::OK);
    let now = offsets_of(&describe(&http, &broker, "g").await.1, "orders");
    assert_eq!(now[&busy], (Some(busy_all), Some(busy_all), Some(0)));
    assert!(now.iter().filter(|(p, _)| **p != busy).all(|(_, o)| o.0 == Some(0)), "only that partition: {now:?}");
    let (status, _) =
        reset(&http, &broker, "g", "", json!({"topic": "orders", "partitions": [busy], "to": "offset", "value": "1"}))
            .await;
    assert_eq!(status, StatusCode::OK);
    let (status, shifted) =
        reset(&http, &broker, "g", "", json!({"topic": "orders", "to": "shift", "value": -2})).await;
    assert_eq!(status, StatusCode::OK, "{shifted}");
    let now = offsets_of(&describe(&http, &broker, "g").await.1, "orders");
    assert_eq!(now[&busy].0, Some(0), "1 - 2 stops at the start");
    let (status, shifted) = reset(&http, &broker, "g", "", json!({"topic": "orders", "to": "shift", "value": 2})).await;
    assert_eq!(status, StatusCode::OK);
    for (p, (current, new)) in plan(&shifted) {
        let end = now[&p].1.expect("end");
        assert_eq!((current, new), (Some(0), end.min(2)), "a shift forward stops at the end ({p})");
    }

    // Bad requests change nothing and say why.
    let before = offsets_of(&describe(&http, &broker, "g").await.1, "orders");
    for (body, code) in [
        (json!({"topic": "orders", "to": "offset", "value": busy_all + 1}), "offset_out_of_range"),
        (json!({"topic": "orders", "to": "sometime"}), "bad_request"),
        (json!({"topic": "orders", "to": "offset"}), "bad_request"),
        (json!({"topic": "orders", "to": "earliest", "partitions": [99]}), "bad_request"),
        (json!({"topic": "no/such", "to": "earliest"}), "invalid_topic"),
    ] {
        let (status, refused) = reset(&http, &broker, "g", "", body.clone()).await;
        assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{body}: {refused}");
    }
    let garbled = http.post(broker.url(9252, "/v1/groups/g/offsets")).body("{").send().await.expect("reset");
    assert_eq!(garbled.status(), StatusCode::BAD_REQUEST);
    assert_eq!(offsets_of(&describe(&http, &broker, "g").await.1, "orders"), before);

    // A timestamp: the first record appended at or after it.
    let marked = produce(&client, "orders", "key-0", json!({"round": 3})).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let at = now_ms();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(produce(&client, "orders", "key-0", json!({"round": 4})).await, marked);
    let (status, timed) =
        reset(&http, &broker, "g", "", json!({"topic": "orders", "to": "timestamp", "value": at})).await;
    assert_eq!(status, StatusCode::OK, "{timed}");
    let timed = plan(&timed);
    let ends = offsets_of(&describe(&http, &broker, "g").await.1, "orders");
    for (p, (_, new)) in &timed {
        let end = ends[p].1.expect("end");
        let expected = if *p == marked { end - 1 } else { end };
        assert_eq!(*new, expected, "partition {p}: only the record after the time is left to read");
    }

    // A member joining now reads from the reset offsets: the one record after the time.
    assert_eq!(client.register("c2", "g", &["orders"], Some("startFromEarliest")).await.0, StatusCode::OK);
    let polled = client.poll_until("c2", 1, 10).await;
    assert_eq!(polled.iter().map(|r| r.3.clone()).collect::<Vec<_>>(), vec![json!({"round": 4})]);
    assert!(!broker.log_text().contains("panicked"));
}

#[tokio::test]
async fn a_forced_reset_moves_a_member_and_its_pending_auto_commit_does_not_undo_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Auto-commits wait long enough for the reset to land while one is pending.
    let broker = BrokerProcess::start(dir.path(), &[("RUNNEL_AUTO_COMMIT_INTERVAL_MS", "3000")]);
    let client = TestClient::new(&broker);
    let http = reqwest::Client::new();
    for n in 0..10 {
        produce(&client, "moves", "one-key", json!({"n": n})).await;
    }
    assert_eq!(client.register("c1", "g", &["moves"], Some("startFromEarliest")).await.0, StatusCode::OK);
    let read = client.poll_until("c1", 10, 10).await;
    let partition = read[0].1;
    // This poll finds nothing new and queues the position reached (10) for auto-commit.
    assert_eq!(client.poll("c1").await.status, StatusCode::NO_CONTENT);

    let body = json!({"topic": "moves", "partitions": [partition], "to": "offset", "value": 3});
    let (status, refused) = reset(&http, &broker, "g", "", body.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let (status, applied) = reset(&http, &broker, "g", "?force=true", body).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(plan(&applied)[&partition].1, 3);

    // The member's next poll reads from the new offset.
    let polled = client.poll("c1").await;
    let offsets: Vec<i64> = polled.records().iter().map(|r| r.2).collect();
    assert_eq!(offsets, (3..10).collect::<Vec<i64>>(), "the member was moved back to offset 3");

    // The auto-commit of 10 queued before the reset is flushed now, and ignored.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let committed = offsets_of(&describe(&http, &broker, "g").await.1, "moves")[&partition].0;
    assert!(committed.is_some_and(|c| c < 10), "an auto-commit read before the reset undid it: {committed:?}");
    // What the member read after the reset commits as usual.
    assert_eq!(client.commit("c1").await, StatusCode::NO_CONTENT);
    let committed = offsets_of(&describe(&http, &broker, "g").await.1, "moves")[&partition].0;
    assert_eq!(committed, Some(10));
}

#[tokio::test]
async fn a_group_started_from_a_timestamp_reads_what_was_appended_from_then_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    for k in 0..8 {
        produce(&client, "timed", &format!("key-{k}"), json!({"before": k})).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let at = now_ms();
    tokio::time::sleep(Duration::from_millis(30)).await;
    for k in 0..8 {
        produce(&client, "timed", &format!("key-{k}"), json!({"after": k})).await;
    }
    let consumer = broker.url(9252, "/v1/consumer/register");
    let register = |id: &str, extra: &str| {
        let url = format!("{consumer}?consumerId={id}&group=from-time&topic=timed{extra}");
        client.http.put(url).send()
    };
    for bad in ["&onNewGroup=startFromTimestamp", "&onNewGroup=startFromTimestamp&timestamp=soon", "&timestamp=5"] {
        let response = register("c0", bad).await.expect("register");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let response = register("c1", &format!("&onNewGroup=startFromTimestamp&timestamp={at}")).await.expect("register");
    assert_eq!(response.status(), StatusCode::OK);
    let got = client.poll_until("c1", 8, 10).await;
    let values: Vec<Value> = got.iter().map(|r| r.3.clone()).collect();
    assert_eq!(values.len(), 8, "{values:?}");
    assert!(values.iter().all(|v| v.get("after").is_some()), "only what was appended after the time: {values:?}");
}

/// The value of every sample of metric `name` on `broker` whose labels contain `labels`.
async fn samples(http: &reqwest::Client, broker: &BrokerProcess, name: &str, labels: &str) -> Vec<(String, u64)> {
    let text = http.get(broker.url(9253, "/metrics")).send().await.expect("metrics").text().await.expect("body");
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels_here, value) = rest.split_once("} ")?;
            let value = value.trim().parse().ok()?;
            labels_here.contains(labels).then(|| (labels_here.to_string(), value))
        })
        .collect()
}

/// Offsets of `topic` as broker `broker` describes group `group` once every partition's end is known.
async fn settled(http: &reqwest::Client, broker: &BrokerProcess, group: &str, topic: &str) -> Offsets {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, view) = describe(http, broker, group).await;
        if status == StatusCode::OK {
            let offsets = offsets_of(&view, topic);
            if offsets.values().all(|o| o.1.is_some()) {
                return offsets;
            }
        }
        assert!(Instant::now() < deadline, "no complete description from {}: {status} {view}", broker.ip);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn in_a_cluster_every_broker_describes_the_same_lag_the_metrics_add_up_to_it_and_a_reset_survives_the_raft_leader(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let clients: Vec<TestClient> = brokers.iter().map(TestClient::new).collect();
    let http = reqwest::Client::new();
    let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for k in 0..36 {
        let p = produce(&clients[k % 3], "spread", &format!("key-{k}"), json!({"k": k})).await;
        let c = counts.entry(p).or_default();
        (c.0, c.1) = (c.0 + 1, c.1 + 1);
    }
    assert_eq!(clients[1].register("c1", "g", &["spread"], Some("startFromEarliest")).await.0, StatusCode::OK);
    read_everywhere(&clients, "c1", 36).await;
    assert_eq!(clients[2].goodbye("c1", true).await.0, StatusCode::OK);
    for k in 0..12 {
        let p = produce(&clients[0], "spread", &format!("key-{k}"), json!({"again": k})).await;
        counts.entry(p).or_default().1 += 1;
    }

    // Every broker knows only the ends of the partitions it leads, and describes them all.
    let views = [
        settled(&http, &brokers[0], "g", "spread").await,
        settled(&http, &brokers[1], "g", "spread").await,
        settled(&http, &brokers[2], "g", "spread").await,
    ];
    assert_eq!(views[0].len(), 12, "the 12 partitions of 3 brokers");
    for (p, (committed, end, lag)) in &views[0] {
        let (first, all) = counts.get(p).copied().unwrap_or_default();
        assert_eq!((*committed, *end, *lag), ((first > 0).then_some(first), Some(all), Some(all - first)), "{p}");
    }
    assert!(views.iter().all(|v| *v == views[0]), "any broker answers alike: {views:?}");

    // Each partition's lag is exported by its leader alone: summed over the brokers it is the
    // described lag, partition by partition and in total.
    let mut exported: BTreeMap<u32, u64> = BTreeMap::new();
    let mut total = 0;
    for broker in &brokers {
        for (labels, lag) in samples(&http, broker, "runnel_group_lag_records", r#"group="g",topic="spread""#).await {
            let partition = labels.split("partition=\"").nth(1).and_then(|p| p.split('"').next()).expect("partition");
            *exported.entry(partition.parse().expect("number")).or_default() += lag;
        }
        total += samples(&http, broker, "runnel_group_lag_records_total", r#"group="g""#)
            .await
            .iter()
            .map(|s| s.1)
            .sum::<u64>();
    }
    let described: BTreeMap<u32, u64> =
        views[0].iter().filter(|(p, _)| counts.contains_key(p)).map(|(p, o)| (*p, o.2.expect("lag"))).collect();
    assert_eq!(exported, described);
    assert_eq!(total, 12);

    // A reset through one broker, then the Raft leader dies: the reset is kept.
    let (status, applied) = reset(&http, &brokers[2], "g", "", json!({"topic": "spread", "to": "earliest"})).await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    let (raft_leader, _) = cluster_view(&Endpoint::of(&brokers[0])).await.expect("cluster view");
    let victim = raft_leader.expect("a Raft leader") as usize;
    brokers[victim].kill9();
    let survivor = &brokers[(victim + 1) % 3];
    let after = settled(&http, survivor, "g", "spread").await;
    for (p, (committed, end, lag)) in &after {
        assert_eq!((*committed, *lag), (Some(0), *end), "partition {p} is read again from the start");
    }
    brokers[victim].restart();
    let back = settled(&http, &brokers[victim], "g", "spread").await;
    assert_eq!(back.values().map(|o| o.0).collect::<Vec<_>>(), vec![Some(0); 12], "the restarted broker too");
}

#[tokio::test]
async fn the_cli_lists_describes_and_resets_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    for n in 0..4 {
        produce(&client, "cli-groups", "k", json!({"n": n})).await;
    }
    assert_eq!(client.register("c1", "readers", &["cli-groups"], Some("startFromEarliest")).await.0, StatusCode::OK);
    client.poll_until("c1", 4, 10).await;
    assert_eq!(client.commit("c1").await, StatusCode::NO_CONTENT);
    let host = broker.ip.to_string();
    let runnel = |args: &[&str]| {
        let out = Command::new(built_binary("runnel")).args(args).args(["--host", &host]).output().expect("runnel");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    let (code, listed, _) = runnel(&["groups"]);
    assert_eq!((code, listed.trim()), (Some(0), "readers\t1 members"));
    let (code, described, _) = runnel(&["groups", "describe", "readers"]);
    assert_eq!(code, Some(0));
    assert!(described.starts_with("group readers\tmembers 1\tlag 0"), "{described}");
    assert!(described.lines().any(|l| l.starts_with("cli-groups\t") && l.contains("\t4\t4\t0\tc1")), "{described}");

    let (code, _, refused) = runnel(&["groups", "reset", "readers", "--topic", "cli-groups", "--to", "earliest"]);
    assert_eq!(code, Some(1));
    assert!(refused.contains("409") && refused.contains("force"), "{refused}");
    let reset_args = ["groups", "reset", "readers", "--topic", "cli-groups", "--to", "shift", "--value", "-3"];
    let (code, planned, _) = runnel(&[&reset_args[..], &["--dry-run", "--force"][..]].concat());
    assert_eq!(code, Some(0));
    assert!(planned.lines().any(|l| l.ends_with("\t4\t1")) && planned.contains("dry run"), "{planned}");
    let (_, unchanged, _) = runnel(&["groups", "describe", "readers"]);
    assert!(unchanged.contains("lag 0"), "{unchanged}");
    let (code, applied, _) = runnel(&[&reset_args[..], &["--force"][..]].concat());
    assert_eq!(code, Some(0), "{applied}");
    let (_, moved, _) = runnel(&["groups", "describe", "readers"]);
    assert!(moved.contains("lag 3"), "{moved}");
    let (code, _, usage) = runnel(&["groups", "reset", "readers", "--topic", "cli-groups", "--to", "offset"]);
    assert_eq!(code, Some(2), "--to offset needs --value: {usage}");
    let (code, _, missing) = runnel(&["groups", "describe", "nobody"]);
    assert!(code == Some(1) && missing.contains("404"), "{missing}");
}

/// A group a consumer could not register as (SPEC §4's names) is refused by describe and by a
/// reset, which then stores nothing in Raft.
#[tokio::test]
async fn a_group_name_no_consumer_could_register_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    produce(&client, "named", "k", json!({"n": 1})).await;
    let long = "g".repeat(250);
    for bad in ["%01", "tab%09name", long.as_str()] {
        let (status, body) = describe(&client.http, &broker, bad).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{bad}: {body}");
        let (status, body) = reset(&client.http, &broker, bad, "", json!({"topic": "named", "to": "earliest"})).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{bad}: {body}");
    }
    let listed: Value =
        client.http.get(broker.url(9252, "/v1/groups")).send().await.expect("groups").json().await.expect("JSON");
    assert_eq!(listed["groups"], json!([]), "no group was stored: {listed}");
    let (status, _) =
        reset(&client.http, &broker, &"g".repeat(249), "", json!({"topic": "named", "to": "earliest"})).await;
    assert_eq!(status, StatusCode::OK, "249 characters is a name");
}
