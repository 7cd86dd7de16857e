use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use runnel_client::PollChunk;

use crate::BrokerProcess;

/// What a poll returned.
#[derive(Debug)]
pub struct Polled {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub chunks: Vec<PollChunk>,
}

impl Polled {
    /// (topic, partition, offset, value) of every record, in response order.
    pub fn records(&self) -> Vec<(String, u32, i64, serde_json::Value)> {
        self.chunks
            .iter()
            .flat_map(|c| {
                c.values.iter().enumerate().map(move |(i, v)| {
                    (c.topic.clone(), c.partition.unwrap_or(u32::MAX), c.start_offset + i as i64, v.clone())
                })
            })
            .collect()
    }

    /// The response's `Poll-Token`, for the next poll's `ack`.
    pub fn token(&self) -> Option<&str> {
        self.headers.get("poll-token").and_then(|v| v.to_str().ok())
    }

    pub fn retry_after(&self) -> Option<&str> {
        self.headers.get("retry-after").and_then(|v| v.to_str().ok())
    }
}

/// The partition of `topic` that holds records, of its first `partitions` (a test that
/// produced with one key finds that key's partition so), read by position on `broker`.
pub async fn partition_holding(broker: &BrokerProcess, topic: &str, partitions: u32) -> u32 {
    for p in 0..partitions {
        let url = broker.url(9252, &format!("/v1/topic/{topic}/records"));
        let response = reqwest::Client::new().get(url).query(&[("partition", p)]).send().await.expect("read");
        assert_eq!(response.status(), StatusCode::OK, "reading partition {p}");
        let body: serde_json::Value = response.json().await.expect("JSON");
        if !body["records"].as_array().expect("records").is_empty() {
            return p;
        }
    }
    panic!("no partition of {topic} holds records");
}

/// HTTP calls against one broker, as a PolarStreams-style REST client makes them.
pub struct TestClient {
    pub http: reqwest::Client,
    producer: String,
    consumer: String,
}

impl TestClient {
    pub fn new(broker: &BrokerProcess) -> TestClient {
        TestClient {
            http: reqwest::Client::new(),
            producer: broker.url(9251, ""),
            consumer: broker.url(9252, "/v1/consumer"),
        }
    }

    pub fn messages_url(&self, topic: &str) -> String {
        format!("{}/v1/topic/{topic}/messages", self.producer)
    }

    /// POSTs `body` with `content_type`; returns status and body text.
    pub async fn produce(
        &self,
        topic: &str,
        key: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, String) {
        let mut request = self.http.post(self.messages_url(topic)).header("content-type", content_type).body(body);
        if let Some(key) = key {
            request = request.query(&[("partitionKey", key)]);
        }
        let response = request.send().await.expect("produce request");
        (response.status(), response.text().await.expect("produce body"))
    }

    /// Produces one JSON record with `key`, asking for the JSON acknowledgement: its status and
    /// body (`partition`, `offset`…; null when it is not JSON).
    pub async fn produce_keyed(
        &self,
        topic: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let response = self
            .http
            .post(self.messages_url(topic))
            .query(&[("partitionKey", key)])
            .header("accept", "application/json")
            .body(value.to_string())
            .send()
            .await
            .expect("produce");
        let status = response.status();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Produces NDJSON lines and asserts a 200.
    pub async fn produce_lines(&self, topic: &str, key: Option<&str>, lines: &[String]) {
        let (status, body) = self.produce(topic, key, "application/x-ndjson", lines.join("\n")).await;
        assert_eq!(status, StatusCode::OK, "produce failed: {body}");
    }

    pub async fn register(&self, id: &str, group: &str, topics: &[&str], policy: Option<&str>) -> (StatusCode, String) {
        let mut query: Vec<(&str, &str)> = vec![("consumerId", id), ("group", group)];
        query.extend(topics.iter().map(|t| ("topic", *t)));
        if let Some(policy) = policy {
            query.push(("onNewGroup", policy));
        }
        let response =
            self.http.put(format!("{}/register", self.consumer)).query(&query).send().await.expect("register");
        (response.status(), response.text().await.expect("register body"))
    }

    pub async fn poll(&self, id: &str) -> Polled {
        self.poll_with(&[("consumerId", id.to_string())]).await
    }

    /// A long-poll: the broker may hold it up to `wait` for records.
    pub async fn poll_waiting(&self, id: &str, wait: std::time::Duration) -> Polled {
        self.poll_with(&[("consumerId", id.to_string()), ("wait", wait.as_millis().to_string())]).await
    }

    /// A poll that acknowledges the response `token` named (its `Poll-Token` header).
    pub async fn poll_acking(&self, id: &str, token: &str) -> Polled {
        self.poll_with(&[("consumerId", id.to_string()), ("ack", token.to_string())]).await
    }

    async fn poll_with(&self, query: &[(&str, String)]) -> Polled {
        let response = self
            .http
            .post(format!("{}/poll", self.consumer))
            .query(query)
            .header("accept", "application/json")
            .send()
            .await
            .expect("poll");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("poll body");
        let chunks = if status == StatusCode::OK {
            serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("poll body is not valid JSON ({e}): {}", String::from_utf8_lossy(&body)))
        } else {
            Vec::new()
        };
        Polled { status, headers, chunks }
    }

    /// Polls until `count` records arrived (or `attempts` polls ran out); returns them.
    pub async fn poll_until(
        &self,
        id: &str,
        count: usize,
        attempts: usize,
    ) -> Vec<(String, u32, i64, serde_json::Value)> {
        let mut got = Vec::new();
        for _ in 0..attempts {
            let polled = self.poll(id).await;
            assert!(
                polled.status == StatusCode::OK || polled.status == StatusCode::NO_CONTENT,
                "poll got {}",
                polled.status
            );
            got.extend(polled.records());
            if got.len() >= count {
                break;
            }
            if polled.status == StatusCode::NO_CONTENT {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        got
    }

    pub async fn commit(&self, id: &str) -> StatusCode {
        self.http
            .post(format!("{}/commit", self.consumer))
            .query(&[("consumerId", id)])
            .send()
            .await
            .expect("commit")
            .status()
    }

    pub async fn goodbye(&self, id: &str, commit: bool) -> (StatusCode, String) {
        let mut request = self.http.post(format!("{}/goodbye", self.consumer)).query(&[("consumerId", id)]);
        if !commit {
            request = request.query(&[("commit", "false")]);
        }
        let response = request.send().await.expect("goodbye");
        (response.status(), response.text().await.expect("goodbye body"))
    }
}
