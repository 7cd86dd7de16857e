//! The one HTTP client for broker-to-broker calls. It is shaped like reqwest's (`get`/`post`,
//! then `json`/`body`/`header`/`timeout`, then `send`), and `send` signs the finished request
//! with the peer secret, so no call site can forget to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{now_ms, sign, Credential, PeerError, PeerSecret, SignedParts};
use crate::timing::{PEER_POOL_IDLE, PEER_REQUEST_TIMEOUT};

/// Requests in flight to one broker at once, beside Raft's (which never wait here: a
/// heartbeat stuck behind replication would start an election). Each needs a connection of
/// the remote peer port, whose limit ([`crate::memory::MAX_PEER_CONNECTIONS`]) must hold this for
/// every other broker.
pub const IN_FLIGHT_PER_BROKER: usize = 32;

#[derive(Clone)]
pub struct PeerHttp {
    client: reqwest::Client,
    /// `None` only with `RUNNEL_PEER_INSECURE=true`: requests go unsigned.
    secret: Option<PeerSecret>,
    /// Per remote broker (`host:port`), the requests that may be in flight.
    lanes: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    /// Calls go over TLS (`RUNNEL_PEER_TLS_CA`): every `http://` URL is sent as `https://`,
    /// so call sites name peers the same way either way.
    tls: bool,
}

impl PeerHttp {
    /// Short connect timeout (a dead broker is noticed fast), a 10 s default per request (Raft
    /// calls set their own), no Nagle delay.
    pub fn new(secret: Option<PeerSecret>) -> PeerHttp {
        // Without TLS nothing is configured that could fail to build.
        let client = PeerHttp::builder().build().unwrap_or_default();
        PeerHttp { client, secret, lanes: Arc::default(), tls: false }
    }

    /// Like [`PeerHttp::new`], calling peers over TLS with `tls`; a configuration reqwest does
    /// not take is an error, never a client that would call peers without it.
    pub fn with_tls(secret: Option<PeerSecret>, tls: rustls::ClientConfig) -> Result<PeerHttp, reqwest::Error> {
        let client = PeerHttp::builder().use_preconfigured_tls(tls).http1_only().build()?;
        Ok(PeerHttp { client, secret, lanes: Arc::default(), tls: true })
    }

    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(PEER_REQUEST_TIMEOUT)
            .pool_idle_timeout(PEER_POOL_IDLE)
            .tcp_nodelay(true)
    }

    /// A place among the requests in flight to `url`'s broker (none needed for Raft's).
    async fn lane(&self, url: &reqwest::Url) -> Option<OwnedSemaphorePermit> {
        if url.path().starts_with("/raft/") {
            return None;
        }
        let key = format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0));
        let lane = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            lanes.entry(key).or_insert_with(|| Arc::new(Semaphore::new(IN_FLIGHT_PER_BROKER))).clone()
        };
        lane.acquire_owned().await.ok()
    }

    pub fn get(&self, url: impl reqwest::IntoUrl) -> PeerRequest {
        self.request(self.client.get(url))
    }

    pub fn post(&self, url: impl reqwest::IntoUrl) -> PeerRequest {
        self.request(self.client.post(url))
    }

    fn request(&self, builder: reqwest::RequestBuilder) -> PeerRequest {
        PeerRequest { builder, http: self.clone() }
    }
}

/// A request being built. Bodies are only ever bytes (JSON or framed records), never a
/// stream, so the whole body is known when it is signed.
pub struct PeerRequest {
    builder: reqwest::RequestBuilder,
    http: PeerHttp,
}

impl PeerRequest {
    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> PeerRequest {
        PeerRequest { builder: self.builder.json(body), ..self }
    }

    pub fn body(self, body: Vec<u8>) -> PeerRequest {
        PeerRequest { builder: self.builder.body(body), ..self }
    }

    pub fn header(self, name: &'static str, value: String) -> PeerRequest {
        PeerRequest { builder: self.builder.header(name, value), ..self }
    }

    pub fn timeout(self, limit: Duration) -> PeerRequest {
        PeerRequest { builder: self.builder.timeout(limit), ..self }
    }

    /// Waits for a place among the requests in flight to that broker, then signs (with a
    /// fresh timestamp and nonce: a retry is a new request) and sends.
    pub async fn send(self) -> Result<reqwest::Response, reqwest::Error> {
        let (client, request) = self.builder.build_split();
        let mut request = request?;
        if self.http.tls && request.url().scheme() == "http" {
            // http and https are both special schemes: switching between them cannot fail.
            let _ = request.url_mut().set_scheme("https");
        }
        let _lane = self.http.lane(request.url()).await;
        if let Some(secret) = &self.http.secret {
            sign_request(secret, &mut request);
        }
        client.execute(request).await
    }
}

/// The body of a successful answer, or the [`PeerError`] the peer answered with (one that
/// breaks off mid-answer is [`PeerError::Unavailable`]: the peer may have gone away).
pub async fn answer_bytes(response: reqwest::Response) -> Result<bytes::Bytes, PeerError> {
    let status = response.status();
    let body =
        response.bytes().await.map_err(|e| PeerError::Unavailable(format!("the peer failed mid-answer: {e}")))?;
    if !status.is_success() {
        return Err(PeerError::from_answer(status, &body));
    }
    Ok(body)
}

/// A successful answer read as JSON `T`, or the [`PeerError`] the peer answered with.
pub async fn answer_json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, PeerError> {
    let body = answer_bytes(response).await?;
    serde_json::from_slice(&body).map_err(|e| PeerError::Unavailable(format!("bad answer from the peer: {e}")))
}

/// Adds the credential headers to a finished request (now, with a fresh nonce). An `https`
/// request's signature leaves its body to TLS ([`SignedParts::body`]), which is sound only
/// because the client sending it checks the callee's certificate against the cluster's CA.
pub fn sign_request(secret: &PeerSecret, request: &mut reqwest::Request) {
    let credential = {
        let url = request.url();
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        // A body that is not bytes (a stream) is never built here, see `PeerRequest`.
        let body = (url.scheme() != "https").then(|| request.body().and_then(|b| b.as_bytes()).unwrap_or_default());
        let parts = SignedParts {
            method: request.method().as_str(),
            path_and_query: &path_and_query,
            headers: request.headers(),
            body,
        };
        sign(secret, &parts, now_ms(), Credential::fresh_nonce())
    };
    credential.write_headers(request.headers_mut());
}
