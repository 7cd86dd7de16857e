//! The dashboard and alerts of k8s/monitoring (SPEC §15) against real brokers: every metric
//! they use exists in a live cluster's /metrics, with a broker down so that the series that
//! only exist when something is wrong (under-replicated partitions) are there too; and those
//! series go away once the broker is back.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runnel_tests::{start_cluster, BrokerProcess, TestClient};
use serde_json::json;

async fn scrape(broker: &BrokerProcess) -> String {
    let response = reqwest::get(broker.url(9253, "/metrics")).await.expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("metrics text")
}

/// The value of the unlabelled series `name` in a scrape.
fn value(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {name} in:\n{text}"))
}

/// Whether a scrape holds a series of metric `name` (labelled or not).
fn has_series(text: &str, name: &str) -> bool {
    text.lines().any(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
}

/// The `runnel_*` metric names the dashboard's queries and the alerts' expressions use.
fn metrics_used() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/monitoring");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dashboard.json")).expect("dashboard.json"))
            .expect("the dashboard is JSON");
    // Every query wherever it sits: panels, panels inside collapsed rows, template variables.
    fn queries(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner.as_str()) {
                        ("expr" | "definition", Some(query)) => out.push(query.to_string()),
                        _ => queries(inner, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| queries(item, out)),
            _ => {}
        }
    }
    let mut expressions = Vec::new();
    queries(&dashboard, &mut expressions);
    assert!(expressions.len() >= 10, "the dashboard's queries: {expressions:?}");
    let alerts = std::fs::read_to_string(dir.join("alerts.yaml")).expect("alerts.yaml");
    let mut lines = alerts.lines();
    while let Some(line) = lines.next() {
        if let Some(expr) = line.trim().strip_prefix("expr:") {
            expressions.push(expr.to_string());
            if expr.trim() == "|" {
                expressions.extend(lines.by_ref().take_while(|l| !l.trim().starts_with("for:")).map(str::to_string));
            }
        }
    }
    let names: BTreeSet<String> = expressions
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("runnel_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(names.len() >= 12, "the dashboard and alerts use only {names:?}");
    names
}

async fn produce_to_every_partition(client: &TestClient, topic: &str, round: u32) {
    for key in 0..48 {
        let (status, body) = client.produce_keyed(topic, &format!("key-{key}"), &json!({"round": round})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_exists_and_a_broker_down_shows_as_under_replicated() {
    let used = metrics_used();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start_cluster(dir.path(), 3, &[]);
    let client = TestClient::new(&cluster[0]);
    produce_to_every_partition(&client, "events", 0).await;
    let (status, body) = client.register("reader", "billing", &["events"], None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    client.poll("reader").await;
    for broker in &cluster {
        assert_eq!(value(&scrape(broker).await, "runnel_partitions_under_replicated"), 0, "all copies keep up");
    }

    cluster[2].kill9();
    let down_at = Instant::now();
    produce_to_every_partition(&client, "events", 1).await;
    let mut texts;
    loop {
        texts = vec![scrape(&cluster[0]).await, scrape(&cluster[1]).await];
        if texts.iter().all(|t| has_series(t, "runnel_partition_under_replicated")) {
            break;
        }
        assert!(down_at.elapsed() < Duration::from_secs(40), "no under-replicated partitions reported:\n{texts:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(down_at.elapsed() >= Duration::from_secs(10), "under-replicated only after 10 s without catching up");
    for text in &texts {
        let listed = text.lines().filter(|l| l.starts_with("runnel_partition_under_replicated{")).count() as i64;
        assert_eq!(value(text, "runnel_partitions_under_replicated"), listed, "{text}");
        assert_eq!(value(text, "runnel_raft_has_leader"), 1, "{text}");
        assert!(value(text, "runnel_raft_term") >= 1, "{text}");
    }
    let leaders: i64 = texts.iter().map(|t| value(t, "runnel_raft_is_leader")).sum();
    assert_eq!(leaders, 1, "one Raft leader between the two brokers left");
    let led: i64 = texts.iter().map(|t| value(t, "runnel_partitions_led")).sum();
    assert!(led >= 12, "the two brokers left lead every partition between them: {led}");
    let scraped = texts.concat();
    let missing: Vec<&String> = used.iter().filter(|name| !has_series(&scraped, name)).collect();
    assert!(missing.is_empty(), "used by k8s/monitoring but not in /metrics: {missing:?}");

    cluster[2].restart();
    cluster[2].wait_ready(Duration::from_secs(30));
    let back_at = Instant::now();
    loop {
        let mut lagging = 0;
        for broker in &cluster {
            let text = scrape(broker).await;
            lagging += value(&text, "runnel_partitions_under_replicated");
            assert!(lagging > 0 || !has_series(&text, "runnel_partition_under_replicated"), "{text}");
        }
        if lagging == 0 {
            break;
        }
        assert!(back_at.elapsed() < Duration::from_secs(30), "{lagging} partitions still under-replicated");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
