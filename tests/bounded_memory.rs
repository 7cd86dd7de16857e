//! Issue 11, item 2: the broker's memory has one bound, `RUNNEL_MEMORY_LIMIT`. Before, peak
//! memory grew with producer connections (each held what it sent) and a leader with a
//! follower down kept 32 MiB of records per partition for it. Here a broker is loaded past
//! its limit both ways and its peak resident memory (VmHWM) must stay under
//! the limit plus the process' own overhead, with every refusal a 503 that says to retry.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use runnel_tests::{start_cluster, BrokerProcess};

/// Pays for 320 client connections (3/8 of it, at 64 KiB each, less the peer port's 256).
const LIMIT_MIB: u64 = 96;
/// What the process needs beside its buffers: code, runtime, Raft and per-partition state
/// (20–30 MiB idle in a debug build) and allocator slack, 40 MiB, plus the writers' encoding
/// copy of the records in flight, at most the produce share (a quarter of the limit).
const OVERHEAD_MIB: u64 = 40 + LIMIT_MIB / 4;

/// `connections` producers, each on its own connection, each sending `bodies` bodies of 1 MiB;
/// returns (acknowledged, refused with 503 + Retry-After). Anything else fails the test.
async fn produce_in_parallel(urls: Vec<String>, connections: usize, bodies: usize) -> (usize, usize) {
    let body = bytes::Bytes::from(vec![b'r'; 1 << 20]);
    let urls = Arc::new(urls);
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let (body, urls) = (body.clone(), urls.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
                let url = &urls[i % urls.len()];
                let (mut acknowledged, mut refused) = (0, 0);
                for _ in 0..bodies {
                    let response = http.post(url).body(body.clone()).send().await.expect("produce");
                    match response.status() {
                        StatusCode::OK => acknowledged += 1,
                        StatusCode::SERVICE_UNAVAILABLE => {
                            assert!(response.headers().contains_key("retry-after"));
                            refused += 1;
                        }
                        other => panic!("produce answered {other}: {}", response.text().await.unwrap_or_default()),
                    }
                }
                (acknowledged, refused)
            })
        })
        .collect();
    let mut total = (0, 0);
    for task in tasks {
        let (a, r) = task.await.expect("producer task");
        total = (total.0 + a, total.1 + r);
    }
    total
}

#[tokio::test]
async fn many_connections_of_large_producers_stay_within_the_memory_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limit = format!("{LIMIT_MIB}MiB");
    let broker = BrokerProcess::start(&dir.path().join("b"), &[("RUNNEL_MEMORY_LIMIT", &limit)]);
    let url = broker.url(9251, "/v1/topic/bulk/messages");
    let (acknowledged, refused) = produce_in_parallel(vec![url], 240, 3).await;
    let peak = broker.peak_resident_mib();
    eprintln!("acknowledged {acknowledged}, refused {refused}, peak resident {peak} MiB");
    assert!(acknowledged > 0);
    assert!(peak <= LIMIT_MIB + OVERHEAD_MIB, "peak resident memory {peak} MiB > {LIMIT_MIB} + {OVERHEAD_MIB} MiB");
}

#[tokio::test]
async fn a_leader_with_a_follower_down_stays_within_the_memory_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limit = format!("{LIMIT_MIB}MiB");
    let mut brokers = start_cluster(dir.path(), 3, &[("RUNNEL_MEMORY_LIMIT", &limit)]);
    brokers[2].kill9();
    // The survivors lead all 12 partitions once the dead broker's fail over.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let urls = brokers[..2].iter().map(|b| b.url(9251, "/v1/topic/bulk/messages")).collect();
    let (acknowledged, refused) = produce_in_parallel(urls, 32, 12).await;
    eprintln!("acknowledged {acknowledged} MiB, refused {refused}");
    assert!(acknowledged >= 200, "too little got through to load the leaders: {acknowledged} MiB");
    for broker in &brokers[..2] {
        let peak = broker.peak_resident_mib();
        eprintln!("{}: peak resident {peak} MiB", broker.ip);
        assert!(peak <= LIMIT_MIB + OVERHEAD_MIB, "peak resident memory {peak} MiB > {LIMIT_MIB} + {OVERHEAD_MIB} MiB");
    }
}
