use reqwest::StatusCode;

/// Errors of the Runnel client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no broker address could be found")]
    NoBrokers,
    #[error("broker lookup failed: {0}")]
    Discovery(#[from] runnel_discovery::DiscoveryError),
    #[error("request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: StatusCode, body: String },
    #[error("unexpected answer from {url}: {reason}")]
    InvalidResponse { url: String, reason: String },
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted { attempts: u32, last: Box<ClientError> },
    #[error("a record sent in an NDJSON batch cannot contain a newline")]
    NewlineInRecord,
    /// The batch a record was queued in failed; every record of it gets the same error.
    #[error("{0}")]
    Batch(std::sync::Arc<ClientError>),
    #[error("the producer stopped before the batch was sent")]
    Dropped,
    /// The client cannot be set up as asked (a bad token or CA file).
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// Worth retrying (possibly on another broker): connection problems, and what the broker's
    /// error body calls `retriable` (SPEC §12); a body without it (a proxy's, an older
    /// broker's) by its status: 503, 507 (the partition's disk is full until space is freed)
    /// and 408 (the request was too slow to arrive).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Status { status, body, .. } => {
                let said = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|b| b["retriable"].as_bool());
                said.unwrap_or(matches!(
                    *status,
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE | StatusCode::REQUEST_TIMEOUT
                ))
            }
            ClientError::Batch(inner) => inner.is_retryable(),
            _ => false,
        }
    }

    /// The request may have been stored although no success came back: it went out and the
    /// answer was lost or said to try again. A 4xx answer (but 408) means nothing was stored.
    pub fn may_have_stored(&self) -> bool {
        match self {
            ClientError::RetriesExhausted { .. } | ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => status.is_server_error() || *status == StatusCode::REQUEST_TIMEOUT,
            ClientError::Batch(inner) => inner.may_have_stored(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bodys_retriable_decides_and_the_status_when_it_is_missing() {
        let status = |status, body: &str| ClientError::Status { url: "u".into(), status, body: body.into() };
        assert!(!status(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"x","retriable":false}"#).is_retryable());
        assert!(status(StatusCode::CONFLICT, r#"{"error":"x","retriable":true}"#).is_retryable());
        assert!(status(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").is_retryable());
        assert!(!status(StatusCode::CONFLICT, r#"{"error":"sequence_gap","retriable":false}"#).is_retryable());
        assert!(!status(StatusCode::BAD_REQUEST, "").is_retryable());
    }
}
