//! The one error type of the HTTP API and the one place it maps to status codes.
//! Each variant has a stable `error` code that clients can match on.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::consensus::RaftError;
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
    #[error("consumer '{0}' is not registered: register it again, then retry")]
    ConsumerNotRegistered(String),
    #[error("consumer '{0}' is already registered with a different group or topics")]
    ConsumerConflict(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("no such endpoint: {0}")]
    NotFound(String),
    #[error("group '{0}' has no members and no committed offsets")]
    UnknownGroup(String),
    #[error("{0}: retry shortly")]
    Unavailable(String),
    /// This broker does not (or no longer) lead the partition; nothing was stored.
    #[error("partition {0} is not led by this broker right now: retry shortly")]
    NotLeader(u32),
    /// A request on the peer port without a valid credential (SPEC §13).
    #[error("{0}")]
    PeerUnauthenticated(String),
    /// A broker tried to join at the address of another broker that is still alive.
    #[error("{0}")]
    JoinConflict(String),
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
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidTopic(_)
            | ApiError::EmptyBody
            | ApiError::BadRequest(_)
            | ApiError::ConsumerConflict(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ConsumerNotRegistered(_) | ApiError::JoinConflict(_) => StatusCode::CONFLICT,
            ApiError::PeerUnauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotFound(_) | ApiError::UnknownGroup(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) | ApiError::NotLeader(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
            ApiError::ConsumerNotRegistered(_) => "consumer_not_registered",
            ApiError::ConsumerConflict(_) => "consumer_conflict",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownGroup(_) => "unknown_group",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotLeader(_) => NOT_LEADER,
            ApiError::PeerUnauthenticated(_) => "peer_unauthenticated",
            ApiError::JoinConflict(_) => "join_conflict",
            ApiError::Internal(_) => "internal",
            ApiError::Rejected { status, .. } if status.is_server_error() => "internal",
            ApiError::Rejected { .. } => "bad_request",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), "{self}");
        }
        let body = ErrorBody { error: self.code(), message: self.to_string() };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidTopic(reason) => ApiError::InvalidTopic(reason),
            StorageError::Closed => ApiError::Unavailable("the broker is shutting down".into()),
            other => ApiError::Unavailable(format!("the write could not be made durable ({other})")),
        }
    }
}

impl From<RaftError> for ApiError {
    fn from(e: RaftError) -> Self {
        match e {
            RaftError::Unavailable(reason) => ApiError::Unavailable(format!("consumer state unavailable ({reason})")),
            RaftError::MemberAlive(reason) => ApiError::JoinConflict(reason),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_carries_retry_after() {
        let r = ApiError::Unavailable("no quorum".into()).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
    }
}
