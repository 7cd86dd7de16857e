//! A producer that batches records per (topic, key) for a short linger and sends each batch
//! as one NDJSON request, retrying 503s, 507s and connection errors on the next broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::{Brokers, ClientError};

/// Where a batch was stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Produced {
    pub topic: String,
    pub partition: u32,
    /// Offset of the first record; record i got `start_offset + i`.
    #[serde(deserialize_with = "crate::poll_chunk::decimal_string")]
    pub start_offset: i64,
    pub count: u32,
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
    /// A producer with a 5 ms linger, 512 KiB batches and 6 attempts per batch.
    pub fn new(brokers: Brokers) -> Producer {
        Producer::with_options(brokers, Duration::from_millis(5), 512 * 1024, 6)
    }

    pub fn with_options(brokers: Brokers, linger: Duration, max_batch_bytes: usize, attempts: u32) -> Producer {
        Producer {
            inner: Arc::new(Inner {
                http: reqwest::Client::new(),
                brokers,
                linger,
                max_batch_bytes,
                attempts: attempts.max(1),
                next_broker: AtomicUsize::new(0),
                pending: Mutex::new(HashMap::new()),
            }),
        }
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
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let broker = self.inner.next_broker.fetch_add(1, Ordering::Relaxed);
            match self.post(broker, topic, key, body.clone()).await {
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

    async fn post(&self, broker: usize, topic: &str, key: Option<&str>, body: Bytes) -> Result<Produced, ClientError> {
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
        let response = request.send().await.map_err(|source| ClientError::Transport { url: url.clone(), source })?;
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Status { url, status, body: response.text().await.unwrap_or_default() });
        }
        response.json().await.map_err(|e| ClientError::InvalidResponse { url, reason: e.to_string() })
    }
}
