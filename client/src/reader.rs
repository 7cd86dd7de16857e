//! Reads by position with no group (SPEC §10): a page of a partition from an offset, its
//! earliest or latest record or a time, a topic's partitions and their bounds, and a live
//! follow of a partition over Server-Sent Events that resumes on another broker when its
//! stream ends (a leadership move, a broker stopping) or its connection drops, from the next
//! offset, so nothing is skipped or repeated.

use std::time::Duration;

use futures_util::Stream;
use serde::Deserialize;

use crate::events::EventReader;
use crate::wire::{decimal, json, optional_decimal};
use crate::{Brokers, ClientError};

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Offset(u64),
    Earliest,
    Latest,
    /// The first record appended at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

impl Position {
    fn query(self) -> (&'static str, String) {
        match self {
            Position::Offset(n) => ("offset", n.to_string()),
            Position::Earliest => ("offset", "earliest".into()),
            Position::Latest => ("offset", "latest".into()),
            Position::Timestamp(ms) => ("timestamp", ms.to_string()),
        }
    }
}

/// A record read by position.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PositionedRecord {
    pub partition: u32,
    #[serde(deserialize_with = "decimal")]
    pub offset: u64,
    /// The broker's append time, ms since the Unix epoch.
    pub timestamp: i64,
    pub value: serde_json::Value,
}

/// One read: the records, where the next read starts, and the partition's readable end.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub records: Vec<PositionedRecord>,
    #[serde(deserialize_with = "decimal")]
    pub next_offset: u64,
    #[serde(deserialize_with = "decimal")]
    pub end: u64,
    pub up_to_date: bool,
}

/// A partition of a topic, as its leader describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct PartitionView {
    pub partition: u32,
    pub generation: u32,
    pub leader: u32,
    /// `None` when its leader did not answer.
    #[serde(deserialize_with = "optional_decimal")]
    pub start: Option<u64>,
    #[serde(deserialize_with = "optional_decimal")]
    pub end: Option<u64>,
}

#[derive(Deserialize)]
struct TopicView {
    partitions: Vec<PartitionView>,
}

/// Reads partitions by position, from any broker.
#[derive(Clone)]
pub struct Reader {
    http: reqwest::Client,
    brokers: Brokers,
}

impl Reader {
    pub fn new(brokers: Brokers) -> Reader {
        Reader { http: brokers.access.http().clone(), brokers }
    }

    /// Every partition of `topic` with its bounds.
    pub async fn partitions(&self, topic: &str) -> Result<Vec<PartitionView>, ClientError> {
        let path = format!("/v1/topic/{topic}");
        let response = self.brokers.on_any(|url| self.http.get(url), &path).await?;
        Ok(json::<TopicView>(response, &path).await?.partitions)
    }

    /// Up to `limit` records of `partition` from `from`; with `wait`, a read at the end waits
    /// that long for the next record.
    pub async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: Position,
        limit: usize,
        wait: Duration,
    ) -> Result<Page, ClientError> {
        let path = format!("/v1/topic/{topic}/records");
        let query = [
            ("partition", partition.to_string()),
            from.query(),
            ("limit", limit.to_string()),
            ("wait", wait.as_millis().to_string()),
        ];
        let timeout = wait + Duration::from_secs(10);
        let response = self.brokers.on_any(|url| self.http.get(url).query(&query).timeout(timeout), &path).await?;
        json(response, &path).await
    }

    /// The records of `partition` from `from` on, as they are appended, for ever. The stream
    /// moves to another broker when one ends it or goes away; it stops at an error a broker
    /// answers that asking again would not change (say, an offset before the retained start).
    pub fn follow(
        &self,
        topic: &str,
        partition: u32,
        from: Position,
    ) -> impl Stream<Item = Result<PositionedRecord, ClientError>> + use<> {
        let state = Follow {
            reader: self.clone(),
            topic: topic.to_string(),
            partition,
            from,
            next: None,
            events: None,
            failed: false,
        };
        futures_util::stream::unfold(state, |mut state| async move {
            if state.failed {
                return None;
            }
            let item = state.next_record().await;
            state.failed = item.is_err();
            Some((item, state))
        })
    }
}

struct Follow {
    reader: Reader,
    topic: String,
    partition: u32,
    from: Position,
    /// The next offset, once a record arrived (what `Last-Event-ID` says on a reconnect).
    next: Option<u64>,
    events: Option<EventReader>,
    /// An error ended the stream.
    failed: bool,
}

/// Longer than a broker's heartbeat interval: a stream this silent has gone away.
const SILENT_FOR: Duration = Duration::from_secs(30);

impl Follow {
    async fn next_record(&mut self) -> Result<PositionedRecord, ClientError> {
        loop {
            let events = match self.events.as_mut() {
                Some(events) => events,
                None => {
                    let events = self.subscribe().await?;
                    self.events.insert(events)
                }
            };
            let Some(event) = events.next(SILENT_FOR).await else {
                self.move_on();
                continue;
            };
            // Every event says where the stream stands, a heartbeat too.
            if let Some(id) = event.id.as_deref().and_then(|id| id.parse().ok()) {
                self.next = Some(id);
            }
            let Some(data) = event.data else { continue };
            let body = || serde_json::from_str::<serde_json::Value>(&data).unwrap_or_default();
            match event.event.as_deref() {
                Some("end") => {
                    if let Some(next) = body()["nextOffset"].as_str().and_then(|n| n.parse().ok()) {
                        self.next = Some(next);
                    }
                    self.move_on();
                }
                Some("error") if body()["retriable"] == true => {
                    self.move_on();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Some("error") => return Err(ClientError::InvalidResponse { url: self.topic.clone(), reason: data }),
                _ => {
                    return serde_json::from_str(&data)
                        .map_err(|e| ClientError::InvalidResponse { url: self.topic.clone(), reason: e.to_string() });
                }
            }
        }
    }

    /// The stream ended or went silent: the next one is asked for (of any broker that answers).
    fn move_on(&mut self) {
        self.events = None;
    }

    async fn subscribe(&mut self) -> Result<EventReader, ClientError> {
        let path = format!("/v1/topic/{}/records", self.topic);
        let query = [("partition", self.partition.to_string()), self.from.query()];
        let next = self.next;
        let response = self
            .reader
            .brokers
            .on_any(
                |url| {
                    let request = self.reader.http.get(url).query(&query).header("accept", "text/event-stream");
                    match next {
                        Some(next) => request.header("last-event-id", next.to_string()),
                        None => request,
                    }
                },
                &path,
            )
            .await?;
        Ok(EventReader::new(response))
    }
}
