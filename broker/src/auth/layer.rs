//! The middleware in front of every client port: verifies the bearer token once per request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Access, KeyError, TokenError, TokenKey};
use crate::consensus::RaftNode;
use crate::error::ApiError;
use crate::log_every::LogEvery;
use crate::metrics::Metrics;

/// Refused tokens are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Paths every port answers without a token: health, for probes and load balancers, and the
/// API description, which holds no data and is what a client generator or fuzzer reads first.
const OPEN_PATHS: [&str; 3] = ["/status", "/livez", "/openapi.json"];

/// The token key (none: the ports are open), where revocations are looked up, and whether
/// `/metrics` needs a token.
#[derive(Clone)]
pub struct Authenticator {
    key: Option<TokenKey>,
    raft: RaftNode,
    metrics: Arc<Metrics>,
    metrics_open: bool,
    log: Arc<LogEvery>,
}

impl Authenticator {
    pub fn new(
        key_file: Option<&Path>,
        metrics_auth: bool,
        raft: RaftNode,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KeyError> {
        let key = key_file.map(TokenKey::load).transpose()?;
        Ok(Authenticator { key, raft, metrics, metrics_open: !metrics_auth, log: Arc::new(LogEvery::new(LOG_EVERY)) })
    }

    pub fn is_open(&self) -> bool {
        self.key.is_none()
    }

    /// What the request's token allows.
    fn access(&self, request: &Request) -> Result<Access, TokenError> {
        let Some(key) = &self.key else { return Ok(Access::Open) };
        let header = request.headers().get(AUTHORIZATION).ok_or(TokenError::Missing)?;
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| TokenError::Malformed("the Authorization header is not 'Bearer <token>'".into()))?;
        let claims = key.verify(token)?;
        if super::is_revoked(&self.raft, &claims.jti) {
            return Err(TokenError::Revoked);
        }
        Ok(Access::Token(Arc::new(claims)))
    }

    fn is_open_path(&self, path: &str) -> bool {
        OPEN_PATHS.contains(&path) || (self.metrics_open && path == "/metrics")
    }
}

/// Lets a request with a valid token through with its [`Access`]; answers 401 otherwise.
pub async fn authenticate(State(auth): State<Authenticator>, mut request: Request, next: Next) -> Response {
    if auth.is_open_path(request.uri().path()) {
        request.extensions_mut().insert(Access::Open);
        return next.run(request).await;
    }
    match auth.access(&request) {
        Ok(access) => {
            request.extensions_mut().insert(access);
            let response = next.run(request).await;
            if response.status() == axum::http::StatusCode::FORBIDDEN
                && response.headers().contains_key(axum::http::header::WWW_AUTHENTICATE)
            {
                auth.metrics.auth_refused("forbidden");
            }
            response
        }
        Err(e) => {
            auth.metrics.auth_refused(e.reason());
            let path = request.uri().path().to_string();
            auth.log.note(|unlogged| {
                tracing::info!(path, reason = e.reason(), refused_since_last_log = unlogged, "refused a request: {e}")
            });
            ApiError::Unauthenticated { missing: e == TokenError::Missing, message: e.to_string() }.into_response()
        }
    }
}
