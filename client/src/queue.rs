//! A worker of a queue group (SPEC §14): it leases records one batch at a time from every
//! broker (each leases from the partitions it leads), and acknowledges, gives back (`nack`)
//! or extends each lease by its `ack_token` through any broker.
//!
//! As the poll flow does, each broker has at most one `next` in flight, kept across calls:
//! `next` returns once one broker answers with records, with the answers that come within
//! 10 ms of it, and a request still waiting at another broker stays in flight (its records
//! come with a later call), so no lease a broker granted is dropped on the way.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::groups::encoded as encode;
use crate::wire::{decimal, json};
use crate::{Brokers, ClientError};

/// A leased record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QueueRecord {
    pub ack_token: String,
    pub topic: String,
    pub partition: u32,
    #[serde(deserialize_with = "decimal")]
    pub offset: u64,
    #[serde(rename = "deliveryCount")]
    pub delivery_count: u32,
    pub value: serde_json::Value,
}

/// What became of one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SettleResult {
    Ok,
    Unknown,
    Expired,
}

#[derive(Deserialize)]
struct NextAnswer {
    data: Vec<QueueRecord>,
}

#[derive(Deserialize)]
struct SettleAnswer {
    results: Vec<TokenResult>,
}

#[derive(Deserialize)]
struct TokenResult {
    result: SettleResult,
}

/// A queue group's settings (`PUT /v1/queue/{group}`); `None` keeps the broker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSettings {
    pub topics: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_wait_ms: Option<u64>,
    /// -1: unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deliver: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
}

/// A broker's answer to a `next`: its place in the list and the records it leased.
type Answer = (usize, Result<Vec<QueueRecord>, ClientError>);

/// Pause before a broker whose `next` failed is asked again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Once one broker answered with records, how long `next` waits for the others' answers (with
/// a backlog they come within milliseconds, and a fuller batch halves the calls per record).
const GATHER: Duration = Duration::from_millis(10);
/// How long past its `wait` a `next` waits for a broker's answer.
const COLLECT_MARGIN: Duration = Duration::from_secs(1);
/// How much longer than its `wait` a broker may take to answer a request.
const ANSWER_MARGIN: Duration = Duration::from_secs(10);

/// A queue group's worker.
///
/// ```no_run
/// # async fn example() -> Result<(), runnel_client::ClientError> {
/// use runnel_client::{Brokers, QueueConsumer};
/// let brokers = Brokers::discover(&reqwest::Client::new(), "localhost", 9250).await?;
/// let mut worker = QueueConsumer::new(brokers, "billing", &["invoices"]);
/// let records = worker.next(100, std::time::Duration::from_secs(5)).await?;
/// let tokens: Vec<String> = records.iter().map(|r| r.ack_token.clone()).collect();
/// worker.ack(&tokens).await?;
/// # Ok(()) }
/// ```
pub struct QueueConsumer {
    brokers: Brokers,
    group: String,
    topics: Vec<String>,
    answers_to: mpsc::UnboundedSender<Answer>,
    answers: mpsc::UnboundedReceiver<Answer>,
    in_flight: Vec<bool>,
    /// A broker whose last `next` failed is skipped until then.
    skip_until: Vec<Option<Instant>>,
    /// Rotates which brokers get the remainder of a batch split between them.
    turn: usize,
    /// Records taken in from the brokers and not returned yet: a `next` cancelled while it
    /// gathers answers leaves them here for the next call, not dropped.
    ready: Vec<QueueRecord>,
}

impl QueueConsumer {
    /// A worker of `group` over `topics` (the group is created with them on first use; none:
    /// the group's own).
    pub fn new(brokers: Brokers, group: &str, topics: &[&str]) -> QueueConsumer {
        let (answers_to, answers) = mpsc::unbounded_channel();
        let count = brokers.hosts.len();
        QueueConsumer {
            brokers,
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            answers_to,
            answers,
            in_flight: vec![false; count],
            skip_until: vec![None; count],
            turn: 0,
            ready: Vec::new(),
        }
    }

    /// Leases up to `batch_size` records (split between the brokers), waiting up to `wait`
    /// for some. Empty when none came; an error only when every broker failed.
    pub async fn next(&mut self, batch_size: usize, wait: Duration) -> Result<Vec<QueueRecord>, ClientError> {
        let count = self.brokers.hosts.len();
        if count == 0 {
            return Err(ClientError::NoBrokers);
        }
        self.turn = self.turn.wrapping_add(1);
        let now = Instant::now();
        for index in 0..count {
            let share = batch_size / count + usize::from((index + self.turn) % count < batch_size % count);
            let skipped = self.skip_until[index].is_some_and(|until| until > now);
            if share == 0 || self.in_flight[index] || skipped {
                continue;
            }
            let request = self.next_request(index, share, wait)?;
            self.in_flight[index] = true;
            let answers = self.answers_to.clone();
            tokio::spawn(async move {
                let _ = answers.send((index, request.await));
            });
        }
        if self.ready.is_empty() && self.in_flight.iter().all(|f| !f) {
            // Every broker failed a moment ago: wait for the first to be asked again (or the
            // wait), so a worker's loop does not spin.
            let retry = self.skip_until.iter().flatten().min().copied().unwrap_or(now);
            tokio::time::sleep(retry.saturating_duration_since(now).min(wait)).await;
            return Ok(Vec::new());
        }
        // A broker that does not answer by the end of the wait is left in flight: its answer
        // comes with a later call.
        let deadline = tokio::time::Instant::now() + wait + COLLECT_MARGIN;
        let (mut answered, mut last_error) = (false, None);
        while self.ready.is_empty() && self.in_flight.iter().any(|f| *f) {
            let Ok(Some(answer)) = tokio::time::timeout_at(deadline, self.answers.recv()).await else { break };
            answered |= self.take(answer, &mut last_error);
        }
        if !self.ready.is_empty() {
            let gathered = tokio::time::Instant::now() + GATHER;
            while self.in_flight.iter().any(|f| *f) {
                let Ok(Some(answer)) = tokio::time::timeout_at(gathered, self.answers.recv()).await else { break };
                self.take(answer, &mut last_error);
            }
        }
        match last_error {
            Some(e) if !answered && self.ready.is_empty() && self.in_flight.iter().all(|f| !f) => Err(e),
            _ => Ok(std::mem::take(&mut self.ready)),
        }
    }

    /// Takes a broker's answer in: whether it was one (not an error).
    fn take(&mut self, (index, answer): Answer, last_error: &mut Option<ClientError>) -> bool {
        self.in_flight[index] = false;
        match answer {
            Ok(leased) => {
                self.skip_until[index] = None;
                self.ready.extend(leased);
                true
            }
            Err(e) => {
                self.skip_until[index] = Some(Instant::now() + RETRY_PAUSE);
                *last_error = Some(e);
                false
            }
        }
    }

    fn next_request(
        &self,
        index: usize,
        batch_size: usize,
        wait: Duration,
    ) -> Result<impl std::future::Future<Output = Result<Vec<QueueRecord>, ClientError>> + Send + 'static, ClientError>
    {
        let url = self.brokers.consumer_url(index, &format!("/v1/queue/{}/next", encode(&self.group)))?;
        let mut query: Vec<(&str, String)> = self.topics.iter().map(|t| ("topic", t.clone())).collect();
        query.push(("batch_size", batch_size.to_string()));
        query.push(("wait", wait.as_millis().to_string()));
        let request = self.brokers.access.http().post(&url).query(&query).timeout(wait + ANSWER_MARGIN);
        Ok(async move {
            let response =
                request.send().await.map_err(|source| ClientError::Transport { url: url.clone(), source })?;
            let status = response.status();
            if status == reqwest::StatusCode::NO_CONTENT {
                return Ok(Vec::new());
            }
            if !status.is_success() {
                return Err(ClientError::Status { url, status, body: response.text().await.unwrap_or_default() });
            }
            let answer: NextAnswer = json(response, &url).await?;
            Ok(answer.data)
        })
    }

    /// Acknowledges the tokens' records: they are not leased again. One result per token.
    pub async fn ack(&self, tokens: &[String]) -> Result<Vec<SettleResult>, ClientError> {
        self.settle("ack", tokens, None).await
    }

    /// Gives the tokens' records back: leased again after `delay`.
    pub async fn nack(&self, tokens: &[String], delay: Duration) -> Result<Vec<SettleResult>, ClientError> {
        self.settle("nack", tokens, Some(delay)).await
    }

    /// Extends the tokens' leases by the group's `ackWaitMs` from now.
    pub async fn extend(&self, tokens: &[String]) -> Result<Vec<SettleResult>, ClientError> {
        self.settle("extend", tokens, None).await
    }

    async fn settle(
        &self,
        op: &str,
        tokens: &[String],
        delay: Option<Duration>,
    ) -> Result<Vec<SettleResult>, ClientError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = serde_json::json!({ "ack_tokens": tokens });
        if let Some(delay) = delay {
            body["delayMs"] = (delay.as_millis() as u64).into();
        }
        let path = format!("/v1/queue/{}/{op}", encode(&self.group));
        let http = self.brokers.access.http();
        let response = self.brokers.on_any(|url| http.post(url).json(&body), &path).await?;
        let answer: SettleAnswer = json(response, &path).await?;
        Ok(answer.results.into_iter().map(|r| r.result).collect())
    }

    /// Creates the group with `settings`, or changes it: the group as the cluster has it now.
    pub async fn configure(&self, settings: &QueueSettings) -> Result<serde_json::Value, ClientError> {
        let path = format!("/v1/queue/{}", encode(&self.group));
        let http = self.brokers.access.http();
        let response = self.brokers.on_any(|url| http.put(url).json(settings), &path).await?;
        json(response, &path).await
    }

    /// The group's settings and, per partition, what is acknowledged.
    pub async fn describe(&self) -> Result<serde_json::Value, ClientError> {
        let path = format!("/v1/queue/{}", encode(&self.group));
        let http = self.brokers.access.http();
        json(self.brokers.on_any(|url| http.get(url), &path).await?, &path).await
    }

    /// The worker loop: leases batches of up to `batch_size` and calls `handle` on each record;
    /// a record it handled (`Ok`) is acknowledged, one it failed (`Err`) given back at once.
    /// Returns when `handle` asks to stop (`Ok(false)`), or with the error that stopped it.
    pub async fn run<F, Fut>(&mut self, batch_size: usize, mut handle: F) -> Result<(), ClientError>
    where
        F: FnMut(QueueRecord) -> Fut,
        Fut: std::future::Future<Output = Result<bool, ()>>,
    {
        loop {
            let records = self.next(batch_size, Duration::from_secs(5)).await?;
            let (mut done, mut failed) = (Vec::new(), Vec::new());
            let mut go_on = true;
            for record in records {
                let token = record.ack_token.clone();
                match handle(record).await {
                    Ok(more) => {
                        done.push(token);
                        go_on &= more;
                    }
                    Err(()) => failed.push(token),
                }
            }
            self.ack(&done).await?;
            self.nack(&failed, Duration::ZERO).await?;
            if !go_on {
                return Ok(());
            }
        }
    }
}
