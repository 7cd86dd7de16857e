//! What a resize test waits for in `GET /v1/cluster`: a grown ring fully serving, and the
//! brokers a shrink lets go listed removable. Shared by the static (tests/resize.rs) and the
//! Docker (tests/docker_resize.rs) versions of the scenario.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::workload::Endpoint;

/// `endpoint`'s `GET /v1/cluster`, as JSON.
pub async fn cluster_json(endpoint: &Endpoint) -> Option<Value> {
    let http = crate::tokens::harness_http(Some(Duration::from_secs(2)));
    http.get(format!("{}/v1/cluster", endpoint.discovery)).send().await.ok()?.json().await.ok()
}

/// The view once the ring has `brokers` brokers, every one of them serving, and every
/// partition of an older generation sealed.
pub async fn wait_for_ring(endpoint: &Endpoint, brokers: u64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(view) = cluster_json(endpoint).await {
            let serving = view["members"].as_array().into_iter().flatten().filter(|m| m["state"] == "serving").count();
            let current = view["generation"].as_u64();
            let unsealed = view["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["generation"].as_u64() != current && p["sealed"] != true)
                .count();
            if view["brokers"] == brokers && serving as u64 == brokers && unsealed == 0 {
                return view;
            }
            last = view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the ring did not reach {brokers} serving brokers within {within:?}; last view: {last}");
}

/// The view once `brokers` are listed removable.
pub async fn wait_for_removable(endpoint: &Endpoint, brokers: &[u64], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(view) = cluster_json(endpoint).await {
            let removable: Vec<u64> =
                view["removable"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
            if removable == brokers {
                return view;
            }
            last = view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("brokers {brokers:?} were not removable within {within:?}; last view: {last}");
}
