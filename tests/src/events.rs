//! A Server-Sent Events reader for tests: the events of a streaming response, one at a time.

use std::time::Duration;

use futures_util::StreamExt;

/// One SSE event (or a comment line, such as a heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    /// A comment (`: …`), the text after the colon.
    pub comment: Option<String>,
}

pub struct EventReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> EventReader {
        EventReader { body: response.bytes_stream().boxed(), buffer: String::new() }
    }

    /// The next event or comment within `within`; None when the stream ended (or timed out).
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..at + 2).collect();
                let mut event = Event::default();
                for line in raw.lines() {
                    match line.split_once(':') {
                        Some(("", comment)) => event.comment = Some(comment.trim().to_string()),
                        Some(("id", v)) => event.id = Some(v.trim().to_string()),
                        Some(("event", v)) => event.event = Some(v.trim().to_string()),
                        Some(("data", v)) => event.data = Some(v.trim_start().to_string()),
                        _ => {}
                    }
                }
                if event == Event::default() {
                    continue;
                }
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event that is not a comment.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await?;
            if event.comment.is_none() || event.data.is_some() {
                return Some(event);
            }
        }
    }
}
