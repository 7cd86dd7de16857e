//! A fault-test workload and its checker: keyed producers that retry until each record is
//! acknowledged, a consumer group polling every broker, and a sampler of the group's committed
//! offsets, all against a set of brokers that the test kills and restarts. [`Report::check`]
//! then proves what a user relies on: every acknowledged record was consumed, in order per key,
//! committed offsets never went backwards, and no write waited longer than allowed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

/// Where one broker is reached, and whether the test has it running.
#[derive(Clone)]
pub struct Endpoint {
    pub producer: String,
    pub consumer: String,
    pub discovery: String,
    pub up: bool,
}

impl Endpoint {
    pub fn of(broker: &crate::BrokerProcess) -> Endpoint {
        Endpoint {
            producer: broker.url(9251, ""),
            consumer: broker.url(9252, ""),
            discovery: broker.url(9250, ""),
            up: true,
        }
    }
}

pub type Endpoints = Arc<Mutex<Vec<Endpoint>>>;

/// Broker `i`'s endpoint as the workload has it now.
pub fn endpoint(endpoints: &Endpoints, i: usize) -> Endpoint {
    endpoints.lock().unwrap_or_else(|p| p.into_inner())[i].clone()
}

/// Marks broker `i` up or down: the workload sends only to brokers that are up.
pub fn set_up(endpoints: &Endpoints, i: usize, up: bool) {
    endpoints.lock().unwrap_or_else(|p| p.into_inner())[i].up = up;
}

fn up(endpoints: &Endpoints) -> Vec<Endpoint> {
    endpoints.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|e| e.up).cloned().collect()
}

/// One acknowledged record.
#[derive(Debug, Clone)]
pub struct Ack {
    pub key: String,
    pub seq: u64,
    pub partition: u32,
    pub started: Instant,
    pub acked: Instant,
}

#[derive(Default)]
struct Observed {
    acks: Vec<Ack>,
    /// key -> seqs in the order the group received them (duplicates included).
    consumed: BTreeMap<String, Vec<u64>>,
    /// Offsets that went backwards in one broker's view: (broker, topic/partition, before, after).
    rewinds: Vec<(usize, String, u64, u64)>,
    /// Highest committed offset seen anywhere, per topic/partition.
    highest_committed: BTreeMap<String, u64>,
    /// Per partition, the end of the last chunk consumed and which (member, broker) it came from.
    consumed_to: BTreeMap<u32, (u64, String)>,
}

pub struct Workload {
    endpoints: Endpoints,
    topic: String,
    group: String,
    /// Whether the producers are idempotent (SPEC §12): then every acknowledged record must be
    /// stored exactly once, which the report checks by reading every partition back.
    idempotent: bool,
    stop_producing: Arc<AtomicBool>,
    stop_consuming: Arc<AtomicBool>,
    /// While set, the group does not poll (a backlog builds up).
    paused: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
    producers: Vec<tokio::task::JoinHandle<()>>,
    /// The group and the offset sampler.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

const MEMBERS: [&str; 2] = ["member-a", "member-b"];

impl Workload {
    /// Starts `producers` tasks writing `keys` keys, and the consuming group.
    pub async fn start(endpoints: Endpoints, topic: &str, keys: usize, producers: usize) -> Workload {
        Workload::start_with(endpoints, topic, keys, producers, false).await
    }

    /// Like [`Workload::start`], with idempotent producers: one `Producer-Id` per key (each
    /// key's records go to one partition, so its sequence is the key's), every request sent
    /// again with the same sequence until a broker acknowledges it.
    pub async fn start_idempotent(endpoints: Endpoints, topic: &str, keys: usize, producers: usize) -> Workload {
        Workload::start_with(endpoints, topic, keys, producers, true).await
    }

    async fn start_with(
        endpoints: Endpoints,
        topic: &str,
        keys: usize,
        producers: usize,
        idempotent: bool,
    ) -> Workload {
        let mut workload = Workload {
            endpoints,
            topic: topic.to_string(),
            group: format!("{topic}-checkers"),
            idempotent,
            stop_producing: Arc::default(),
            stop_consuming: Arc::default(),
            paused: Arc::default(),
            observed: Arc::default(),
            producers: Vec::new(),
            readers: Vec::new(),
        };
        for member in MEMBERS {
            workload.register(member).await;
        }
        for task in 0..producers {
            let my_keys: Vec<String> = (task..keys).step_by(producers).map(|k| format!("key-{k}")).collect();
            workload.producers.push(tokio::spawn(produce(
                workload.endpoints.clone(),
                workload.topic.clone(),
                (my_keys, idempotent),
                workload.stop_producing.clone(),
                workload.observed.clone(),
            )));
        }
        workload.readers.push(tokio::spawn(consume(
            workload.endpoints.clone(),
            workload.topic.clone(),
            workload.group.clone(),
            workload.stop_consuming.clone(),
            workload.paused.clone(),
            workload.observed.clone(),
        )));
        workload.readers.push(tokio::spawn(sample_offsets(
            workload.endpoints.clone(),
            workload.group.clone(),
            workload.stop_consuming.clone(),
            workload.observed.clone(),
        )));
        workload
    }

    async fn register(&self, member: &str) {
        let http = crate::tokens::harness_http(None);
        for _ in 0..100 {
            for endpoint in up(&self.endpoints) {
                if register(&http, &endpoint, member, &self.topic, &self.group).await {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not register {member}");
    }

    /// Stops the group polling (`true`) or lets it go on (`false`), so a backlog can be built
    /// up across a change of the cluster.
    pub fn pause_consuming(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Acknowledged records so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.observed.lock().unwrap_or_else(|p| p.into_inner()).acks.clone()
    }

    /// Stops producing, lets the group read everything acknowledged (up to `drain`), stops.
    pub async fn finish(mut self, drain: Duration) -> Report {
        self.stop_producing.store(true, Ordering::Relaxed);
        // The drain starts once no write can be acknowledged any more: a producer whose last
        // request was still on its way would add a record after the group had read everything
        // and stopped (a failure that is the checker's, not the cluster's).
        for producer in self.producers.drain(..) {
            let _ = producer.await;
        }
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline && !self.all_consumed() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.stop_consuming.store(true, Ordering::Relaxed);
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        let observed = std::mem::take(&mut *self.observed.lock().unwrap_or_else(|p| p.into_inner()));
        let final_offsets = final_committed(&self.endpoints, &self.group).await;
        let diagnosis = diagnose(&self.endpoints, &self.topic, &self.group, &observed).await;
        let stored = stored_records(&self.endpoints, &self.topic).await;
        Report { observed, final_offsets, diagnosis, stored, idempotent: self.idempotent }
    }

    fn all_consumed(&self) -> bool {
        let observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        observed.acks.iter().all(|a| observed.consumed.get(&a.key).is_some_and(|seqs| seqs.contains(&a.seq)))
    }
}

async fn register(http: &reqwest::Client, endpoint: &Endpoint, member: &str, topic: &str, group: &str) -> bool {
    let url = format!("{}/v1/consumer/register", endpoint.consumer);
    let query = [("consumerId", member), ("group", group), ("topic", topic), ("onNewGroup", "startFromEarliest")];
    let sent = http.put(url).query(&query).timeout(Duration::from_secs(10)).send().await;
    sent.is_ok_and(|r| r.status() == StatusCode::OK)
}

async fn produce(
    endpoints: Endpoints,
    topic: String,
    (keys, idempotent): (Vec<String>, bool),
    stop: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
) {
    let http = crate::tokens::harness_http(None);
    let mut seqs: HashMap<String, u64> = HashMap::new();
    let mut turn = 0usize;
    'producing: while !stop.load(Ordering::Relaxed) {
        for key in &keys {
            if stop.load(Ordering::Relaxed) {
                break 'producing;
            }
            let seq = *seqs.entry(key.clone()).and_modify(|s| *s += 1).or_insert(0);
            let body = json!({"key": key, "seq": seq}).to_string();
            let started = Instant::now();
            // The same record is sent until some broker acknowledges it, so per key the
            // acknowledged sequence is 0, 1, 2, … (a retry after a lost answer may duplicate).
            let partition = loop {
                // A record not acknowledged when the workload stops is not one the group must read.
                if stop.load(Ordering::Relaxed) {
                    break 'producing;
                }
                let brokers = up(&endpoints);
                turn += 1;
                let Some(endpoint) = brokers.get(turn % brokers.len().max(1)) else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut request = http
                    .post(format!("{}/v1/topic/{topic}/messages", endpoint.producer))
                    .query(&[("partitionKey", key)])
                    .header("accept", "application/json")
                    .body(body.clone())
                    .timeout(Duration::from_secs(15));
                if idempotent {
                    request = request
                        .header("producer-id", format!("w-{key}"))
                        .header("producer-epoch", "1")
                        .header("producer-seq", seq.to_string());
                }
                let sent = request.send().await;
                if let Ok(response) = sent {
                    if response.status() == StatusCode::OK {
                        if let Ok(answer) = response.json::<Value>().await {
                            break answer["partition"].as_u64().unwrap_or(u64::MAX) as u32;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let ack = Ack { key: key.clone(), seq, partition, started, acked: Instant::now() };
            observed.lock().unwrap_or_else(|p| p.into_inner()).acks.push(ack);
        }
    }
}

async fn consume(
    endpoints: Endpoints,
    topic: String,
    group: String,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
) {
    let http = crate::tokens::harness_http(None);
    let mut last_commit = Instant::now();
    // Retry-safe polls (SPEC §10): per member and broker, the Poll-Token of the last response
    // read, so a response lost in a timeout or a broker's death is delivered again, not skipped.
    let mut tokens: HashMap<(&str, String), String> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        if paused.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut got_any = false;
        for member in MEMBERS {
            for endpoint in up(&endpoints) {
                let url = format!("{}/v1/consumer/poll", endpoint.consumer);
                let slot = (member, endpoint.consumer.clone());
                let ack = tokens.get(&slot).map_or("none", String::as_str);
                let sent = http
                    .post(url)
                    .query(&[("consumerId", member), ("ack", ack)])
                    .header("accept", "application/json")
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(response) = sent else { continue };
                match response.status() {
                    StatusCode::OK => {
                        let token =
                            response.headers().get("poll-token").and_then(|t| t.to_str().ok()).map(String::from);
                        let Ok(chunks) = response.json::<Vec<runnel_client::PollChunk>>().await else { continue };
                        if let Some(token) = token {
                            tokens.insert(slot, token);
                        }
                        let mut observed = observed.lock().unwrap_or_else(|p| p.into_inner());
                        for chunk in &chunks {
                            let end = chunk.start_offset as u64 + chunk.values.len() as u64;
                            let from = format!("{member} from {}", endpoint.consumer);
                            observed.consumed_to.insert(chunk.partition.unwrap_or(u32::MAX), (end, from));
                        }
                        for value in chunks.iter().flat_map(|c| c.values.iter()) {
                            let key = value["key"].as_str().unwrap_or_default().to_string();
                            let seq = value["seq"].as_u64().unwrap_or(u64::MAX);
                            observed.consumed.entry(key).or_default().push(seq);
                            got_any = true;
                        }
                    }
                    StatusCode::CONFLICT => {
                        register(&http, &endpoint, member, &topic, &group).await;
                    }
                    _ => {}
                }
            }
        }
        if last_commit.elapsed() > Duration::from_secs(1) {
            last_commit = Instant::now();
            for member in MEMBERS {
                if let Some(endpoint) = up(&endpoints).first() {
                    let url = format!("{}/v1/consumer/commit", endpoint.consumer);
                    let acks = acks_of(&tokens, member);
                    let _ = http.post(url).query(&acks).timeout(Duration::from_secs(10)).send().await;
                }
            }
        }
        if !got_any {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for member in MEMBERS {
        if let Some(endpoint) = up(&endpoints).first() {
            let url = format!("{}/v1/consumer/goodbye", endpoint.consumer);
            let acks = acks_of(&tokens, member);
            let _ = http.post(url).query(&acks).timeout(Duration::from_secs(10)).send().await;
        }
    }
}

/// A commit's or goodbye's query for `member`: the tokens of the responses it read, one per
/// broker, and `none` for brokers whose responses it has not read.
fn acks_of<'a>(tokens: &'a HashMap<(&str, String), String>, member: &'a str) -> Vec<(&'static str, &'a str)> {
    let mine = tokens.iter().filter(|((m, _), _)| *m == member).map(|(_, token)| ("ack", token.as_str()));
    std::iter::once(("consumerId", member)).chain(std::iter::once(("ack", "none"))).chain(mine).collect()
}

/// The group's committed offsets as one broker sees them, flattened to "topic/partition".
async fn committed(http: &reqwest::Client, endpoint: &Endpoint, group: &str) -> Option<BTreeMap<String, u64>> {
    let url = format!("{}/v1/groups/{group}", endpoint.consumer);
    let response = http.get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    let mut flat = BTreeMap::new();
    for topic in body["topics"].as_array()? {
        for partition in topic["partitions"].as_array()? {
            // A partition the group has not committed yet is null.
            let Some(committed) = partition["committed"].as_str() else { continue };
            flat.insert(format!("{}/{}", topic["topic"].as_str()?, partition["partition"]), committed.parse().ok()?);
        }
    }
    Some(flat)
}

/// Each broker's view of the committed offsets, sampled: a broker's applied Raft state only
/// moves forward, so any decrease in one broker's view (between restarts) is a rewind.
async fn sample_offsets(endpoints: Endpoints, group: String, stop: Arc<AtomicBool>, observed: Arc<Mutex<Observed>>) {
    let http = crate::tokens::harness_http(None);
    let mut views: HashMap<(usize, String), BTreeMap<String, u64>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let endpoints_now: Vec<Endpoint> = endpoints.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (broker, endpoint) in endpoints_now.iter().enumerate() {
            if !endpoint.up {
                // Restarted brokers start a new view (they replay Raft from their snapshot).
                views.retain(|(b, _), _| *b != broker);
                continue;
            }
            let Some(now) = committed(&http, endpoint, &group).await else { continue };
            let view = views.entry((broker, endpoint.consumer.clone())).or_default();
            let mut observed = observed.lock().unwrap_or_else(|p| p.into_inner());
            for (tp, offset) in now {
                if let Some(before) = view.get(&tp).copied().filter(|b| *b > offset) {
                    observed.rewinds.push((broker, tp.clone(), before, offset));
                }
                let highest = observed.highest_committed.entry(tp.clone()).or_insert(0);
                *highest = (*highest).max(offset);
                view.insert(tp, offset);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn final_committed(endpoints: &Endpoints, group: &str) -> Vec<BTreeMap<String, u64>> {
    let http = crate::tokens::harness_http(None);
    let mut views = Vec::new();
    for endpoint in up(endpoints) {
        if let Some(view) = committed(&http, &endpoint, group).await {
            views.push(view);
        }
    }
    views
}

/// For the partitions with acknowledged records nobody consumed, what each broker says about
/// them (bounds and leader, the group's committed offset) and where consuming them stopped,
/// so a failure of [`Report::check`] says where the records are stuck.
async fn diagnose(endpoints: &Endpoints, topic: &str, group: &str, observed: &Observed) -> String {
    let unconsumed: std::collections::BTreeSet<u32> = observed
        .acks
        .iter()
        .filter(|a| !observed.consumed.get(&a.key).is_some_and(|seqs| seqs.contains(&a.seq)))
        .map(|a| a.partition)
        .collect();
    let http = crate::tokens::harness_http(None);
    let mut lines = Vec::new();
    for partition in unconsumed {
        let acked = observed.acks.iter().filter(|a| a.partition == partition).count();
        lines.push(format!(
            "partition {partition}: {acked} acknowledged; consumed to {:?}",
            observed.consumed_to.get(&partition)
        ));
        for endpoint in up(endpoints) {
            let get = |url: String| {
                let http = http.clone();
                async move {
                    let response = http.get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
                    response.json::<Value>().await.ok()
                }
            };
            let bounds = get(format!("{}/v1/topic/{topic}", endpoint.consumer))
                .await
                .and_then(|body| body["partitions"].as_array()?.iter().find(|p| p["partition"] == partition).cloned());
            let tp = format!("{topic}/{partition}");
            let committed = committed(&http, &endpoint, group).await.map(|c| c.get(&tp).copied());
            let cluster = get(format!("{}/v1/cluster", endpoint.discovery))
                .await
                .and_then(|body| body["partitions"].as_array()?.iter().find(|p| p["partition"] == partition).cloned());
            lines.push(format!(
                "  {}: bounds {bounds:?}, committed {committed:?}, cluster {cluster:?}",
                endpoint.consumer
            ));
        }
    }
    lines.join("\n")
}

/// How often each (key, seq) is stored in the topic, read back from every partition's start
/// through the read API (`GET /v1/topic/{t}/records`).
async fn stored_records(endpoints: &Endpoints, topic: &str) -> BTreeMap<(String, u64), usize> {
    let http = crate::tokens::harness_http(None);
    let endpoint = up(endpoints).first().cloned().expect("a broker is up");
    let get = |url: String, query: Vec<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let response = http.get(url).query(&query).timeout(Duration::from_secs(10)).send().await.expect("read");
            assert_eq!(response.status(), StatusCode::OK, "reading the topic back");
            response.json::<Value>().await.expect("JSON")
        }
    };
    let described = get(format!("{}/v1/topic/{topic}", endpoint.consumer), Vec::new()).await;
    let mut stored = BTreeMap::new();
    for partition in described["partitions"].as_array().expect("partitions") {
        let partition = partition["partition"].as_u64().expect("partition").to_string();
        let mut offset = "earliest".to_string();
        loop {
            let query = vec![("partition", partition.clone()), ("offset", offset.clone()), ("limit", "10000".into())];
            let page = get(format!("{}/v1/topic/{topic}/records", endpoint.consumer), query).await;
            for record in page["records"].as_array().expect("records") {
                let key = record["value"]["key"].as_str().unwrap_or_default().to_string();
                *stored.entry((key, record["value"]["seq"].as_u64().unwrap_or(u64::MAX))).or_insert(0) += 1;
            }
            if page["upToDate"] == true {
                break;
            }
            offset = page["nextOffset"].as_str().expect("nextOffset").to_string();
        }
    }
    stored
}

/// What the workload saw, and the checks on it.
pub struct Report {
    observed: Observed,
    final_offsets: Vec<BTreeMap<String, u64>>,
    diagnosis: String,
    /// How often each record is stored.
    stored: BTreeMap<(String, u64), usize>,
    /// Whether the producers were idempotent: then every record must be stored once.
    idempotent: bool,
}

impl Report {
    pub fn acks(&self) -> &[Ack] {
        &self.observed.acks
    }

    /// The longest any record waited from its first send to its acknowledgement.
    pub fn longest_wait(&self) -> Duration {
        self.observed.acks.iter().map(|a| a.acked - a.started).max().unwrap_or_default()
    }

    /// Time from `since` to the first acknowledgement of a write to each of `partitions`.
    pub fn first_acks_after(&self, since: Instant, partitions: &[u32]) -> Vec<(u32, Option<Duration>)> {
        partitions
            .iter()
            .map(|p| {
                let first =
                    self.observed.acks.iter().filter(|a| a.partition == *p && a.acked > since).map(|a| a.acked).min();
                (*p, first.map(|t| t - since))
            })
            .collect()
    }

    /// Panics with a clear message on any broken guarantee.
    pub fn check(&self, max_wait: Duration) {
        let observed = &self.observed;
        assert!(!observed.acks.is_empty(), "the workload acknowledged nothing");
        let missing: Vec<(String, u64)> = observed
            .acks
            .iter()
            .filter(|a| !observed.consumed.get(&a.key).is_some_and(|seqs| seqs.contains(&a.seq)))
            .map(|a| (a.key.clone(), a.seq))
            .collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged records were never consumed, e.g. {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            self.diagnosis
        );
        for (key, seqs) in &observed.consumed {
            // First deliveries must come in sequence order; redeliveries (at-least-once) may repeat older ones.
            let mut next = 0u64;
            for seq in seqs {
                if *seq == next {
                    next += 1;
                } else {
                    assert!(*seq < next, "key {key}: seq {seq} arrived before {next}; order broken in {seqs:?}");
                }
            }
        }
        assert!(observed.rewinds.is_empty(), "committed offsets went backwards: {:?}", observed.rewinds);
        for view in &self.final_offsets {
            for (tp, highest) in &observed.highest_committed {
                let now = view.get(tp).copied().unwrap_or(0);
                assert!(now >= *highest, "{tp}: committed {highest} was seen, the final state says {now}");
            }
        }
        assert!(self.longest_wait() <= max_wait, "a write waited {:?} (limit {max_wait:?})", self.longest_wait());
        let lost = observed.acks.iter().filter(|a| !self.stored.contains_key(&(a.key.clone(), a.seq))).count();
        assert_eq!(lost, 0, "acknowledged records missing from the topic");
        if self.idempotent {
            let twice: Vec<_> = self.stored.iter().filter(|(_, n)| **n > 1).collect();
            assert!(
                twice.is_empty(),
                "idempotent producers' records stored more than once: {:?}",
                &twice[..twice.len().min(10)]
            );
        }
    }

    /// Records the group received more than once (at-least-once delivery: a redelivery after a
    /// failover or rebalance, from the committed offset).
    pub fn delivered_again(&self) -> usize {
        self.observed
            .consumed
            .values()
            .map(|seqs| seqs.len() - seqs.iter().collect::<std::collections::BTreeSet<_>>().len())
            .sum()
    }

    /// Records stored more than once.
    pub fn stored_twice(&self) -> usize {
        self.stored.values().filter(|n| **n > 1).count()
    }
}

/// `endpoint`'s `GET /v1/cluster`.
async fn cluster_json(endpoint: &Endpoint) -> Option<Value> {
    let response = crate::tokens::harness_http(None).get(format!("{}/v1/cluster", endpoint.discovery)).send().await;
    response.ok()?.json().await.ok()
}

/// The brokers (ordinals) that vote in Raft, as `endpoint`'s `GET /v1/cluster` lists them.
pub async fn raft_voters(endpoint: &Endpoint) -> Option<Vec<u32>> {
    let body = cluster_json(endpoint).await?;
    body["raftVoters"].as_array()?.iter().map(|v| v.as_u64().map(|v| v as u32)).collect()
}

/// Waits until `voters` (and only they) vote in Raft as `endpoint` sees it.
pub async fn wait_for_voters(endpoint: &Endpoint, voters: &[u32], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = raft_voters(endpoint).await;
        if now.as_deref() == Some(voters) {
            return;
        }
        assert!(Instant::now() < deadline, "brokers {voters:?} are not the Raft voters within {within:?}: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The cluster as broker `endpoint` sees it: (Raft leader, partition → (leader, owner)).
pub async fn cluster_view(endpoint: &Endpoint) -> Option<(Option<u32>, BTreeMap<u32, (u32, u32)>)> {
    let body = cluster_json(endpoint).await?;
    let raft_leader = body["raftLeader"].as_u64().map(|l| l as u32);
    let partitions = body["partitions"]
        .as_array()?
        .iter()
        .filter_map(|p| {
            let owner = p["replicas"].as_array()?.first()?.as_u64()? as u32;
            Some((p["partition"].as_u64()? as u32, (p["leader"].as_u64()? as u32, owner)))
        })
        .collect();
    Some((raft_leader, partitions))
}
