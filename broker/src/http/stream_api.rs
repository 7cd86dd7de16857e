//! Live streams on the records URL (SPEC §10): `Accept: text/event-stream` answers Server-Sent
//! Events, one event per record whose `id` is the next offset (`Last-Event-ID` resumes there);
//! a WebSocket upgrade answers one JSON text message per record. Both are driven by
//! [`Follow`]: they read again only once the transport took what was read before, so a slow
//! reader slows its own stream, and they end cleanly (an `end` event, a close frame naming the
//! next offset) when the partition's leadership moves or the broker shuts down.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::records_api::write_record_json;
use super::SharedState;
use crate::auth::Access;
use crate::consensus::RaftNode;
use crate::error::ApiError;
use crate::reading::{Follow, ReadRequest, Step};

/// A place among the open streams (`RUNNEL_MAX_STREAMS`).
fn stream_permit(app: &SharedState) -> Result<OwnedSemaphorePermit, ApiError> {
    app.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::Unavailable("the broker serves as many live streams as RUNNEL_MAX_STREAMS allows".into())
    })
}

/// What an error that ends a stream says: as an error response's body (with whether asking
/// again may succeed).
fn error_json(e: &ApiError) -> String {
    serde_json::json!({"error": e.code(), "message": e.to_string(), "retriable": e.retriable()}).to_string()
}

/// The JSON of why a stream ended and where to resume.
fn end_json(reason: &str, next: Option<u64>) -> String {
    let next = next.map_or_else(|| "null".to_string(), |n| format!("\"{n}\""));
    format!("{{\"reason\":{},\"nextOffset\":{next}}}", serde_json::Value::from(reason))
}

/// What a step of the stream sends as SSE, and whether the stream goes on.
fn sse_frame(follow: &Follow, step: Result<Step, ApiError>) -> (Bytes, bool) {
    match step {
        Ok(Step::Records(read, _held)) => {
            let mut out = Vec::with_capacity(read.records.iter().map(|r| r.value.len() + 100).sum());
            for record in &read.records {
                out.extend_from_slice(format!("id: {}\ndata: ", record.offset + 1).as_bytes());
                let at = out.len();
                write_record_json(&mut out, follow.partition(), record);
                // A line break would end the data line early; in JSON one can only be
                // whitespace between tokens (strings escape theirs), so a space is the same JSON.
                out[at..].iter_mut().filter(|b| **b == b'\n' || **b == b'\r').for_each(|b| *b = b' ');
                out.extend_from_slice(b"\n\n");
            }
            (Bytes::from(out), true)
        }
        // The heartbeat carries the position too, so a client that saw no record yet (it
        // started at `latest`, say) resumes where it was, not at a later `latest`.
        Ok(Step::Quiet) => match follow.next_offset() {
            Some(next) => (Bytes::from(format!("id: {next}\n: heartbeat\n\n")), true),
            None => (Bytes::from_static(b": heartbeat\n\n"), true),
        },
        Ok(Step::End(reason)) => {
            let frame = format!("event: end\ndata: {}\n\n", end_json(reason, follow.next_offset()));
            (Bytes::from(frame), false)
        }
        Err(e) => (Bytes::from(format!("event: error\ndata: {}\n\n", error_json(&e))), false),
    }
}

/// An SSE response following `request`; it starts where `Last-Event-ID` says, if given.
/// It ends (`end` event) when the caller's token expires or is revoked.
pub async fn sse(app: SharedState, request: ReadRequest, access: Access) -> Result<Response, ApiError> {
    let permit = stream_permit(&app)?;
    let (follow, first) = Follow::start(app.reads.clone(), request).await?;
    // A frame's memory goes back to the read budget once it is handed to the transport (a
    // stalled reader must not hold the budget polls share): what the transport holds then is
    // bounded per stream by STREAM_READ_BYTES and in all by RUNNEL_MAX_STREAMS.
    struct State {
        follow: Follow,
        first: Option<Step>,
        open: bool,
        lease: Lease,
        _permit: OwnedSemaphorePermit,
    }
    let state = State { follow, first: Some(first), open: true, lease: Lease::new(&app, access), _permit: permit };
    let frames = futures_util::stream::unfold(state, |mut state| async move {
        if !state.open {
            return None;
        }
        let step = match state.first.take() {
            Some(first) => Ok(first),
            None => state.lease.step(&mut state.follow).await,
        };
        let (frame, open) = sse_frame(&state.follow, step);
        state.open = open;
        Some((Ok::<_, Infallible>(frame), state))
    });
    let preamble = futures_util::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"retry: 1000\n\n")) });
    let mut response = Body::from_stream(futures_util::StreamExt::chain(preamble, frames)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A WebSocket following `request`.
pub async fn websocket(
    app: SharedState,
    request: ReadRequest,
    upgrade: WebSocketUpgrade,
    access: Access,
) -> Result<Response, ApiError> {
    let permit = stream_permit(&app)?;
    let (follow, first) = Follow::start(app.reads.clone(), request).await?;
    let lease = Lease::new(&app, access);
    Ok(upgrade.on_upgrade(move |socket| async move {
        let _permit = permit;
        follow_on(socket, follow, first, lease).await;
    }))
}

/// How long a stream may go on: a stream is one long call, and the token it was opened with
/// must not outlive its expiry or its revocation in it.
struct Lease {
    access: Access,
    until: Option<Instant>,
    raft: RaftNode,
}

impl Lease {
    fn new(app: &SharedState, access: Access) -> Lease {
        Lease { until: access.valid_until(), access, raft: app.raft.clone() }
    }

    /// The stream's next step, or its end once the token expired or was revoked (looked at
    /// again whenever this broker applies Raft entries).
    async fn step(&self, follow: &mut Follow) -> Result<Step, ApiError> {
        let Access::Token(_) = self.access else { return follow.step().await };
        let mut changes = self.raft.changes();
        let step = follow.step();
        tokio::pin!(step);
        loop {
            if self.access.is_revoked(&self.raft) {
                return Ok(Step::End("the token was revoked"));
            }
            tokio::select! {
                step = &mut step => return step,
                _ = sleep_until(self.until) => {
                    return Ok(Step::End("the token expired: open the stream again with a new one"));
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        return step.await;
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn follow_on(mut socket: WebSocket, mut follow: Follow, first: Step, lease: Lease) {
    let mut step: Result<Step, ApiError> = Ok(first);
    loop {
        let sent = match step {
            Ok(Step::Records(read, _held)) => {
                let mut sent = Ok(());
                for record in &read.records {
                    let mut json = Vec::with_capacity(record.value.len() + 100);
                    write_record_json(&mut json, follow.partition(), record);
                    // Rendered JSON is UTF-8: stored bytes that are not appear escaped.
                    let text = String::from_utf8_lossy(&json).into_owned();
                    sent = socket.send(Message::Text(text.into())).await;
                    if sent.is_err() {
                        break;
                    }
                }
                sent
            }
            Ok(Step::Quiet) => socket.send(Message::Ping(Bytes::new())).await,
            Ok(Step::End(reason)) => {
                let reason = end_json(reason, follow.next_offset());
                let _ = socket.send(Message::Close(Some(CloseFrame { code: 1000, reason: reason.into() }))).await;
                return;
            }
            Err(e) => {
                let reason = error_json(&e);
                let _ = socket.send(Message::Close(Some(CloseFrame { code: 1011, reason: reason.into() }))).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
        // What the client sends is not read for anything but its close: a closed socket ends the stream.
        step = loop {
            tokio::select! {
                next = lease.step(&mut follow) => break next,
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
            }
        };
    }
}

/// Whether the request asks for a WebSocket.
pub fn is_websocket(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether the request asks for Server-Sent Events.
pub fn wants_events(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/event-stream"))
}

/// Where an SSE client resumes: the `Last-Event-ID` it saw, which is the next offset.
pub fn last_event_id(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(id) = headers.get("last-event-id") else { return Ok(None) };
    let id = id.to_str().ok().and_then(|v| v.trim().parse().ok());
    id.map(Some)
        .ok_or_else(|| ApiError::BadRequest("Last-Event-ID must be an offset (an event id this broker sent)".into()))
}
