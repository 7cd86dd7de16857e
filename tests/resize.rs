//! Issue 12: resizing a running cluster under load, static mode on 127.0.0.x. Three brokers
//! take keyed writes through every broker while a 2-member group polls all of them; three
//! more start with the longer `RUNNEL_BROKER_NAMES` and the cluster grows to six, copying
//! nothing; a resize call shrinks it to three, and the three leaving brokers are stopped once
//! `removable`; a fourth broker then grows it to four. The workload's checker proves every
//! acknowledged record was consumed, per key in order, and no committed offset went backwards.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runnel_client::{Brokers, Consumer, ConsumerConfig, StartFrom};
use runnel_tests::resize_views::{wait_for_removable, wait_for_ring};
use runnel_tests::workload::{raft_voters, set_up, wait_for_voters, Endpoint, Endpoints, Workload};
use runnel_tests::{built_binary, StaticCluster};
use serde_json::Value;

/// The bound on how long a write may wait.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Partition numbers with a directory under `home` for `topic`.
fn partitions_on_disk(home: &Path, topic: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(home.join("topics").join(topic)) else { return Vec::new() };
    let mut found: Vec<u32> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    found.sort_unstable();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_grow_to_six_shrink_to_three_and_grow_to_four_under_load_losing_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = StaticCluster::new(dir.path(), 6);
    let mut brokers: Vec<_> = (0..3).map(|i| cluster.start(i, 3, &[])).collect();
    let endpoints = Endpoints::new(std::sync::Mutex::new(brokers.iter().map(Endpoint::of).collect()));
    let first = Endpoint::of(&brokers[0]);
    wait_for_voters(&first, &[0, 1, 2], Duration::from_secs(30)).await;
    let workload = Workload::start(endpoints.clone(), "resize", 48, 4).await;
    // A consumer of the Rust client, given the broker list once: it must follow the resizes.
    let config = ConsumerConfig {
        id: "client-reader".into(),
        group: "client-readers".into(),
        topics: vec!["resize".into()],
        start: StartFrom::Earliest,
        wait: runnel_client::DEFAULT_WAIT,
    };
    let http = reqwest::Client::new();
    let discovered = Brokers::discover(&http, &brokers[0].ip.to_string(), 9250).await.expect("discover");
    let mut reader = Consumer::connect(discovered, config).await.expect("the client consumer registers");
    let seen: Arc<Mutex<BTreeSet<(String, u64)>>> = Arc::default();
    let reading = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(reader.next_poll_in()).await;
                for record in reader.poll().await.unwrap_or_default() {
                    let key = record.value["key"].as_str().unwrap_or_default().to_string();
                    let seq = record.value["seq"].as_u64().unwrap_or(u64::MAX);
                    seen.lock().unwrap_or_else(|p| p.into_inner()).insert((key, seq));
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The group stops reading while the cluster grows, so the old partitions hold a backlog
    // when the new ones open: reading a new partition before its parents would break key order.
    workload.pause_consuming(true);
    // The new brokers come one at a time, as a StatefulSet creates its pods.
    for ordinal in 3..6 {
        brokers.push(cluster.start(ordinal, 6, &[]));
        endpoints.lock().unwrap_or_else(|p| p.into_inner()).push(Endpoint::of(&brokers[ordinal]));
    }
    let last_ready = Instant::now();
    let view = wait_for_ring(&first, 6, Duration::from_secs(60)).await;
    let grown_after = last_ready.elapsed();
    eprintln!("six brokers serving {grown_after:?} after the last one was ready (generation {})", view["generation"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    workload.pause_consuming(false);
    let voters = raft_voters(&first).await.expect("voters");
    assert_eq!(voters.len(), 5, "Raft keeps at most five voters, the sixth broker is a learner: {voters:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Shrink back to three: the highest ordinals leave once nothing only they hold is needed.
    workload.pause_consuming(true);
    let resize = |brokers: &str| {
        http.post(format!("{}/v1/cluster/resize", first.discovery)).query(&[("brokers", brokers.to_string())]).send()
    };
    let refused = resize("7").await.expect("resize");
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT, "more brokers than the cluster knows");
    let refused: Value = refused.json().await.expect("a JSON refusal");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("knows 6 brokers")), "{refused}");
    let cli = std::process::Command::new(built_binary("runnel"))
        .args(["cluster", "resize", "3", "--host", &brokers[0].ip.to_string()])
        .output()
        .expect("run runnel cluster resize");
    let said = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success() && said.contains("opened with 3 brokers"),
        "{said} {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let shrink_asked = Instant::now();
    let view = wait_for_removable(&first, &[3, 4, 5], Duration::from_secs(60)).await;
    eprintln!(
        "brokers 3-5 removable {:?} after the resize call (generation {})",
        shrink_asked.elapsed(),
        view["generation"]
    );
    for (ordinal, broker) in brokers.iter_mut().enumerate().skip(3) {
        set_up(&endpoints, ordinal, false);
        assert!(broker.terminate(), "broker {ordinal} stops cleanly");
    }
    workload.pause_consuming(false);
    let again = resize("3").await.expect("resize");
    assert_eq!(again.status(), reqwest::StatusCode::OK, "the same size is a no-op");
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Grow again to four: broker 3 comes back empty, as a new pod with a new volume.
    std::fs::remove_dir_all(&brokers[3].home).expect("wipe broker 3");
    brokers[3] = cluster.start(3, 4, &[]);
    {
        let mut endpoints = endpoints.lock().unwrap_or_else(|p| p.into_inner());
        endpoints[3] = Endpoint::of(&brokers[3]);
    }
    wait_for_ring(&first, 4, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let report = workload.finish(Duration::from_secs(30)).await;
    eprintln!("{} records acknowledged; longest wait {:?}", report.acks().len(), report.longest_wait());
    report.check(MAX_WAIT);
    let deadline = Instant::now() + Duration::from_secs(30);
    let unseen = loop {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let unseen: Vec<(String, u64)> =
            report.acks().iter().map(|a| (a.key.clone(), a.seq)).filter(|r| !seen.contains(r)).collect();
        if unseen.is_empty() || Instant::now() > deadline {
            break unseen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    reading.abort();
    assert!(
        unseen.is_empty(),
        "the client consumer missed {} records, e.g. {:?}",
        unseen.len(),
        &unseen[..unseen.len().min(5)]
    );
    let generation_0 = 0..12;
    for broker in &brokers[3..] {
        let old: Vec<u32> =
            partitions_on_disk(&broker.home, "resize").into_iter().filter(|p| generation_0.contains(p)).collect();
        assert!(old.is_empty(), "growing copied old partitions {old:?} to {}", broker.home.display());
    }
    let after_grow: Vec<u32> = report.acks().iter().map(|a| a.partition).filter(|p| *p >= 12).collect();
    assert!(!after_grow.is_empty(), "no write reached a partition of a newer generation");
}
