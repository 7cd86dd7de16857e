//! What an idempotent [`crate::Producer`] keeps (SPEC §12): its `Producer-Id`, and per topic
//! partition the epoch and the next sequence number, plus the current generation's partitions
//! and their leaders (from any broker's `GET /v1/topic/{topic}` on the consumer port), from
//! which it predicts the partition a request will be stored in (the broker places it by the
//! same Murmur3 token on the ring of those partitions; an unkeyed request goes to the
//! partition of the producer's id) and sends it to that partition's leader, so no broker has
//! to pass it on (a hop that costs both brokers CPU, and with TLS an encryption more).
//!
//! Requests to one partition are sent one at a time (each holds its partition's [`Lane`]
//! through its retries), so they reach the leader in sequence order whatever broker forwards
//! them. A request whose fate stayed unknown (every attempt failed in a way that may have
//! stored it) leaves its sequence number unusable: the next request on that partition starts
//! a new epoch at 0, which the broker accepts from this producer, so nothing is refused or
//! mistaken for a repeat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runnel_discovery::Ring;
use serde::Deserialize;

use crate::{Brokers, ClientError};

/// A partition's epoch and next sequence number, held by the request being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub epoch: u64,
    pub next: u64,
}

/// Leaders move (failover, resize) without telling producers; a request sent to a former
/// leader is passed on by it, so an old layout costs a hop, never a wrong answer. It is asked
/// again this often, and after any failed request.
const LAYOUT_MAX_AGE: Duration = Duration::from_secs(30);

/// The current generation's partitions: the first's number, the ring they form and the
/// leader (ordinal) of each, when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    first: u32,
    ring: Ring,
    leaders: Vec<u32>,
    asked: Instant,
}

/// Where a request will be stored, and who stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub partition: u32,
    /// The partition's leader, as last asked.
    pub leader: Option<u32>,
}

/// A partition's lane, locked by the request being sent on it.
pub type SharedLane = Arc<tokio::sync::Mutex<Lane>>;

pub struct Idempotence {
    pub id: String,
    /// The epoch of a lane not used before: the producer's start time, so a producer started
    /// again with the same id fences the one before it.
    start_epoch: u64,
    lanes: Mutex<HashMap<(String, u32), SharedLane>>,
    layout: Mutex<Option<Layout>>,
}

#[derive(Deserialize)]
struct TopicView {
    partitions: Vec<PartitionView>,
}

#[derive(Deserialize)]
struct PartitionView {
    partition: u32,
    generation: u32,
    leader: u32,
}

impl Idempotence {
    /// With `id`, or a random one.
    pub fn new(id: Option<String>) -> Idempotence {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let id = id.unwrap_or_else(|| format!("rs-{:016x}", random_u64(now)));
        Idempotence { id, start_epoch: now.as_millis() as u64, lanes: Mutex::default(), layout: Mutex::default() }
    }

    /// The lane of `topic`'s partition `partition`.
    pub fn lane(&self, topic: &str, partition: u32) -> SharedLane {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        lanes
            .entry((topic.to_string(), partition))
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Lane { epoch: self.start_epoch, next: 0 })))
            .clone()
    }

    /// The partition a request with `key` (none: the producer's id) will be stored in, as the
    /// cluster's ring has it now, and its leader (asked at most every [`LAYOUT_MAX_AGE`], and
    /// again after [`Idempotence::forget_layout`]).
    pub async fn route(
        &self,
        http: &reqwest::Client,
        brokers: &Brokers,
        (topic, key): (&str, Option<&str>),
    ) -> Result<Route, ClientError> {
        let known = self.layout.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let layout = match known {
            Some(layout) if layout.asked.elapsed() < LAYOUT_MAX_AGE => layout,
            _ => {
                let layout = fetch_layout(http, brokers, topic).await?;
                *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = Some(layout.clone());
                layout
            }
        };
        let index = layout.ring.partition_of_key(key.unwrap_or(&self.id).as_bytes());
        Ok(Route { partition: layout.first + index, leader: layout.leaders.get(index as usize).copied() })
    }

    /// The ring or a leader changed, or a request failed: ask again next time.
    pub fn forget_layout(&self) {
        *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The current generation's partitions from any broker's `GET /v1/topic/{topic}` (every
/// topic has every generation's partitions, written to or not). A key's partition is its
/// token's place among them, counted from the first.
async fn fetch_layout(http: &reqwest::Client, brokers: &Brokers, topic: &str) -> Result<Layout, ClientError> {
    let mut last = ClientError::NoBrokers;
    for index in 0..brokers.hosts.len() {
        let url = brokers.consumer_url(index, &format!("/v1/topic/{topic}"))?;
        let answer = match http.get(&url).timeout(Duration::from_secs(10)).send().await {
            Ok(response) if response.status().is_success() => response.json::<TopicView>().await,
            Ok(response) => {
                let status = response.status();
                last = ClientError::Status { url, status, body: response.text().await.unwrap_or_default() };
                continue;
            }
            Err(source) => {
                last = ClientError::Transport { url, source };
                continue;
            }
        };
        let view = answer.map_err(|e| ClientError::InvalidResponse { url: url.clone(), reason: e.to_string() })?;
        let generation = view.partitions.iter().map(|p| p.generation).max();
        let mut current: Vec<&PartitionView> =
            view.partitions.iter().filter(|p| Some(p.generation) == generation).collect();
        current.sort_by_key(|p| p.partition);
        let Some(first) = current.first().map(|p| p.partition) else {
            return Err(ClientError::InvalidResponse { url, reason: "the topic has no partitions".into() });
        };
        let leaders = current.iter().map(|p| p.leader).collect();
        return Ok(Layout { first, ring: Ring::new(1, current.len() as u32), leaders, asked: Instant::now() });
    }
    Err(last)
}

/// A random number from the OS, mixed with the time (only uniqueness matters).
fn random_u64(now: Duration) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    hasher.finish()
}
