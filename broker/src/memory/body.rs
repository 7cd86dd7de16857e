//! Reading a request body under a size limit, a deadline and a [`Budget`].
//!
//! The first [`BODY_LOOKAHEAD`] bytes are read before anything is reserved: they count in the
//! connection's own allowance ([`super::CONNECTION_BYTES`]), so a body that fits there (most
//! produces) never waits for memory, and a client that declares a large body and then sends
//! nothing holds nothing. Past the lookahead the request reserves its whole expected size (its
//! `Content-Length`, else the limit) at once: every request holding memory can finish, so
//! requests never deadlock holding parts of the budget each.

use std::time::Duration;

use axum::body::{Body, Bytes};
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{Budget, MemoryBusy, Reservation, BODY_LOOKAHEAD};

/// How much of an over-size body is read and thrown away before answering 413, so that a
/// client still sending gets the answer instead of a reset connection.
pub const DRAIN_LIMIT: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive within {} ms", timeout.as_millis())]
    TimedOut { timeout: Duration },
    #[error("could not read the request body: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Busy(#[from] MemoryBusy),
}

/// What a body may be and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// Most bytes a body may have.
    pub limit: usize,
    /// The whole body must arrive within this (time spent waiting for memory not counted).
    pub timeout: Duration,
    /// Longest wait for memory before the request is refused with [`BodyError::Busy`].
    pub memory_wait: Duration,
}

/// A whole body and the memory it holds (released when this drops).
pub struct HeldBody {
    pub bytes: Bytes,
    pub reservation: Reservation,
}

/// A request's `Content-Length`, if it has a valid one.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Reads all of `body`; `declared` is its `Content-Length`, if it has one.
pub async fn read_body(
    mut body: Body,
    declared: Option<usize>,
    rules: BodyRules,
    budget: &Budget,
) -> Result<HeldBody, BodyError> {
    let limit = rules.limit;
    if declared.is_some_and(|len| len > limit + DRAIN_LIMIT) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut deadline = Instant::now() + rules.timeout;
    let mut collected = Collected::default();
    let mut size = 0usize;
    let mut reservation: Option<Reservation> = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(BodyError::TimedOut { timeout: rules.timeout }),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|e| BodyError::Unreadable(e.to_string()))?,
        };
        let Ok(data) = frame.into_data() else { continue };
        size += data.len();
        if size > limit {
            if size > limit + DRAIN_LIMIT {
                break;
            }
            collected = Collected::default();
            continue;
        }
        // Until the body has memory of its own, it grows within the connection's allowance.
        let room = if reservation.is_some() { declared.unwrap_or(0).min(limit) } else { BODY_LOOKAHEAD };
        collected.push(data, room);
        if reservation.is_none() && size > BODY_LOOKAHEAD {
            let expected = declared.unwrap_or(limit).clamp(size, limit);
            let asked = Instant::now();
            reservation = Some(budget.reserve(expected, rules.memory_wait).await?);
            deadline += asked.elapsed();
            collected.make_room(declared.unwrap_or(0).min(limit));
        }
    }
    if size > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(HeldBody { bytes: collected.into_bytes(), reservation: reservation.unwrap_or_else(Reservation::none) })
}

/// A body as it arrives: one frame is kept as it came (no copy); from the second on, frames
/// are copied once into one buffer of the expected size, so a body never costs twice its
/// size (as gathering the frames and joining them at the end would).
#[derive(Default)]
enum Collected {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Collected {
    /// Adds a frame; a buffer made for it has room for `room` bytes in all.
    fn push(&mut self, data: Bytes, room: usize) {
        *self = match std::mem::take(self) {
            Collected::Empty => Collected::One(data),
            Collected::One(first) => {
                let mut all = BytesMut::with_capacity(room.max(first.len() + data.len()));
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                Collected::Many(all)
            }
            Collected::Many(mut all) => {
                all.extend_from_slice(&data);
                Collected::Many(all)
            }
        }
    }

    /// Room for `total` bytes in all, once they are paid for.
    fn make_room(&mut self, total: usize) {
        if let Collected::Many(all) = self {
            all.reserve(total.saturating_sub(all.len()));
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Collected::Empty => Bytes::new(),
            Collected::One(bytes) => bytes,
            Collected::Many(all) => all.freeze(),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{stream, StreamExt};

    use super::*;

    fn rules(limit: usize) -> BodyRules {
        BodyRules { limit, timeout: Duration::from_secs(5), memory_wait: Duration::from_secs(1) }
    }

    fn chunked(parts: Vec<Vec<u8>>) -> Body {
        Body::from_stream(stream::iter(parts.into_iter().map(|p| Ok::<_, std::io::Error>(Bytes::from(p)))))
    }

    #[tokio::test]
    async fn a_body_within_the_lookahead_reserves_nothing() {
        let budget = Budget::new("produce", 1);
        let held = read_body(Body::from(vec![1u8; BODY_LOOKAHEAD]), None, rules(1 << 20), &budget).await.expect("read");
        assert_eq!((held.bytes.len(), held.reservation.bytes()), (BODY_LOOKAHEAD, 0));
    }

    #[tokio::test]
    async fn a_larger_body_reserves_its_declared_size_until_dropped() {
        let budget = Budget::new("produce", 1 << 20);
        let parts = vec![vec![7u8; BODY_LOOKAHEAD], vec![7u8; 100], vec![7u8; 100]];
        let declared = BODY_LOOKAHEAD + 200;
        let held = read_body(chunked(parts), Some(declared), rules(1 << 20), &budget).await.expect("read");
        assert_eq!(held.bytes.len(), declared);
        assert!(held.bytes[..BODY_LOOKAHEAD].iter().all(|b| *b == 7) && held.bytes[declared - 1] == 7);
        assert_eq!(budget.in_use(), declared);
        drop(held);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_a_large_body_but_not_a_small_one() {
        let budget = Budget::new("produce", 1 << 20);
        let _all = budget.try_reserve(1 << 20).expect("free");
        let big = chunked(vec![vec![0u8; BODY_LOOKAHEAD + 1]]);
        assert!(matches!(read_body(big, None, rules(1 << 20), &budget).await, Err(BodyError::Busy(_))));
        assert!(read_body(Body::from("small"), None, rules(1 << 20), &budget).await.is_ok());
    }

    #[tokio::test]
    async fn an_over_size_body_is_refused() {
        let budget = Budget::new("produce", 1 << 20);
        let parts = vec![vec![0u8; 600], vec![0u8; 600]];
        let err = read_body(chunked(parts), None, rules(1000), &budget).await.err();
        assert!(matches!(err, Some(BodyError::TooLarge { limit: 1000 })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_times_out_and_holds_nothing() {
        let budget = Budget::new("produce", 1 << 20);
        let stalled = Body::from_stream(
            stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"10 bytes..")) }).chain(stream::pending()),
        );
        let err = read_body(stalled, Some(1 << 20), rules(1 << 20), &budget).await.err();
        assert!(matches!(err, Some(BodyError::TimedOut { .. })), "{err:?}");
        assert_eq!(budget.in_use(), 0);
    }
}
