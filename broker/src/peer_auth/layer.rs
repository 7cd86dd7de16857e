//! The middleware on the whole peer router: a request passes only with a valid, fresh,
//! first-seen credential. Refusals are logged at most once per [`LOG_EVERY`] (with how many
//! were not logged), so a scan of the port cannot flood the log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::replay::Refusal;
use super::{now_ms, verify, Credential, CredentialError, NonceCache, PeerSecret, SignedParts};
use crate::error::ApiError;

const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a peer request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerAuthError {
    #[error("{0}")]
    Credential(#[from] CredentialError),
    #[error("this request was already accepted once: a replayed peer request is refused")]
    Replayed,
    #[error("too many peer requests within the replay window")]
    Busy,
}

impl From<PeerAuthError> for ApiError {
    fn from(e: PeerAuthError) -> Self {
        match e {
            PeerAuthError::Busy => ApiError::Unavailable(e.to_string()),
            other => ApiError::PeerUnauthenticated(other.to_string()),
        }
    }
}

/// What the middleware needs: the secret, the nonces accepted lately, the refusal log's state.
#[derive(Clone)]
pub struct PeerVerifier {
    secret: PeerSecret,
    body_limit: usize,
    nonces: Arc<Mutex<NonceCache>>,
    log: Arc<Mutex<RefusalLog>>,
}

#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl PeerVerifier {
    pub fn new(secret: PeerSecret, body_limit: usize) -> PeerVerifier {
        PeerVerifier { secret, body_limit, nonces: Default::default(), log: Default::default() }
    }

    /// Checks a request's credential against its parts, then remembers its nonce.
    fn check(&self, parts: &SignedParts<'_>) -> Result<(), PeerAuthError> {
        let credential = Credential::from_headers(parts.headers)?;
        let now = now_ms();
        verify(&self.secret, parts, &credential, now)?;
        // Only after the signature holds: unsigned junk cannot fill the nonce set.
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        nonces.admit(credential.nonce, credential.time_ms, now).map_err(|refusal| match refusal {
            Refusal::Replayed => PeerAuthError::Replayed,
            Refusal::Full => PeerAuthError::Busy,
        })
    }

    fn note_refusal(&self, remote: Option<SocketAddr>, path: &str, error: &PeerAuthError) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            log.unlogged += 1;
            return;
        }
        let unlogged = std::mem::take(&mut log.unlogged);
        log.last = Some(Instant::now());
        drop(log);
        let remote = remote.map_or_else(|| "unknown".to_string(), |a| a.to_string());
        tracing::warn!(%remote, path, refused_since_last_log = unlogged, "peer request refused: {error}");
    }
}

/// Axum middleware (`middleware::from_fn_with_state(verifier, require_peer_auth)`).
pub async fn require_peer_auth(State(verifier): State<PeerVerifier>, request: Request, next: Next) -> Response {
    let remote = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let (head, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, verifier.body_limit).await {
        Ok(body) => body,
        Err(e) => return body_error(e, verifier.body_limit).into_response(),
    };
    let path_and_query = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let parts = SignedParts { method: head.method.as_str(), path_and_query, headers: &head.headers, body: &body };
    if let Err(error) = verifier.check(&parts) {
        verifier.note_refusal(remote, head.uri.path(), &error);
        return ApiError::from(error).into_response();
    }
    next.run(Request::from_parts(head, Body::from(body))).await
}

fn body_error(e: axum::Error, limit: usize) -> ApiError {
    let e = e.into_inner();
    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
        ApiError::BodyTooLarge { limit }
    } else {
        ApiError::BadRequest(format!("the request body could not be read: {e}"))
    }
}
