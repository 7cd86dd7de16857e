//! A consumer that follows SPEC §4 and §10: register once, long-poll every broker
//! concurrently (`wait`), honour `204` + `Retry-After` per broker, register again on `409` and
//! carry on, commit, and say goodbye on close.
//!
//! Each broker has at most one poll in flight, kept across calls to [`Consumer::poll`] (never
//! cancelled: a cancelled poll may have moved the broker's read position past records nobody
//! receives). Every poll acknowledges the `Poll-Token` of the last response from that broker
//! that `poll` returned, and commits and goodbyes carry those tokens too, so a broker commits
//! only what the application was given: a response lost on its way is delivered again.

use std::time::{Duration, Instant};

use futures_util::future::select_all;
use futures_util::Stream;
use reqwest::StatusCode;
use tokio::task::JoinHandle;

use crate::{Brokers, ClientError, PollChunk};

/// Where a new group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    #[default]
    Latest,
    Earliest,
    /// The first record appended at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// How long a broker holds a poll waiting for records, by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub id: String,
    pub group: String,
    pub topics: Vec<String>,
    pub start: StartFrom,
    /// How long each broker may hold a poll until records arrive (a long-poll); zero polls
    /// as v1 does, pausing for the broker's `Retry-After` when there is nothing new. A broker
    /// that allows less says so, and the consumer takes its maximum.
    pub wait: Duration,
}

impl ConsumerConfig {
    /// A consumer of `topics` in `group`, from the latest records of a new group, long-polling.
    pub fn new(id: impl Into<String>, group: impl Into<String>, topics: &[&str]) -> ConsumerConfig {
        ConsumerConfig {
            id: id.into(),
            group: group.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            start: StartFrom::Latest,
            wait: DEFAULT_WAIT,
        }
    }
}

/// One record with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: Option<u32>,
    pub offset: i64,
    pub value: serde_json::Value,
}

/// A registered consumer.
///
/// ```no_run
/// # async fn example() -> Result<(), runnel_client::ClientError> {
/// use runnel_client::{Brokers, Consumer, ConsumerConfig, StartFrom};
/// let http = reqwest::Client::new();
/// let brokers = Brokers::discover(&http, "localhost", 9250).await?;
/// let config = ConsumerConfig { start: StartFrom::Earliest, ..ConsumerConfig::new("c1", "g1", &["orders"]) };
/// let mut consumer = Consumer::connect(brokers, config).await?;
/// for record in consumer.poll().await? {
///     println!("{}/{:?}@{}: {}", record.topic, record.partition, record.offset, record.value);
/// }
/// consumer.commit().await?;
/// consumer.close().await?;
/// # Ok(()) }
/// ```
pub struct Consumer {
    http: reqwest::Client,
    brokers: Brokers,
    config: ConsumerConfig,
    /// Per broker, in the order of `brokers.hosts`.
    slots: Vec<Slot>,
    /// When the broker list is next asked again (a resize adds or removes brokers to poll).
    rediscover_at: Instant,
}

/// One broker's side of the consumer.
#[derive(Default)]
struct Slot {
    /// Not before this instant (Retry-After, or a broker that did not answer).
    resume_at: Option<Instant>,
    /// The poll sent and not answered yet.
    in_flight: Option<JoinHandle<BrokerPoll>>,
    /// The token of the last response from this broker that `poll` returned.
    token: Option<String>,
}

/// How often a consumer whose broker list came from a discovery port asks for it again: a
/// broker that joined in a resize is polled from this long after it took partitions at most.
const REDISCOVER_EVERY: Duration = Duration::from_secs(5);

/// What one broker answered to a poll.
enum BrokerPoll {
    Records(Vec<Record>, Option<String>),
    RetryAfter(Duration),
    NotRegistered,
    /// The broker allows waits up to this long only.
    WaitTooLong(Duration),
    /// 401 or 403: the token expired, was revoked or does not cover the registration.
    Refused(ClientError),
    Unreachable,
}

/// One poll, as its task sends it.
struct PollRequest {
    http: reqwest::Client,
    url: String,
    id: String,
    wait: Duration,
    ack: String,
}

/// The `ack` before any response of a broker was returned: the broker then commits nothing of
/// what it sent (a response lost on its way comes again), as a v1 poll would not.
const NO_TOKEN: &str = "none";

impl Consumer {
    /// Registers the consumer (on any broker; the registration holds on all).
    pub async fn connect(brokers: Brokers, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        if brokers.hosts.is_empty() {
            return Err(ClientError::NoBrokers);
        }
        let consumer = Consumer {
            http: brokers.access.http().clone(),
            slots: brokers.hosts.iter().map(|_| Slot::default()).collect(),
            rediscover_at: Instant::now() + REDISCOVER_EVERY,
            brokers,
            config,
        };
        consumer.register().await?;
        Ok(consumer)
    }

    async fn register(&self) -> Result<(), ClientError> {
        let mut query: Vec<(&str, String)> =
            vec![("consumerId", self.config.id.clone()), ("group", self.config.group.clone())];
        query.extend(self.config.topics.iter().map(|t| ("topic", t.clone())));
        match self.config.start {
            StartFrom::Latest => query.push(("onNewGroup", "startFromLatest".into())),
            StartFrom::Earliest => query.push(("onNewGroup", "startFromEarliest".into())),
            StartFrom::Timestamp(ms) => {
                query.push(("onNewGroup", "startFromTimestamp".into()));
                query.push(("timestamp", ms.to_string()));
            }
        }
        self.brokers.on_any(|url| self.http.put(url).query(&query), "/v1/consumer/register").await.map(|_| ())
    }

    /// Sends a poll to every broker that has none in flight and is not in a Retry-After pause,
    /// then waits for the first answer and returns the records of every answer in (possibly
    /// none). A `409` (the registration timed out) registers again.
    pub async fn poll(&mut self) -> Result<Vec<Record>, ClientError> {
        self.follow_resizes().await;
        let now = Instant::now();
        for index in 0..self.slots.len() {
            let due = self.slots[index].resume_at.is_none_or(|at| at <= now);
            if due && self.slots[index].in_flight.is_none() {
                let Ok(url) = self.brokers.consumer_url(index, "/v1/consumer/poll") else { continue };
                let request = PollRequest {
                    http: self.http.clone(),
                    url,
                    id: self.config.id.clone(),
                    wait: self.config.wait,
                    ack: self.slots[index].token.clone().unwrap_or_else(|| NO_TOKEN.to_string()),
                };
                self.slots[index].in_flight = Some(tokio::spawn(request.send()));
            }
        }
        let waiting: Vec<usize> = (0..self.slots.len()).filter(|i| self.slots[*i].in_flight.is_some()).collect();
        let (first, at, _) = {
            let handles: Vec<&mut JoinHandle<BrokerPoll>> =
                self.slots.iter_mut().filter_map(|s| s.in_flight.as_mut()).collect();
            if handles.is_empty() {
                return Ok(Vec::new());
            }
            select_all(handles).await
        };
        // Answered already: the handle is done with.
        self.slots[waiting[at]].in_flight = None;
        let mut answers = vec![(waiting[at], first.unwrap_or(BrokerPoll::Unreachable))];
        for &index in &waiting {
            if let Some(task) = self.slots[index].in_flight.take_if(|task| task.is_finished()) {
                answers.push((index, task.await.unwrap_or(BrokerPoll::Unreachable)));
            }
        }
        let mut records = Vec::new();
        let mut tokens = Vec::new();
        let mut reregister = false;
        let mut refused = None;
        for (index, answer) in answers {
            let slot = &mut self.slots[index];
            slot.resume_at = None;
            match answer {
                BrokerPoll::Records(mut got, token) => {
                    records.append(&mut got);
                    tokens.push((index, token));
                }
                BrokerPoll::RetryAfter(pause) => slot.resume_at = Some(Instant::now() + pause),
                BrokerPoll::NotRegistered => reregister = true,
                BrokerPoll::WaitTooLong(max) => self.config.wait = max,
                BrokerPoll::Unreachable => slot.resume_at = Some(Instant::now() + Duration::from_secs(1)),
                BrokerPoll::Refused(e) => refused = Some(e),
            }
        }
        // Nothing of this round is acknowledged: with a new token, the records come again.
        if let Some(e) = refused {
            return Err(e);
        }
        if reregister {
            self.register().await?;
        }
        // Only records returned are acknowledged: had this call failed or been dropped above,
        // the next polls would ask for them again.
        for (index, token) in tokens {
            self.slots[index].token = token;
        }
        Ok(records)
    }

    /// Takes up the cluster's current broker list when it is due, keeping the state of the
    /// brokers that stay on it.
    async fn follow_resizes(&mut self) {
        if Instant::now() < self.rediscover_at {
            return;
        }
        self.rediscover_at = Instant::now() + REDISCOVER_EVERY;
        let Some(current) = self.brokers.rediscover().await else { return };
        if current.hosts.is_empty() || current.hosts == self.brokers.hosts {
            return;
        }
        let mut old: Vec<(String, Slot)> = self.brokers.hosts.drain(..).zip(self.slots.drain(..)).collect();
        self.slots = current
            .hosts
            .iter()
            .map(|host| old.iter().position(|(h, _)| h == host).map_or_else(Slot::default, |i| old.swap_remove(i).1))
            .collect();
        self.brokers = current;
    }

    /// The time until some broker may be polled again (zero if one may be polled now, or a
    /// poll is in flight).
    pub fn next_poll_in(&self) -> Duration {
        let now = Instant::now();
        let ready = |s: &Slot| s.in_flight.is_some() || s.resume_at.is_none_or(|at| at <= now);
        if self.slots.iter().any(ready) {
            return Duration::ZERO;
        }
        let soonest = self.slots.iter().filter_map(|s| s.resume_at).min().unwrap_or(now);
        soonest.saturating_duration_since(now)
    }

    /// The tokens of the responses `poll` returned, one per broker, which commits carry (and
    /// `none`, so a broker whose responses were all lost commits none of them).
    fn acks(&self) -> Vec<(&'static str, &str)> {
        let tokens = self.slots.iter().filter_map(|s| s.token.as_deref());
        std::iter::once(NO_TOKEN).chain(tokens).map(|t| ("ack", t)).collect()
    }

    /// Commits the positions reached on every broker by what `poll` returned (and waits for
    /// the commit).
    pub async fn commit(&self) -> Result<(), ClientError> {
        let mut query = vec![("consumerId", self.config.id.as_str())];
        query.extend(self.acks());
        self.brokers.on_any(|url| self.http.post(url).query(&query), "/v1/consumer/commit").await.map(|_| ())
    }

    /// Commits what `poll` returned and unregisters; polls in flight are dropped.
    pub async fn close(self) -> Result<(), ClientError> {
        for slot in &self.slots {
            if let Some(task) = &slot.in_flight {
                task.abort();
            }
        }
        let mut query = vec![("consumerId", self.config.id.as_str())];
        query.extend(self.acks());
        self.brokers.on_any(|url| self.http.post(url).query(&query), "/v1/consumer/goodbye").await.map(|_| ())
    }

    /// Records as an endless stream, polling when brokers allow it.
    pub fn into_stream(self) -> impl Stream<Item = Result<Record, ClientError>> {
        futures_util::stream::unfold(
            (self, std::collections::VecDeque::new()),
            |(mut consumer, mut buffer)| async move {
                loop {
                    if let Some(record) = buffer.pop_front() {
                        return Some((Ok(record), (consumer, buffer)));
                    }
                    tokio::time::sleep(consumer.next_poll_in()).await;
                    match consumer.poll().await {
                        Ok(records) => buffer.extend(records),
                        Err(e) => return Some((Err(e), (consumer, buffer))),
                    }
                }
            },
        )
    }
}

impl PollRequest {
    async fn send(self) -> BrokerPoll {
        let mut query = vec![("consumerId", self.id)];
        if !self.wait.is_zero() {
            query.push(("wait", self.wait.as_millis().to_string()));
        }
        query.push(("ack", self.ack));
        let sent = self
            .http
            .post(&self.url)
            .query(&query)
            .header("accept", "application/json")
            .timeout(self.wait + Duration::from_secs(10))
            .send()
            .await;
        let Ok(response) = sent else { return BrokerPoll::Unreachable };
        match response.status() {
            StatusCode::OK => {
                let token = response.headers().get("poll-token").and_then(|v| v.to_str().ok()).map(String::from);
                match response.json::<Vec<PollChunk>>().await {
                    Ok(chunks) => BrokerPoll::Records(chunks.into_iter().flat_map(records_of).collect(), token),
                    Err(_) => BrokerPoll::Unreachable,
                }
            }
            StatusCode::NO_CONTENT => {
                let seconds = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                BrokerPoll::RetryAfter(Duration::from_secs(seconds.min(5)))
            }
            StatusCode::CONFLICT => BrokerPoll::NotRegistered,
            status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                let body = response.text().await.unwrap_or_default();
                BrokerPoll::Refused(ClientError::Status { url: self.url, status, body })
            }
            StatusCode::BAD_REQUEST => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                match body["maxWaitMs"].as_u64() {
                    Some(max) if body["error"] == "wait_too_long" => {
                        BrokerPoll::WaitTooLong(Duration::from_millis(max))
                    }
                    _ => BrokerPoll::Unreachable,
                }
            }
            _ => BrokerPoll::Unreachable,
        }
    }
}

fn records_of(chunk: PollChunk) -> impl Iterator<Item = Record> {
    let PollChunk { topic, partition, start_offset, values, .. } = chunk;
    values.into_iter().enumerate().map(move |(i, value)| Record {
        topic: topic.clone(),
        partition,
        offset: start_offset + i as i64,
        value,
    })
}
