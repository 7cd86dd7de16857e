//! Issue 13, item 2: reads by position with no group. `GET /v1/topic/{t}/records` reads a
//! partition from an offset, the earliest or latest record, or a time, on any broker (which
//! forwards to the partition's leader); 416 past the end and 410 before the retained start, with
//! the bounds in the body; `wait` holds a read at the end until a record arrives.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{partition_holding, start_cluster, BrokerProcess, TestClient};
use serde_json::{json, Value};

/// GETs the records URL of `topic` on `broker` with `query`: status and JSON body.
async fn read(broker: &BrokerProcess, topic: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
    let url = broker.url(9252, &format!("/v1/topic/{topic}/records"));
    let response = reqwest::Client::new().get(url).query(query).send().await.expect("read request");
    let status = response.status();
    let text = response.text().await.expect("read body");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

fn offsets(body: &Value) -> Vec<u64> {
    body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["offset"].as_str().expect("offset string").parse().expect("offset"))
        .collect()
}

fn values(body: &Value) -> Vec<Value> {
    body["records"].as_array().expect("records").iter().map(|r| r["value"].clone()).collect()
}

#[tokio::test]
async fn every_position_form_reads_what_was_produced_and_bad_positions_say_the_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let client = TestClient::new(&broker);
    for batch in 0..3 {
        let lines: Vec<String> = (0..2).map(|i| json!({"batch": batch, "i": i}).to_string()).collect();
        client.produce_lines("pos", Some("k"), &lines).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let p = partition_holding(&broker, "pos", 4).await.to_string();
    let p = p.as_str();

    let (status, all) = read(&broker, "pos", &[("partition", p), ("offset", "earliest")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(offsets(&all), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(values(&all)[3], json!({"batch": 1, "i": 1}));
    assert_eq!(
        (all["nextOffset"].as_str(), all["end"].as_str(), all["upToDate"].as_bool()),
        (Some("6"), Some("6"), Some(true))
    );
    let times: Vec<i64> =
        all["records"].as_array().expect("records").iter().map(|r| r["timestamp"].as_i64().expect("ms")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[2] > times[1], "append times: {times:?}");

    let (_, some) = read(&broker, "pos", &[("partition", p), ("offset", "1"), ("limit", "2")]).await;
    assert_eq!(offsets(&some), vec![1, 2]);
    assert_eq!((some["nextOffset"].as_str(), some["upToDate"].as_bool()), (Some("3"), Some(false)));

    let (_, latest) = read(&broker, "pos", &[("partition", p), ("offset", "latest")]).await;
    assert_eq!((offsets(&latest), latest["nextOffset"].as_str()), (vec![], Some("6")));

    let second_batch = times[2].to_string();
    let (_, by_time) = read(&broker, "pos", &[("partition", p), ("timestamp", &second_batch)]).await;
    assert_eq!(offsets(&by_time), vec![2, 3, 4, 5], "the first record appended at or after the time");
    let just_after = (times[2] + 1).to_string();
    let (_, after) = read(&broker, "pos", &[("partition", p), ("timestamp", &just_after)]).await;
    assert_eq!(offsets(&after)[0], 4);
    let (_, future) = read(&broker, "pos", &[("partition", p), ("timestamp", "99999999999999")]).await;
    assert_eq!((offsets(&future), future["nextOffset"].as_str()), (vec![], Some("6")));

    let (status, past) = read(&broker, "pos", &[("partition", p), ("offset", "7")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!((past["start"].as_str(), past["end"].as_str()), (Some("0"), Some("6")), "{past}");

    for (query, expected) in [
        (vec![("offset", "0")], StatusCode::BAD_REQUEST),
        (vec![("partition", p), ("offset", "x")], StatusCode::BAD_REQUEST),
        (vec![("partition", p), ("offset", "1"), ("timestamp", "1")], StatusCode::BAD_REQUEST),
        (vec![("partition", p), ("limit", "0")], StatusCode::BAD_REQUEST),
        (vec![("partition", p), ("wait", "30001")], StatusCode::BAD_REQUEST),
        (vec![("partition", "99")], StatusCode::NOT_FOUND),
    ] {
        let (status, body) = read(&broker, "pos", &query).await;
        assert_eq!(status, expected, "{query:?}: {body}");
        assert!(body["message"].is_string(), "a JSON error: {body}");
    }
    let (_, missing) = read(&broker, "pos", &[("partition", "99")]).await;
    assert_eq!(missing["error"], "not_found");
    assert!(missing["message"].as_str().is_some_and(|m| m.starts_with("no partition 99")), "{missing}");

    // At the end, a read with `wait` answers once a record is appended.
    let waiting = {
        let url = broker.url(9252, "/v1/topic/pos/records");
        let query = [("partition", p.to_string()), ("offset", "6".into()), ("wait", "5000".into())];
        tokio::spawn(async move {
            let response = reqwest::Client::new().get(url).query(&query).send().await.expect("read");
            let body: Value = response.json().await.expect("JSON");
            (body, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.produce_lines("pos", Some("k"), &[json!({"late": true}).to_string()]).await;
    let acked = Instant::now();
    let (body, answered) = waiting.await.expect("read task");
    assert_eq!((offsets(&body), values(&body)), (vec![6], vec![json!({"late": true})]));
    let late = answered.saturating_duration_since(acked);
    assert!(late <= Duration::from_millis(50), "the waiting read answered {late:?} after the produce");

    // Nothing comes: an empty answer at the deadline.
    let started = Instant::now();
    let (status, body) = read(&broker, "pos", &[("partition", p), ("offset", "7"), ("wait", "400")]).await;
    let held = started.elapsed();
    assert_eq!((status, offsets(&body), body["upToDate"].as_bool()), (StatusCode::OK, vec![], Some(true)));
    assert!(held >= Duration::from_millis(350) && held < Duration::from_millis(1500), "held {held:?}");
}

#[tokio::test]
async fn a_read_before_the_retained_start_is_gone_and_says_where_the_records_begin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env =
        [("RUNNEL_SEGMENT_BYTES", "65536"), ("RUNNEL_RETENTION_BYTES", "131072"), ("RUNNEL_RETENTION_CHECK_MS", "100")];
    let broker = BrokerProcess::start(dir.path(), &env);
    let client = TestClient::new(&broker);
    let line = json!({"pad": "x".repeat(1000)}).to_string();
    for _ in 0..40 {
        client.produce_lines("gone", Some("k"), &vec![line.clone(); 10]).await;
    }
    let p = partition_holding(&broker, "gone", 4).await.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (start, body) = loop {
        let (status, body) = read(&broker, "gone", &[("partition", &p), ("offset", "0")]).await;
        if status == StatusCode::GONE {
            break (body["start"].as_str().expect("start").parse::<u64>().expect("start"), body);
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(Instant::now() < deadline, "retention never deleted the oldest segment");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(start > 0 && body["end"].as_str() == Some("400"), "{body}");
    let (status, earliest) = read(&broker, "gone", &[("partition", &p), ("offset", "earliest")]).await;
    assert_eq!((status, offsets(&earliest).first().copied()), (StatusCode::OK, Some(start)));
}

#[tokio::test]
async fn any_broker_of_a_cluster_answers_every_partition_as_its_leader_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brokers = start_cluster(dir.path(), 3, &[]);
    let client = TestClient::new(&brokers[0]);
    for k in 0..12 {
        let lines: Vec<String> = (0..3).map(|i| json!({"key": k, "i": i}).to_string()).collect();
        client.produce_lines("fwd", Some(&format!("key-{k}")), &lines).await;
    }
    let mut total = 0;
    for p in 0..12 {
        let p = p.to_string();
        let (status, first) = read(&brokers[0], "fwd", &[("partition", &p)]).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        total += offsets(&first).len();
        for broker in &brokers[1..] {
            let (status, other) = read(broker, "fwd", &[("partition", &p)]).await;
            assert_eq!((status, &other["records"]), (StatusCode::OK, &first["records"]), "partition {p}");
        }
    }
    assert_eq!(total, 36, "every record produced is read once, from its partition");

    // Every broker describes the topic alike: each partition's bounds, leader and generation.
    let mut views = Vec::new();
    for broker in &brokers {
        let view: Value =
            reqwest::get(broker.url(9252, "/v1/topic/fwd")).await.expect("topic").json().await.expect("JSON");
        views.push(view);
    }
    let partitions = views[0]["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 12);
    let ends: u64 = partitions.iter().map(|p| p["end"].as_str().expect("end").parse::<u64>().expect("end")).sum();
    assert_eq!(ends, 36, "{}", views[0]);
    assert!(partitions.iter().all(|p| p["start"] == "0" && p["generation"] == 0 && p["leader"].as_u64().is_some()));
    assert!(views.iter().all(|v| v == &views[0]), "{views:?}");

    // A waiting read through a broker that does not lead the partition answers the produce too.
    let p = partition_holding(&brokers[0], "fwd", 12).await;
    let (_, first) = read(&brokers[0], "fwd", &[("partition", &p.to_string())]).await;
    let key = first["records"][0]["value"]["key"].clone();
    let mut end: u64 = first["end"].as_str().expect("end").parse().expect("end");
    for broker in &brokers {
        let url = broker.url(9252, "/v1/topic/fwd/records");
        let query = [("partition", p.to_string()), ("offset", end.to_string()), ("wait", "3000".into())];
        let waiting = tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .query(&query)
                .send()
                .await
                .expect("read")
                .json::<Value>()
                .await
                .expect("JSON")
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.produce_lines("fwd", Some(&format!("key-{key}")), &[json!({"waited": end}).to_string()]).await;
        let body = waiting.await.expect("read task");
        assert_eq!(values(&body), vec![json!({"waited": end})], "through {}", broker.url(9252, ""));
        end += 1;
        assert_eq!(body["nextOffset"].as_str(), Some(end.to_string().as_str()));
    }
}

/// Every copy of a partition keeps the append times its leader gave the records: a follower in
/// step and one that was down and caught up from the leader's disk alike, so reads by time
/// answer the same whichever copy leads after a failover.
#[tokio::test]
async fn every_copy_keeps_the_leader_s_append_times_even_one_that_caught_up_late() {
    use runnel_tests::workload::{cluster_view, Endpoint};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut brokers = start_cluster(dir.path(), 3, &[]);
    let client = TestClient::new(&brokers[0]);
    client.produce_lines("times", Some("k"), &[json!({"n": 0}).to_string()]).await;
    let p = partition_holding(&brokers[0], "times", 12).await;
    let (_, partitions) = cluster_view(&Endpoint::of(&brokers[0])).await.expect("the cluster view");
    let leader = partitions[&p].0 as usize;
    let late = (leader + 1) % 3;
    brokers[late].kill9();
    let client = TestClient::new(&brokers[leader]);
    for n in 1..6 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        client.produce_lines("times", Some("k"), &[json!({"n": n}).to_string()]).await;
    }
    let (_, read) = read(&brokers[leader], "times", &[("partition", &p.to_string())]).await;
    let leader_times: Vec<i64> =
        read["records"].as_array().expect("records").iter().map(|r| r["timestamp"].as_i64().expect("ms")).collect();
    assert_eq!(leader_times.len(), 6);
    // The follower comes back well after the records were appended, and catches up from disk.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    brokers[late].restart();
    for broker in (0..3).filter(|b| *b != leader) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let times = loop {
            let response = brokers[broker].peer_get(&format!("/cluster/read/times/{p}?from=0")).await;
            let times = response.headers().get("x-runnel-times").and_then(|t| t.to_str().ok()).map(String::from);
            let runs: Vec<(u64, i64)> = times
                .unwrap_or_default()
                .split(',')
                .filter_map(|run| run.split_once('@'))
                // `count@ms`, then `#token` for a keyed batch, `@stamp` for an idempotent one.
                .map(|(count, rest)| (count.parse().expect("count"), rest.split(['#', '@']).next().unwrap_or(rest)))
                .map(|(count, ms)| (count, ms.parse().expect("ms")))
                .collect();
            let per_record: Vec<i64> =
                runs.iter().flat_map(|&(count, ms)| std::iter::repeat_n(ms, count as usize)).collect();
            if per_record.len() == 6 || Instant::now() > deadline {
                break per_record;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(times, leader_times, "broker {broker}'s copy (the late one is {late})");
    }
}
