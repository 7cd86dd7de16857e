//! The one error type of the peer port and the one place it maps to HTTP: every peer route
//! answers its errors through it, as JSON `{"error": code, "message": …, "details": …}`, and
//! every peer client reads them back with [`PeerError::from_answer`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::memory::BodyError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No valid credential (see the `layer` module).
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the body is larger than the peer limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The request did not arrive in time.
    #[error("{0}")]
    TimedOut(String),
    /// This broker holds no copy of the partition asked about.
    #[error("this broker holds no copy of partition {0}")]
    NotReplica(u32),
    /// The request comes from a leader older than one this copy was told about; `details`
    /// carry what the copy knows (its state, or the newest epoch it was told of).
    #[error("the request's leader epoch is older than one this copy knows of ({details})")]
    StaleEpoch { details: serde_json::Value },
    /// The copy does not end where the request assumed; `details` carry where it ends.
    #[error("the copy ends elsewhere than the request assumed")]
    OffsetMismatch { details: serde_json::Value },
    /// This broker does not lead the partition (yet); nothing was stored.
    #[error("partition {0} is not led by this broker right now")]
    NotLeader(u32),
    /// An idempotent or conditional produce the leader refused (`details`: `kind` and its
    /// number: `sequence_gap` `expected`, `producer_fenced` `current`, `unexpected_offset` `end`).
    #[error("the partition's leader refused the produce ({details})")]
    ProduceRefused { details: serde_json::Value },
    /// A read by position outside the partition's retained records (offset, start, end).
    #[error("the offset is outside the partition's records ({details})")]
    OutOfRange { details: serde_json::Value },
    /// A Raft RPC meant for another node than the one at this address.
    #[error("{0}")]
    WrongNode(String),
    /// A join that would remove a live voter.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// The disk has no room for the write (see the client port's `InsufficientStorage`).
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("no such peer route: {0}")]
    NotFound(String),
    /// An error axum answered before a handler ran (a body that is not the JSON expected),
    /// given the JSON error body on its way out.
    #[error("{}", if message.is_empty() { status.canonical_reason().unwrap_or("request refused") } else { message })]
    Rejected { status: StatusCode, message: String },
}

/// The wire form of a [`PeerError`].
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerErrorBody {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl PeerError {
    pub fn status(&self) -> StatusCode {
        match self {
            PeerError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            PeerError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PeerError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PeerError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            PeerError::NotReplica(_) => StatusCode::NOT_FOUND,
            PeerError::StaleEpoch { .. } => StatusCode::PRECONDITION_FAILED,
            PeerError::OffsetMismatch { .. } | PeerError::Conflict(_) | PeerError::ProduceRefused { .. } => {
                StatusCode::CONFLICT
            }
            PeerError::WrongNode(_) => StatusCode::MISDIRECTED_REQUEST,
            PeerError::NotLeader(_) | PeerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PeerError::OutOfRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            PeerError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            PeerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PeerError::NotFound(_) => StatusCode::NOT_FOUND,
            PeerError::Rejected { status, .. } => *status,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PeerError::Unauthenticated(_) => "peer_unauthenticated",
            PeerError::BadRequest(_) => "bad_request",
            PeerError::BodyTooLarge { .. } => "body_too_large",
            PeerError::TimedOut(_) => "request_timeout",
            PeerError::NotReplica(_) => "not_replica",
            PeerError::StaleEpoch { .. } => "stale_epoch",
            PeerError::OffsetMismatch { .. } => "offset_mismatch",
            PeerError::NotLeader(_) => "not_leader",
            PeerError::OutOfRange { .. } => "out_of_range",
            PeerError::ProduceRefused { .. } => "produce_refused",
            PeerError::WrongNode(_) => "wrong_node",
            PeerError::Conflict(_) => "conflict",
            PeerError::Unavailable(_) => "unavailable",
            PeerError::InsufficientStorage(_) => "insufficient_storage",
            PeerError::Internal(_) => "internal",
            PeerError::NotFound(_) => "not_found",
            PeerError::Rejected { status, .. } if status.is_server_error() => "internal",
            PeerError::Rejected { .. } => "bad_request",
        }
    }

    pub fn details(&self) -> serde_json::Value {
        match self {
            PeerError::StaleEpoch { details }
            | PeerError::OffsetMismatch { details }
            | PeerError::OutOfRange { details }
            | PeerError::ProduceRefused { details } => details.clone(),
            PeerError::BodyTooLarge { limit } => serde_json::json!({ "limit": limit }),
            PeerError::NotReplica(partition) | PeerError::NotLeader(partition) => {
                serde_json::json!({ "partition": partition })
            }
            _ => serde_json::Value::Null,
        }
    }

    /// The error a peer answered with `status` and `body` (any non-success answer).
    pub fn from_answer(status: StatusCode, body: &[u8]) -> PeerError {
        let Ok(answer) = serde_json::from_slice::<PeerErrorBody>(body) else {
            let text = String::from_utf8_lossy(body).trim().to_string();
            return PeerError::Unavailable(format!("peer answered {status}: {text}"));
        };
        let message = answer.message;
        match answer.error.as_str() {
            "peer_unauthenticated" => PeerError::Unauthenticated(message),
            "bad_request" => PeerError::BadRequest(message),
            "stale_epoch" => PeerError::StaleEpoch { details: answer.details },
            "offset_mismatch" => PeerError::OffsetMismatch { details: answer.details },
            "out_of_range" => PeerError::OutOfRange { details: answer.details },
            "produce_refused" => PeerError::ProduceRefused { details: answer.details },
            "not_leader" => PeerError::NotLeader(number(&answer.details, "partition") as u32),
            "wrong_node" => PeerError::WrongNode(message),
            "conflict" => PeerError::Conflict(message),
            "internal" => PeerError::Internal(message),
            "insufficient_storage" => PeerError::InsufficientStorage(message),
            "not_found" => PeerError::NotFound(message),
            "body_too_large" => PeerError::BodyTooLarge { limit: number(&answer.details, "limit") as usize },
            "not_replica" => PeerError::NotReplica(number(&answer.details, "partition") as u32),
            "request_timeout" => PeerError::TimedOut(message),
            _ => PeerError::Unavailable(format!("peer answered {status}: {message}")),
        }
    }
}

fn number(details: &serde_json::Value, field: &str) -> u64 {
    details[field].as_u64().unwrap_or_default()
}

/// An error response that is not JSON (one axum answered itself, before a handler ran), as
/// its status and text; any other response back unchanged. Both ports' error types rewrite
/// such answers into their JSON form with it.
pub async fn plain_error(response: Response) -> Result<Response, (StatusCode, String)> {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return Ok(response);
    }
    let text = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    Err((status, String::from_utf8_lossy(&text).trim().to_string()))
}

/// JSON for the errors axum answers itself on the peer port, as [`PeerError::Rejected`].
pub async fn peer_errors_as_json(response: Response) -> Response {
    plain_error(response)
        .await
        .unwrap_or_else(|(status, message)| PeerError::Rejected { status, message }.into_response())
}

impl From<BodyError> for PeerError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit } => PeerError::BodyTooLarge { limit },
            BodyError::TimedOut { .. } => PeerError::TimedOut(e.to_string()),
            BodyError::Unreadable(_) => PeerError::BadRequest(e.to_string()),
            BodyError::Busy(_) => PeerError::Unavailable(e.to_string()),
        }
    }
}

impl IntoResponse for PeerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::debug!(code = self.code(), "peer request failed: {self}");
        }
        let body = PeerErrorBody { error: self.code().into(), message: self.to_string(), details: self.details() };
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a peer client reads back from the answer `sent` makes.
    async fn round_trip(sent: PeerError) -> PeerError {
        let response = sent.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        PeerError::from_answer(status, &body)
    }

    #[tokio::test]
    async fn an_error_survives_the_round_trip_through_its_answer() {
        let sent = PeerError::OffsetMismatch { details: serde_json::json!({"end": 7, "last_epoch": 2}) };
        match round_trip(sent).await {
            PeerError::OffsetMismatch { details } => assert_eq!(details["end"], 7),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            round_trip(PeerError::BodyTooLarge { limit: 42 }).await,
            PeerError::BodyTooLarge { limit: 42 }
        ));
        assert!(matches!(round_trip(PeerError::NotLeader(7)).await, PeerError::NotLeader(7)));
        assert!(matches!(
            PeerError::from_answer(StatusCode::BAD_GATEWAY, b"upstream"),
            PeerError::Unavailable(m) if m.contains("upstream")
        ));
    }
}
