//! Authentication of the peer port (SPEC §13): every broker-to-broker request carries an
//! HMAC-SHA256 credential keyed by the cluster's shared secret, over the method, path and
//! query, the `x-runnel-*` headers, a digest of the body (not with peer TLS, which guards the
//! body itself: [`SignedParts::body`]), a timestamp and a random nonce. The receiving broker refuses (401) a request without a valid credential, one whose timestamp is
//! more than [`MAX_SKEW`] away from its clock, and one whose nonce it already accepted: a
//! captured request can neither be altered nor replayed.
//!
//! - [`PeerSecret`]: the secret, read from `RUNNEL_PEER_SECRET_FILE`.
//! - [`PeerHttp`]: the one HTTP client for broker-to-broker calls; it signs every request.
//! - [`require_peer_auth`]: the axum middleware on the whole peer router that verifies them.
//! - [`read_peer_bodies`]: the middleware before it that reads each body under its memory budget.

mod bodies;
mod client;
mod credential;
mod error;
mod layer;
mod replay;
mod secret;

use std::time::Duration;

pub use bodies::{read_peer_bodies, PeerBodies};
pub use client::{answer_bytes, answer_json, sign_request, PeerHttp, PeerRequest};
pub use credential::{sign, verify, Credential, CredentialError, SignedParts};
pub use error::{peer_errors_as_json, plain_error, PeerError, PeerErrorBody};
pub use layer::{require_peer_auth, PeerAuthError, PeerVerifier};
pub use replay::{NonceCache, MAX_NONCES};
pub use secret::{PeerSecret, SecretError, MIN_SECRET_BYTES};

/// Header with the signing time, milliseconds since the Unix epoch.
pub const TIME_HEADER: &str = "runnel-peer-time";
/// Header with the request's random nonce (32 hex digits).
pub const NONCE_HEADER: &str = "runnel-peer-nonce";
/// Header with the HMAC-SHA256 (64 hex digits).
pub const AUTH_HEADER: &str = "runnel-peer-auth";

/// How far a request's timestamp may be from the receiver's clock (either way). The brokers'
/// clocks must agree within this (NTP does much better); it also bounds how long a nonce has to
/// be remembered.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// Milliseconds since the Unix epoch now (0 for a clock before 1970, which no credential passes).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
