//! The middleware on the whole peer router: a request passes only with a valid, fresh,
//! first-seen credential. Refusals are logged at most once per [`LOG_EVERY`] (with how many
//! were not logged), so a scan of the port cannot flood the log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::replay::Refusal;
use super::{now_ms, verify, Credential, CredentialError, NonceCache, PeerError, PeerSecret, SignedParts};
use crate::log_every::LogEvery;

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

impl From<PeerAuthError> for PeerError {
    fn from(e: PeerAuthError) -> Self {
        match e {
            PeerAuthError::Busy => PeerError::Unavailable(e.to_string()),
            other => PeerError::Unauthenticated(other.to_string()),
        }
    }
}

/// What the middleware needs: the secret, the nonces accepted lately, the refusal log's state.
#[derive(Clone)]
pub struct PeerVerifier {
    secret: PeerSecret,
    body_limit: usize,
    /// The port serves TLS only: signatures cover the head, TLS the body (see [`SignedParts`]).
    over_tls: bool,
    nonces: Arc<Mutex<NonceCache>>,
    log: Arc<LogEvery>,
}

impl PeerVerifier {
    pub fn new(secret: PeerSecret, body_limit: usize, over_tls: bool) -> PeerVerifier {
        PeerVerifier {
            secret,
            body_limit,
            over_tls,
            nonces: Default::default(),
            log: Arc::new(LogEvery::new(LOG_EVERY)),
        }
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
        self.log.note(|unlogged| {
            let remote = remote.map_or_else(|| "unknown".to_string(), |a| a.to_string());
            tracing::warn!(%remote, path, refused_since_last_log = unlogged, "peer request refused: {error}");
        });
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
    let parts = SignedParts {
        method: head.method.as_str(),
        path_and_query,
        headers: &head.headers,
        body: (!verifier.over_tls).then_some(&body[..]),
    };
    if let Err(error) = verifier.check(&parts) {
        verifier.note_refusal(remote, head.uri.path(), &error);
        return PeerError::from(error).into_response();
    }
    next.run(Request::from_parts(head, Body::from(body))).await
}

fn body_error(e: axum::Error, limit: usize) -> PeerError {
    let e = e.into_inner();
    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
        PeerError::BodyTooLarge { limit }
    } else {
        PeerError::BadRequest(format!("the request body could not be read: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use axum::Router;

    use super::*;
    use crate::peer::{PeerHttp, AUTH_HEADER};

    /// A peer router with the middleware, on a free loopback port; its address.
    async fn serve(secret: PeerSecret) -> String {
        let verifier = PeerVerifier::new(secret, 1024, false);
        let router = Router::new()
            .route("/echo", post(|body: axum::body::Bytes| async move { body }))
            .layer(axum::middleware::from_fn_with_state(verifier, require_peer_auth));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        format!("http://{addr}/echo")
    }

    #[tokio::test]
    async fn the_client_signs_what_the_middleware_accepts_once() {
        let secret = PeerSecret::from_bytes(&[7; 32]).expect("secret");
        let url = serve(secret.clone()).await;
        let signed = PeerHttp::new(Some(secret)).post(&url).body(b"records".to_vec()).send().await.expect("send");
        assert_eq!(signed.status(), 200);
        assert_eq!(signed.bytes().await.expect("body"), &b"records"[..], "the buffered body reaches the handler");

        let unsigned = PeerHttp::new(None).post(&url).body(b"records".to_vec()).send().await.expect("send");
        assert_eq!(unsigned.status(), 401);
        let body: serde_json::Value = unsigned.json().await.expect("JSON body");
        assert_eq!(body["error"], "peer_unauthenticated");

        let wrong = PeerSecret::from_bytes(&[8; 32]).expect("secret");
        let other = PeerHttp::new(Some(wrong)).post(&url).send().await.expect("send");
        assert_eq!(other.status(), 401);

        let too_big = PeerHttp::new(None).post(&url).body(vec![0; 2048]).send().await.expect("send");
        assert_eq!(too_big.status(), 413, "the body is bounded before it is verified");
    }

    #[test]
    fn behind_tls_the_body_is_left_out_of_the_signature_and_a_full_one_is_refused() {
        let secret = PeerSecret::from_bytes(&[7; 32]).expect("secret");
        let headers = axum::http::HeaderMap::new();
        let head_only = SignedParts { method: "POST", path_and_query: "/echo", headers: &headers, body: None };
        let credential = crate::peer::sign(&secret, &head_only, now_ms(), Credential::fresh_nonce());
        let mut signed = axum::http::HeaderMap::new();
        credential.write_headers(&mut signed);
        let behind_tls = PeerVerifier::new(secret.clone(), 1024, true);
        let arrived = SignedParts { headers: &signed, ..head_only };
        assert!(behind_tls.check(&arrived).is_ok());

        let full = SignedParts { body: Some(b"x"), ..head_only };
        let credential = crate::peer::sign(&secret, &full, now_ms(), Credential::fresh_nonce());
        let mut signed = axum::http::HeaderMap::new();
        credential.write_headers(&mut signed);
        let refused = behind_tls.check(&SignedParts { headers: &signed, ..head_only });
        assert!(matches!(refused, Err(PeerAuthError::Credential(CredentialError::BadSignature))), "{refused:?}");
    }

    #[tokio::test]
    async fn a_replayed_request_is_refused() {
        let secret = PeerSecret::from_bytes(&[7; 32]).expect("secret");
        let url = serve(secret.clone()).await;
        let http = reqwest::Client::new();
        let parts_headers = axum::http::HeaderMap::new();
        let parts = SignedParts { method: "POST", path_and_query: "/echo", headers: &parts_headers, body: Some(b"x") };
        let credential = crate::peer::sign(&secret, &parts, now_ms(), Credential::fresh_nonce());
        let mut headers = axum::http::HeaderMap::new();
        credential.write_headers(&mut headers);
        assert!(headers.contains_key(AUTH_HEADER));
        let send = || http.post(&url).headers(headers.clone()).body("x").send();
        assert_eq!(send().await.expect("first").status(), 200);
        let replayed = send().await.expect("replay");
        assert_eq!(replayed.status(), 401);
        assert!(replayed.text().await.expect("body").contains("already accepted"));
    }
}
