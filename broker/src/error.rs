//! The one error type of the client ports and the one place it maps to status codes.
//! Each variant has a stable `error` code that clients can match on, and every body says
//! whether sending the same request again may succeed (`retriable`, SPEC §12).
//!
//! Also here: how the client-port error and the peer port's [`PeerError`] translate into each
//! other, for the services both ports share (a forwarded produce, a registration notice).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::consensus::RaftError;
use crate::memory::{BodyError, MemoryBusy};
use crate::peer::PeerError;
use crate::store::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidTopic(String),
    #[error("the request body is empty: send at least one record")]
    EmptyBody,
    #[error("the request body is larger than {limit} bytes: split it into smaller requests")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    BadRequest(String),
    #[error("the request target is longer than {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("the request headers are larger than {limit} bytes in all")]
    HeadersTooLarge { limit: usize },
    /// The client did not send its request in time; nothing was stored.
    #[error("{0}: send the request again")]
    TimedOut(String),
    #[error("consumer '{0}' is not registered: register it again, then retry")]
    ConsumerNotRegistered(String),
    #[error("consumer '{0}' is already registered with a different group or topics")]
    ConsumerConflict(String),
    /// A resize that cannot be made now (SPEC §9): nothing changed.
    #[error("{0}")]
    ResizeRefused(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// A resource the route names that does not exist (a partition, a queue group). 404.
    #[error("{0}")]
    NoSuch(String),
    #[error("group '{0}' has no members and no committed offsets")]
    UnknownGroup(String),
    /// A poll or read asked to wait longer than the broker allows.
    #[error("wait may be at most {max_ms} ms (RUNNEL_POLL_WAIT_MAX_MS; for a group poll also at most half RUNNEL_CONSUMER_TIMEOUT_MS)")]
    WaitTooLong { max_ms: u64 },
    /// A read by position outside the retained records: 410 before `start`, 416 past `end`.
    #[error("offset {offset} is outside the partition's records {start}..{end}: read from start..=end")]
    OutOfRange { offset: u64, start: u64, end: u64 },
    /// A reset of a group that has members, not forced: nothing changed.
    #[error("group '{group}' has members ({members}): stop them first, or add force=true to move them too")]
    GroupHasMembers { group: String, members: String },
    /// A reset to an offset the partition does not have: nothing changed.
    #[error("partition {partition} has offsets {start} to {end}, not {offset}")]
    ResetOutOfRange { partition: u32, offset: u64, start: u64, end: u64 },
    /// An idempotent request out of sequence (SPEC §12): nothing was stored. 409.
    #[error(
        "the producer's next sequence number for this partition is {expected}: send that one first; nothing was stored"
    )]
    SequenceGap { expected: u64 },
    /// An idempotent request of an older epoch than the producer's: a replaced (zombie)
    /// producer, fenced. 403.
    #[error("this producer was replaced: its epoch for this partition is now {current}; nothing was stored")]
    ProducerFenced { current: u64 },
    /// A conditional append (`Expected-Offset`) that did not find the partition ending there. 412.
    #[error("the partition's next offset is {end}, not the expected one; nothing was stored")]
    UnexpectedOffset { end: u64 },
    /// No valid bearer token (SPEC §13): none came (`missing`), or it did not verify. 401
    /// with `WWW-Authenticate: Bearer`.
    #[error("{message}")]
    Unauthenticated { message: String, missing: bool },
    /// A valid token whose scopes do not cover the request. 403.
    #[error("{0}")]
    Forbidden(String),
    /// A revocation that found the list of revoked tokens full. 409.
    #[error("{0}")]
    RevocationsFull(String),
    /// A queue group asked for other topics than it has, or a new one beyond the bound. 409.
    #[error("{0}")]
    QueueConflict(String),
    /// A write to, or a change of, a topic whose deletion is under way. 409.
    #[error("topic '{0}' is being deleted: try again once it is gone")]
    TopicDeleting(String),
    /// A create of a topic that exists with other settings: nothing changed. 409.
    #[error("{0}")]
    TopicConflict(String),
    #[error("{0}")]
    TopicNotFound(String),
    #[error("{0}: retry shortly")]
    Unavailable(String),
    /// This broker does not (or no longer) lead the partition; nothing was stored.
    #[error("partition {0} is not led by this broker right now: retry shortly")]
    NotLeader(u32),
    /// The data disk is (nearly) full: below the reserve, nothing was stored; a write that
    /// found it full is finished once space is freed (a retry may duplicate). 507, retriable.
    #[error("{0}: retry once space is freed")]
    InsufficientStorage(String),
    /// Stored data that cannot be read or written, for a reason that asking again will not
    /// clear (corrupt data, a failed disk, a partition failed after a bad write).
    #[error("storage error: {0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// An error the HTTP layer answered before a handler ran (a path parameter that is not
    /// UTF-8, a body axum could not read), given a JSON body on its way out.
    #[error("{}", if message.is_empty() { status.canonical_reason().unwrap_or("request refused") } else { message })]
    Rejected { status: StatusCode, message: String },
}

/// The code of [`ApiError::NotLeader`], which a forwarding broker looks for to retry.
pub const NOT_LEADER: &str = "not_leader";

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    retriable: bool,
    /// The retained records of a partition an [`ApiError::OutOfRange`] read missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<String>,
    /// The longest wait allowed, with [`ApiError::WaitTooLong`], for a client to take it up.
    #[serde(rename = "maxWaitMs", skip_serializing_if = "Option::is_none")]
    max_wait_ms: Option<u64>,
    /// The sequence the partition expects next, with [`ApiError::SequenceGap`].
    #[serde(rename = "expectedSeq", skip_serializing_if = "Option::is_none")]
    expected_seq: Option<u64>,
    /// The producer's current epoch, with [`ApiError::ProducerFenced`].
    #[serde(rename = "producerEpoch", skip_serializing_if = "Option::is_none")]
    producer_epoch: Option<u64>,
}

/// Headers of the idempotent-produce answers (SPEC §12).
pub const PRODUCER_EXPECTED_SEQ: &str = "producer-expected-seq";
pub const PRODUCER_EPOCH: &str = "producer-epoch";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidTopic(_)
            | ApiError::EmptyBody
            | ApiError::BadRequest(_)
            | ApiError::WaitTooLong { .. }
            | ApiError::ConsumerConflict(_)
            | ApiError::ResetOutOfRange { .. } => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::ConsumerNotRegistered(_)
            | ApiError::ResizeRefused(_)
            | ApiError::GroupHasMembers { .. }
            | ApiError::SequenceGap { .. }
            | ApiError::RevocationsFull(_)
            | ApiError::QueueConflict(_)
            | ApiError::TopicDeleting(_)
            | ApiError::TopicConflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::ProducerFenced { .. } | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::UnexpectedOffset { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound(_) | ApiError::NoSuch(_) | ApiError::UnknownGroup(_) | ApiError::TopicNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::OutOfRange { offset, end, .. } if offset > end => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::OutOfRange { .. } => StatusCode::GONE,
            ApiError::Unavailable(_) | ApiError::NotLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Storage(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Rejected { status, .. } => *status,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidTopic(_) => "invalid_topic",
            ApiError::EmptyBody => "empty_body",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::WaitTooLong { .. } => "wait_too_long",
            ApiError::UriTooLong { .. } => "uri_too_long",
            ApiError::HeadersTooLarge { .. } => "headers_too_large",
            ApiError::TimedOut(_) => "request_timeout",
            ApiError::ConsumerNotRegistered(_) => "consumer_not_registered",
            ApiError::ConsumerConflict(_) => "consumer_conflict",
            ApiError::ResizeRefused(_) => "resize_refused",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::NotFound(_) | ApiError::NoSuch(_) => "not_found",
            ApiError::UnknownGroup(_) => "unknown_group",
            ApiError::OutOfRange { offset, end, .. } if offset > end => "offset_past_end",
            ApiError::OutOfRange { .. } => "offset_before_start",
            ApiError::GroupHasMembers { .. } => "group_has_members",
            ApiError::ResetOutOfRange { .. } => "offset_out_of_range",
            ApiError::SequenceGap { .. } => "sequence_gap",
            ApiError::ProducerFenced { .. } => "producer_fenced",
            ApiError::UnexpectedOffset { .. } => "unexpected_offset",
            ApiError::Unauthenticated { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RevocationsFull(_) => "revocations_full",
            ApiError::QueueConflict(_) => "queue_conflict",
            ApiError::TopicDeleting(_) => "topic_deleting",
            ApiError::TopicConflict(_) => "topic_conflict",
            ApiError::TopicNotFound(_) => "topic_not_found",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotLeader(_) => NOT_LEADER,
            ApiError::InsufficientStorage(_) => "insufficient_storage",
            ApiError::Storage(_) => "storage",
            ApiError::Internal(_) => "internal",
            ApiError::Rejected { status, .. } if status.is_server_error() => "internal",
            ApiError::Rejected { .. } => "bad_request",
        }
    }

    /// The same request may succeed later (the broker is starting, stopping, electing,
    /// moving a partition, short of memory, or waits for disk space): exactly the 503s and
    /// 507s, which also carry `Retry-After`, and a request that did not arrive in time (408).
    pub fn retriable(&self) -> bool {
        matches!(
            self.status(),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE | StatusCode::REQUEST_TIMEOUT
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retriable = self.retriable();
        // A retriable 5xx (503: load, an election, a shutdown; 507: a full disk) has its cause
        // logged where it arises, once per interval, not per request.
        if status.is_server_error() && !retriable {
            tracing::warn!(code = self.code(), "{self}");
        }
        let (start, end) = match &self {
            ApiError::OutOfRange { start, end, .. } => (Some(start.to_string()), Some(end.to_string())),
            ApiError::UnexpectedOffset { end } => (None, Some(end.to_string())),
            _ => (None, None),
        };
        let max_wait_ms = match &self {
            ApiError::WaitTooLong { max_ms } => Some(*max_ms),
            _ => None,
        };
        let (expected_seq, producer_epoch) = match &self {
            ApiError::SequenceGap { expected } => (Some(*expected), None),
            ApiError::ProducerFenced { current } => (None, Some(*current)),
            _ => (None, None),
        };
        // RFC 6750 §3: no error code when no token came; the reason is the body's message.
        let challenge = match &self {
            ApiError::Unauthenticated { missing: true, .. } => Some(r#"Bearer realm="runnel""#),
            ApiError::Unauthenticated { missing: false, .. } => Some(r#"Bearer realm="runnel", error="invalid_token""#),
            ApiError::Forbidden(_) => Some(r#"Bearer realm="runnel", error="insufficient_scope""#),
            _ => None,
        };
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            retriable,
            start,
            end,
            max_wait_ms,
            expected_seq,
            producer_epoch,
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if retriable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(expected) = expected_seq {
            headers.insert(PRODUCER_EXPECTED_SEQ, HeaderValue::from(expected));
        }
        if let Some(epoch) = producer_epoch {
            headers.insert(PRODUCER_EPOCH, HeaderValue::from(epoch));
        }
        if let Some(challenge) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// Only what passes is answered 503 (retriable): a broker shutting down, a broker out of file
/// descriptors for the moment (nothing was changed; files close as other requests finish), a write that failed
/// before anything was acknowledged (nothing was stored; the write path marks the partition
/// failed if it must, and the next attempt then gets the 500 below), and the ends or epochs of
/// a copy moving under a leadership change. A disk without room is 507 (retriable too): the
/// write is refused, or finished once space is freed. Data that cannot be read, and a partition failed
/// after a bad write, stay so until someone repairs the disk or restarts the broker: those are
/// 500 `storage`, not retriable, and never called a write when they come from a read.
impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidTopic(reason) => ApiError::InvalidTopic(reason),
            StorageError::Closed => ApiError::Unavailable("the broker is shutting down".into()),
            StorageError::TooManyOpenFiles { .. } => {
                ApiError::Unavailable(format!("the broker has too many files open for this request ({e})"))
            }
            StorageError::Corrupt { .. } => {
                ApiError::Storage(format!("the partition's stored data cannot be read ({e}); it needs repair"))
            }
            // A full disk met outside an append (creating a partition): nothing was stored.
            StorageError::Io { .. } if e.is_out_of_space() => ApiError::InsufficientStorage(e.to_string()),
            StorageError::Io { op, .. } if is_read(op) => {
                ApiError::Storage(format!("the partition's stored data could not be read ({e})"))
            }
            StorageError::Poisoned { .. } => ApiError::Storage(e.to_string()),
            StorageError::DiskFull { .. } | StorageError::BelowReserve { .. } => {
                ApiError::InsufficientStorage(e.to_string())
            }
            StorageError::BatchSize { .. } => ApiError::BadRequest(e.to_string()),
            StorageError::InvalidConfig(_) => ApiError::Internal(e.to_string()),
            StorageError::OffsetMismatch { .. } | StorageError::StaleEpoch { .. } => {
                ApiError::Unavailable(format!("the partition's leadership is changing ({e})"))
            }
            StorageError::Io { .. } => ApiError::Unavailable(format!("the write could not be made durable ({e})")),
            StorageError::SequenceGap { expected } => ApiError::SequenceGap { expected },
            StorageError::ProducerFenced { current } => ApiError::ProducerFenced { current },
            StorageError::UnexpectedOffset { end } => ApiError::UnexpectedOffset { end },
            StorageError::TopicDeleting(topic) => ApiError::TopicDeleting(topic),
        }
    }
}

/// The operations of [`StorageError::Io`] that only read (the store names them so).
fn is_read(op: &str) -> bool {
    matches!(op, "read" | "open" | "stat" | "list")
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit } => ApiError::BodyTooLarge { limit },
            BodyError::TimedOut { .. } => ApiError::TimedOut(e.to_string()),
            BodyError::Unreadable(_) => ApiError::BadRequest(e.to_string()),
            BodyError::Busy(busy) => busy.into(),
        }
    }
}

impl From<MemoryBusy> for ApiError {
    fn from(e: MemoryBusy) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<RaftError> for ApiError {
    fn from(e: RaftError) -> Self {
        match e {
            RaftError::Unavailable(reason) => ApiError::Unavailable(format!("consumer state unavailable ({reason})")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A client-port service's failure answered on the peer port (a forwarded produce, a
/// registration applied for another broker).
impl From<ApiError> for PeerError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotLeader(partition) => PeerError::NotLeader(partition),
            ApiError::OutOfRange { offset, start, end } => {
                PeerError::OutOfRange { details: serde_json::json!({"offset": offset, "start": start, "end": end}) }
            }
            ApiError::SequenceGap { expected } => {
                PeerError::ProduceRefused { details: serde_json::json!({"kind": "sequence_gap", "expected": expected}) }
            }
            ApiError::ProducerFenced { current } => PeerError::ProduceRefused {
                details: serde_json::json!({"kind": "producer_fenced", "current": current}),
            },
            ApiError::UnexpectedOffset { end } => {
                PeerError::ProduceRefused { details: serde_json::json!({"kind": "unexpected_offset", "end": end}) }
            }
            ApiError::TopicDeleting(topic) => {
                PeerError::ProduceRefused { details: serde_json::json!({"kind": "topic_deleting", "topic": topic}) }
            }
            ApiError::BodyTooLarge { limit } => PeerError::BodyTooLarge { limit },
            ApiError::Unavailable(_) => PeerError::Unavailable(e.to_string()),
            ApiError::InsufficientStorage(reason) => PeerError::InsufficientStorage(reason),
            ApiError::Storage(_) | ApiError::Internal(_) => PeerError::Internal(e.to_string()),
            ApiError::Rejected { status, .. } if status.is_server_error() => PeerError::Internal(e.to_string()),
            other => PeerError::BadRequest(other.to_string()),
        }
    }
}

/// What another broker's refusal means to the client this broker answers for it.
impl From<PeerError> for ApiError {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::BadRequest(reason) => ApiError::BadRequest(reason),
            PeerError::OutOfRange { details } => {
                let at = |field: &str| details[field].as_u64().unwrap_or_default();
                ApiError::OutOfRange { offset: at("offset"), start: at("start"), end: at("end") }
            }
            PeerError::ProduceRefused { details } => {
                let at = |field: &str| details[field].as_u64().unwrap_or_default();
                match details["kind"].as_str() {
                    Some("sequence_gap") => ApiError::SequenceGap { expected: at("expected") },
                    Some("producer_fenced") => ApiError::ProducerFenced { current: at("current") },
                    Some("topic_deleting") => {
                        ApiError::TopicDeleting(details["topic"].as_str().unwrap_or_default().to_string())
                    }
                    _ => ApiError::UnexpectedOffset { end: at("end") },
                }
            }
            PeerError::BodyTooLarge { limit } => ApiError::BodyTooLarge { limit },
            PeerError::InsufficientStorage(reason) => ApiError::InsufficientStorage(reason),
            PeerError::Internal(reason) => ApiError::Internal(format!("another broker failed: {reason}")),
            // Credentials the brokers do not agree on, a stale view of the cluster: the
            // operator or time fixes those, the client can only wait.
            other => ApiError::Unavailable(format!("another broker refused the request ({other})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerErrorBody;

    #[test]
    fn unavailable_carries_retry_after() {
        let r = ApiError::Unavailable("no quorum".into()).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
    }

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&body).expect("JSON body"))
    }

    #[tokio::test]
    async fn every_body_says_whether_to_retry() {
        let (status, body) = body_of(ApiError::Unavailable("no quorum".into())).await;
        assert_eq!((status, body["retriable"].as_bool()), (StatusCode::SERVICE_UNAVAILABLE, Some(true)));
        let (status, body) = body_of(ApiError::BadRequest("no".into())).await;
        assert_eq!((status, body["retriable"].as_bool()), (StatusCode::BAD_REQUEST, Some(false)));
    }

    #[tokio::test]
    async fn a_read_error_is_a_storage_error_not_a_failed_write() {
        let corrupt = StorageError::Corrupt {
            path: "/data/topics/t/0/00000000000000000000.log".into(),
            position: 2097139,
            reason: "incomplete header (13 of 29 bytes)".into(),
        };
        let read =
            StorageError::Io { op: "read", path: "/data/topics/t/0".into(), source: std::io::Error::other("EIO") };
        for error in [corrupt, read] {
            let (status, body) = body_of(ApiError::from(error)).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!((body["error"].as_str(), body["retriable"].as_bool()), (Some("storage"), Some(false)));
            let message = body["message"].as_str().expect("message");
            assert!(message.contains("/data/topics/t/0") && !message.contains("write"), "{message}");
        }
        let poisoned = ApiError::from(StorageError::Poisoned { topic: "t".into(), partition: 3 });
        assert!(!poisoned.retriable() && poisoned.to_string().contains("t/3"), "{poisoned}");
        let failed_fsync =
            ApiError::from(StorageError::Io { op: "fsync", path: "/x".into(), source: std::io::Error::other("EIO") });
        assert!(failed_fsync.retriable() && failed_fsync.to_string().contains("durable"));
        assert!(ApiError::from(StorageError::Closed).retriable());
    }

    /// Issue 11: running out of file descriptors is one request's 503, to be retried.
    #[tokio::test]
    async fn too_many_open_files_is_a_retriable_503() {
        for op in ["open", "create"] {
            let e = StorageError::TooManyOpenFiles { op, path: "/data/topics/t/0/00000000000000000000.log".into() };
            let response = ApiError::from(e).into_response();
            assert_eq!(response.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
            let (status, body) =
                body_of(ApiError::from(StorageError::TooManyOpenFiles { op, path: "/x".into() })).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!((body["error"].as_str(), body["retriable"].as_bool()), (Some("unavailable"), Some(true)));
            assert!(body["message"].as_str().is_some_and(|m| m.contains("too many open files")), "{body}");
        }
    }

    #[tokio::test]
    async fn a_full_disk_is_507_with_retry_after_and_retriable() {
        let enospc = StorageError::Io {
            op: "create directory",
            path: "/data/topics/t/0".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let errors = [
            StorageError::DiskFull { topic: "t".into(), partition: 0 },
            StorageError::BelowReserve { free: 1, reserve: 2 },
            enospc,
        ];
        for error in errors {
            let response = ApiError::from(error).into_response();
            assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
            assert!(response.headers().contains_key(header::RETRY_AFTER));
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
            assert_eq!(
                (body["error"].as_str(), body["retriable"].as_bool()),
                (Some("insufficient_storage"), Some(true))
            );
        }
        let forwarded = ApiError::from(PeerError::from(ApiError::InsufficientStorage("full".into())));
        assert_eq!(forwarded.status(), StatusCode::INSUFFICIENT_STORAGE, "a forwarded produce keeps its 507");
    }

    /// SPEC §12: the refusals of an idempotent or conditional produce keep their status, their
    /// number and its header through a forwarding broker, and none is retriable.
    #[tokio::test]
    async fn produce_refusals_survive_forwarding_with_their_numbers() {
        let cases = [
            (ApiError::SequenceGap { expected: 7 }, StatusCode::CONFLICT, "expectedSeq", Some(PRODUCER_EXPECTED_SEQ)),
            (ApiError::ProducerFenced { current: 9 }, StatusCode::FORBIDDEN, "producerEpoch", Some(PRODUCER_EPOCH)),
            (ApiError::UnexpectedOffset { end: 42 }, StatusCode::PRECONDITION_FAILED, "end", None),
        ];
        for (error, status, field, header) in cases {
            let peer = PeerError::from(error);
            let wire = serde_json::to_vec(&PeerErrorBody {
                error: peer.code().into(),
                message: peer.to_string(),
                details: peer.details(),
            })
            .expect("wire");
            let forwarded = ApiError::from(PeerError::from_answer(peer.status(), &wire));
            assert!(!forwarded.retriable());
            let response = forwarded.into_response();
            assert_eq!(response.status(), status);
            let value = header.map(|h| response.headers()[h].to_str().expect("text").to_string());
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
            let number = body[field].as_u64().or_else(|| body[field].as_str().and_then(|s| s.parse().ok()));
            assert!(number.is_some_and(|n| n > 0), "{body}");
            if let Some(value) = value {
                assert_eq!(value.parse::<u64>().ok(), number);
            }
        }
    }
}
