//! A producer that batches records per (topic, key) for a short linger and sends each batch
//! as one NDJSON request, retrying 503s, 507s and connection errors on the next broker. It is
//! idempotent by default (SPEC §12: see `idempotence`), so a retry never stores a batch twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::idempotence::{Idempotence, Lane};
use crate::{Brokers, ClientError};

/// Where a batch was stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Produced {
    pub topic: String,
    pub partition: u32,
    /// Offset of the first record; record i got `start_offset + i` (-1 for a repeat of a
    /// request so old that the broker no longer knows its offsets).
    #[serde(deserialize_with = "offset_or_unknown")]
    pub start_offset: i64,
    pub count: u32,
    /// The batch had been stored before (a retry of an idempotent request): nothing new was.
    #[serde(default)]
    pub duplicate: bool,
}

fn offset_or_unknown<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(text) => text.parse().map_err(serde::de::Error::custom),
        None => Ok(-1),
    }
}

/// How a [`Producer`] sends.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a batch waits for more records (5 ms).
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes (512 KiB).
    pub max_batch_bytes: usize,
    /// Tries per batch, on the brokers in turn (6).
    pub attempts: u32,
    /// Idempotent (the default): every batch carries `Producer-Id`, `Producer-Epoch` and
    /// `Producer-Seq`, so however often it is retried it is stored once.
    pub idempotent: bool,
    /// The `Producer-Id` (a random one when `None`). Two producers started with one id fence
    /// each other: the one started later wins (its epoch is its start time).
    pub producer_id: Option<String>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::from_millis(5),
            max_batch_bytes: 512 * 1024,
            attempts: 6,
            idempotent: true,
            producer_id: None,
        }
    }
}

type Waiter = oneshot::Sender<Result<Produced, Arc<ClientError>>>;

#[derive(Default)]
struct Pending {
    records: Vec<Bytes>,
    bytes: usize,
    waiters: Vec<Waiter>,
}

struct Inner {
    http: reqwest::Client,
    brokers: Brokers,
    linger: Duration,
    max_batch_bytes: usize,
    attempts: u32,
    next_broker: AtomicUsize,
    pending: Mutex<HashMap<(String, Option<String>), Pending>>,
    idempotence: Option<Idempotence>,
}

/// Sends records to any broker; cheap to clone.
///
/// ```no_run
/// # async fn example() -> Result<(), runnel_client::ClientError> {
/// use runnel_client::{Brokers, Producer};
/// let producer = Producer::new(Brokers::fixed(["localhost"]));
/// producer.send("orders", Some("customer-7"), r#"{"id":1}"#).await?;
/// let stored = producer.send_batch("orders", None, vec!["{\"id\":2}".into(), "{\"id\":3}".into()]).await?;
/// println!("partition {} offsets from {}", stored.partition, stored.start_offset);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// An idempotent producer with a 5 ms linger, 512 KiB batches and 6 attempts per batch.
    pub fn new(brokers: Brokers) -> Producer {
        Producer::with_config(brokers, ProducerConfig::default())
    }

    pub fn with_config(brokers: Brokers, config: ProducerConfig) -> Producer {
        Producer {
            inner: Arc::new(Inner {
                http: brokers.access.http().clone(),
                brokers,
                linger: config.linger,
                max_batch_bytes: config.max_batch_bytes,
                attempts: config.attempts.max(1),
                next_broker: AtomicUsize::new(0),
                pending: Mutex::new(HashMap::new()),
                idempotence: config.idempotent.then(|| Idempotence::new(config.producer_id)),
            }),
        }
    }

    /// The `Producer-Id` its requests carry (None when not idempotent).
    pub fn producer_id(&self) -> Option<&str> {
        self.inner.idempotence.as_ref().map(|i| i.id.as_str())
    }

    /// Queues one record; resolves once its batch is acknowledged (durable on the cluster).
    pub async fn send(&self, topic: &str, key: Option<&str>, value: impl Into<Bytes>) -> Result<Produced, ClientError> {
        let value = value.into();
        if value.contains(&b'\n') {
            return Err(ClientError::NewlineInRecord);
        }
        let (waiter, answer) = oneshot::channel();
        let slot = (topic.to_string(), key.map(str::to_string));
        let (first, full) = {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            let batch = pending.entry(slot.clone()).or_default();
            batch.bytes += value.len() + 1;
            batch.records.push(value);
            batch.waiters.push(waiter);
            (batch.records.len() == 1, batch.bytes >= self.inner.max_batch_bytes)
        };
        if full {
            self.flush(slot.clone()).await;
        } else if first {
            let producer = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(producer.inner.linger).await;
                producer.flush(slot).await;
            });
        }
        match answer.await {
            Ok(result) => result.map_err(ClientError::Batch),
            Err(_) => Err(ClientError::Dropped),
        }
    }

    async fn flush(&self, slot: (String, Option<String>)) {
        let batch = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&slot);
        let Some(batch) = batch else { return };
        let result = self.send_batch(&slot.0, slot.1.as_deref(), batch.records).await.map_err(Arc::new);
        for waiter in batch.waiters {
            let _ = waiter.send(result.clone());
        }
    }

    /// Sends `records` now as one NDJSON request (stored together, in order).
    pub async fn send_batch(
        &self,
        topic: &str,
        key: Option<&str>,
        records: Vec<Bytes>,
    ) -> Result<Produced, ClientError> {
        let mut body = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for record in &records {
            if record.contains(&b'\n') {
                return Err(ClientError::NewlineInRecord);
            }
            body.extend_from_slice(record);
            body.push(b'\n');
        }
        let body = Bytes::from(body);
        let Some(idempotence) = &self.inner.idempotence else {
            return self.post_until_stored(topic, key, body, (None, None)).await;
        };
        let route = idempotence.route(&self.inner.http, &self.inner.brokers, (topic, key)).await?;
        let partition = route.partition;
        let lane = idempotence.lane(topic, partition);
        // Held through the retries: the partition's requests reach it in sequence order.
        let mut lane = lane.lock().await;
        let stamp = (idempotence.id.as_str(), *lane);
        let leader = route.leader.and_then(|ordinal| self.inner.brokers.index_of_ordinal(ordinal));
        let sent = self.post_until_stored(topic, key, body, (Some(stamp), leader)).await;
        match &sent {
            Ok(produced) if produced.partition == partition => lane.next += 1,
            Ok(produced) => {
                // Stored elsewhere than predicted: the ring changed. That partition's lane
                // starts a new epoch (the broker now holds this request's stamp there).
                drop(lane);
                idempotence.forget_layout();
                let other = idempotence.lane(topic, produced.partition);
                let mut other = other.lock().await;
                *other = Lane { epoch: other.epoch.max(stamp.1.epoch) + 1, next: 0 };
            }
            Err(e) if e.may_have_stored() => {
                *lane = Lane { epoch: lane.epoch + 1, next: 0 };
                idempotence.forget_layout();
            }
            // Refused: nothing was stored, the sequence number is still free.
            Err(_) => {}
        }
        sent
    }

    /// Sends `body` to the brokers in turn (first to `leader`, the place in the list of the
    /// partition's leader, when known) until one stores it, retrying what is retriable.
    async fn post_until_stored(
        &self,
        topic: &str,
        key: Option<&str>,
        body: Bytes,
        (stamp, leader): (Option<(&str, Lane)>, Option<usize>),
    ) -> Result<Produced, ClientError> {
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let broker = match leader {
                Some(leader) if attempt == 1 => leader,
                _ => self.inner.next_broker.fetch_add(1, Ordering::Relaxed),
            };
            match self.post(broker, topic, key, body.clone(), stamp).await {
                Ok(produced) => return Ok(produced),
                Err(e) if e.is_retryable() && attempt < self.inner.attempts => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) if e.is_retryable() => {
                    return Err(ClientError::RetriesExhausted { attempts: attempt, last: Box::new(e) })
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn post(
        &self,
        broker: usize,
        topic: &str,
        key: Option<&str>,
        body: Bytes,
        stamp: Option<(&str, Lane)>,
    ) -> Result<Produced, ClientError> {
        let url = self.inner.brokers.producer_url(broker, &format!("/v1/topic/{topic}/messages"))?;
        let mut request = self
            .inner
            .http
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .header("accept", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.query(&[("partitionKey", key)]);
        }
        if let Some((id, lane)) = stamp {
            request = request
                .header("producer-id", id)
                .header("producer-epoch", lane.epoch)
                .header("producer-seq", lane.next);
        }
        let response = request.send().await.map_err(|source| ClientError::Transport { url: url.clone(), source })?;
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Status { url, status, body: response.text().await.unwrap_or_default() });
        }
        response.json().await.map_err(|e| ClientError::InvalidResponse { url, reason: e.to_string() })
    }
}
