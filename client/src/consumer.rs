//! A consumer that follows SPEC §4: register once, poll every broker concurrently, honour
//! `204` + `Retry-After` per broker, register again on `409` and carry on, commit, and say
//! goodbye on close.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::Stream;
use reqwest::StatusCode;

use crate::{Brokers, ClientError, PollChunk};

/// Where a new group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    #[default]
    Latest,
    Earliest,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub id: String,
    pub group: String,
    pub topics: Vec<String>,
    pub start: StartFrom,
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
/// let config = ConsumerConfig { id: "c1".into(), group: "g1".into(), topics: vec!["orders".into()], start: StartFrom::Earliest };
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
    /// Per broker: not before this instant (Retry-After, or a broker that did not answer).
    resume_at: Vec<Instant>,
    /// When the broker list is next asked again (a resize adds or removes brokers to poll).
    rediscover_at: Instant,
}

/// How often a consumer whose broker list came from a discovery port asks for it again: a
/// broker that joined in a resize is polled from this long after it took partitions at most.
const REDISCOVER_EVERY: Duration = Duration::from_secs(5);

/// What one broker answered to a poll.
enum BrokerPoll {
    Records(Vec<Record>),
    RetryAfter(Duration),
    NotRegistered,
    Unreachable,
}

impl Consumer {
    /// Registers the consumer (on any broker; the registration holds on all).
    pub async fn connect(brokers: Brokers, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        if brokers.hosts.is_empty() {
            return Err(ClientError::NoBrokers);
        }
        let now = Instant::now();
        let consumer = Consumer {
            http: reqwest::Client::new(),
            resume_at: vec![now; brokers.hosts.len()],
            rediscover_at: now + REDISCOVER_EVERY,
            brokers,
            config,
        };
        consumer.register().await?;
        Ok(consumer)
    }

    async fn register(&self) -> Result<(), ClientError> {
        let mut query: Vec<(&str, &str)> = vec![("consumerId", &self.config.id), ("group", &self.config.group)];
        query.extend(self.config.topics.iter().map(|t| ("topic", t.as_str())));
        query.push((
            "onNewGroup",
            match self.config.start {
                StartFrom::Latest => "startFromLatest",
                StartFrom::Earliest => "startFromEarliest",
            },
        ));
        self.on_any_broker(|url| self.http.put(url).query(&query), "/v1/consumer/register").await.map(|_| ())
    }

    /// Sends a request to the brokers in turn until one answers with success; 503 and
    /// connection errors move on to the next broker.
    async fn on_any_broker(
        &self,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let mut last = ClientError::NoBrokers;
        for round in 0..3 {
            for index in 0..self.brokers.hosts.len() {
                let url = self.brokers.consumer_url(index, path)?;
                match request(&url).send().await {
                    Ok(r) if r.status().is_success() => return Ok(r),
                    Ok(r) => {
                        let status = r.status();
                        last = ClientError::Status { url, status, body: r.text().await.unwrap_or_default() };
                        if !last.is_retryable() {
                            return Err(last);
                        }
                    }
                    Err(source) => last = ClientError::Transport { url, source },
                }
            }
            tokio::time::sleep(Duration::from_millis(200 * (round + 1))).await;
        }
        Err(ClientError::RetriesExhausted { attempts: 3 * self.brokers.hosts.len() as u32, last: Box::new(last) })
    }

    /// Polls every broker that is not in a Retry-After pause, concurrently; returns the records
    /// (possibly none). A `409` (the registration timed out) registers again.
    pub async fn poll(&mut self) -> Result<Vec<Record>, ClientError> {
        self.follow_resizes().await;
        let now = Instant::now();
        let due: Vec<usize> = (0..self.brokers.hosts.len()).filter(|i| self.resume_at[*i] <= now).collect();
        let answers = join_all(due.iter().map(|&i| self.poll_broker(i))).await;
        let mut records = Vec::new();
        let mut reregister = false;
        for (index, answer) in due.into_iter().zip(answers) {
            match answer {
                BrokerPoll::Records(mut got) => records.append(&mut got),
                BrokerPoll::RetryAfter(pause) => self.resume_at[index] = Instant::now() + pause,
                BrokerPoll::NotRegistered => reregister = true,
                BrokerPoll::Unreachable => self.resume_at[index] = Instant::now() + Duration::from_secs(1),
            }
        }
        if reregister {
            self.register().await?;
        }
        Ok(records)
    }

    /// Takes up the cluster's current broker list when it is due, keeping the pauses of the
    /// brokers that stay on it.
    async fn follow_resizes(&mut self) {
        if Instant::now() < self.rediscover_at {
            return;
        }
        self.rediscover_at = Instant::now() + REDISCOVER_EVERY;
        let Some(current) = self.brokers.rediscover(&self.http).await else { return };
        if current.hosts.is_empty() || current.hosts == self.brokers.hosts {
            return;
        }
        let now = Instant::now();
        let resume_at = current
            .hosts
            .iter()
            .map(|host| self.brokers.hosts.iter().position(|h| h == host).map_or(now, |i| self.resume_at[i]))
            .collect();
        self.resume_at = resume_at;
        self.brokers = current;
    }

    async fn poll_broker(&self, index: usize) -> BrokerPoll {
        let Ok(url) = self.brokers.consumer_url(index, "/v1/consumer/poll") else { return BrokerPoll::Unreachable };
        let sent = self
            .http
            .post(&url)
            .query(&[("consumerId", &self.config.id)])
            .header("accept", "application/json")
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(response) = sent else { return BrokerPoll::Unreachable };
        match response.status() {
            StatusCode::OK => match response.json::<Vec<PollChunk>>().await {
                Ok(chunks) => BrokerPoll::Records(chunks.into_iter().flat_map(records_of).collect()),
                Err(_) => BrokerPoll::Unreachable,
            },
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
            _ => BrokerPoll::Unreachable,
        }
    }

    /// The time until some broker may be polled again (zero if one may be polled now).
    pub fn next_poll_in(&self) -> Duration {
        let soonest = self.resume_at.iter().min().copied().unwrap_or_else(Instant::now);
        soonest.saturating_duration_since(Instant::now())
    }

    /// Commits the positions reached on every broker (and waits for the commit).
    pub async fn commit(&self) -> Result<(), ClientError> {
        let query = [("consumerId", self.config.id.as_str())];
        self.on_any_broker(|url| self.http.post(url).query(&query), "/v1/consumer/commit").await.map(|_| ())
    }

    /// Commits and unregisters.
    pub async fn close(self) -> Result<(), ClientError> {
        let query = [("consumerId", self.config.id.as_str())];
        self.on_any_broker(|url| self.http.post(url).query(&query), "/v1/consumer/goodbye").await.map(|_| ())
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

fn records_of(chunk: PollChunk) -> impl Iterator<Item = Record> {
    let PollChunk { topic, partition, start_offset, values, .. } = chunk;
    values.into_iter().enumerate().map(move |(i, value)| Record {
        topic: topic.clone(),
        partition,
        offset: start_offset + i as i64,
        value,
    })
}
