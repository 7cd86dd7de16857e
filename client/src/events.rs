//! Server-Sent Events as a broker's live stream sends them (SPEC §10): the events of a
//! streaming response, one at a time.

use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;

/// One SSE event, or a comment line (a heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    /// A comment (`: …`), the text after the colon.
    pub comment: Option<String>,
}

/// Reads the events of an `text/event-stream` response.
pub struct EventReader {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    /// Bytes not yet part of a whole event (a character may be split across chunks).
    buffer: Vec<u8>,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> EventReader {
        EventReader { body: response.bytes_stream().boxed(), buffer: Vec::new() }
    }

    /// The next event or comment within `within`; None when the stream ended, failed or was
    /// silent that long.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buffer.drain(..at + 2).collect();
                let event = parse(&String::from_utf8_lossy(&raw));
                if event != Event::default() {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??.ok()?;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next event that is not a comment.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let event = self.next(deadline.saturating_duration_since(tokio::time::Instant::now())).await?;
            if event.comment.is_none() || event.data.is_some() {
                return Some(event);
            }
        }
    }
}

/// The fields of one event's lines (fields other than id, event, data and comments, such as
/// `retry`, are not kept).
fn parse(raw: &str) -> Event {
    let mut event = Event::default();
    for line in raw.lines() {
        match line.split_once(':') {
            Some(("", comment)) => event.comment = Some(comment.trim().to_string()),
            Some(("id", v)) => event.id = Some(v.trim().to_string()),
            Some(("event", v)) => event.event = Some(v.trim().to_string()),
            Some(("data", v)) => {
                let v = v.strip_prefix(' ').unwrap_or(v);
                // Several data lines make one value, joined by line breaks (the SSE rule).
                event.data = Some(match event.data.take() {
                    Some(before) => format!("{before}\n{v}"),
                    None => v.to_string(),
                });
            }
            _ => {}
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_s_fields_and_a_comment_are_read() {
        let event = parse("id: 5\nevent: end\ndata: {\"a\": 1}\n");
        assert_eq!(event.id.as_deref(), Some("5"));
        assert_eq!(event.event.as_deref(), Some("end"));
        assert_eq!(event.data.as_deref(), Some("{\"a\": 1}"));
        assert_eq!(parse(": heartbeat\n").comment.as_deref(), Some("heartbeat"));
        assert_eq!(parse("retry: 1000\n"), Event::default());
        assert_eq!(parse("data: {\ndata: }\n").data.as_deref(), Some("{\n}"));
    }
}
