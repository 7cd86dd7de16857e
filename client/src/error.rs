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
}

impl ClientError {
    /// Worth retrying (possibly on another broker): connection problems, 503, 507 (the
    /// partition's disk is full until space is freed) and 408 (the request was too slow to arrive).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => {
                matches!(
                    *status,
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE | StatusCode::REQUEST_TIMEOUT
                )
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
