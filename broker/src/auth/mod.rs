//! Access control of the client ports (SPEC §13). With `RUNNEL_AUTH_KEY_FILE` set, every
//! request but `/status` and `/livez` (and `/metrics` unless `RUNNEL_METRICS_AUTH=true`) needs
//! `Authorization: Bearer <JWT>`: [`authenticate`] verifies it (401 otherwise) and hands the
//! handler an [`Access`], which each handler asks for what it is about to do (403 outside the
//! token's scopes). Without a key every request gets [`Access::Open`].
//!
//! - [`scopes`]: what a token allows, and [`Need`]: what a request asks.
//! - [`token`]: the key and the verification of a JWT.
//! - revocations live in the replicated state (`consensus::revocations`).

mod layer;
pub mod scopes;
pub mod token;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

pub use layer::{authenticate, Authenticator};
pub use scopes::{Need, Op};
pub use token::{Claims, KeyError, TokenError, TokenKey, MAX_TOKEN_ID};

use crate::consensus::RaftNode;
use crate::error::ApiError;

/// Whether the token `id` was revoked, as far as this broker has applied the Raft log.
fn is_revoked(raft: &RaftNode, id: &str) -> bool {
    raft.read(|s| s.revoked_tokens.contains(id))
}

/// What the caller of a request may do.
#[derive(Debug, Clone)]
pub enum Access {
    /// No token key is configured: everything.
    Open,
    /// A verified, unrevoked token.
    Token(Arc<Claims>),
}

impl Access {
    /// `Ok` if the caller may do `need`, else 403 naming what was missing.
    pub fn require(&self, need: Need<'_>) -> Result<(), ApiError> {
        match self {
            Access::Open => Ok(()),
            Access::Token(claims) if scopes::allows(&claims.scopes, need) => Ok(()),
            Access::Token(_) => Err(ApiError::Forbidden(format!("the token does not allow {need}"))),
        }
    }

    /// When the token stops being valid (none for open access, or an expiry too far to
    /// count): a live stream ends then.
    pub fn valid_until(&self) -> Option<tokio::time::Instant> {
        let Access::Token(claims) = self else { return None };
        let now = crate::peer::now_ms() / 1000;
        tokio::time::Instant::now().checked_add(std::time::Duration::from_secs(claims.exp.saturating_sub(now)))
    }

    /// Whether the caller's token has been revoked since it was checked (as far as this
    /// broker has applied the Raft log); never for open access.
    pub fn is_revoked(&self, raft: &RaftNode) -> bool {
        match self {
            Access::Open => false,
            Access::Token(claims) => is_revoked(raft, &claims.jti),
        }
    }

    /// Whether the caller may do `need` (to filter a listing).
    pub fn allows(&self, need: Need<'_>) -> bool {
        self.require(need).is_ok()
    }
}

/// Set by [`authenticate`] on every request it lets through; a handler on a router without it
/// is a wiring mistake, answered 500 rather than served open.
impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Access>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("the request passed no access check".into()))
    }
}
