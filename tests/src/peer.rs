//! Requests to a broker's peer port as another broker sends them: signed with the cluster's
//! peer secret (SPEC §13), which every test cluster has.

use reqwest::Method;
use runnel_broker::peer_auth::{now_ms, sign, Credential, PeerSecret, SignedParts};
use serde_json::Value;

use crate::BrokerProcess;

/// A request to `url` signed with `secret` (a JSON body if `json` is given).
pub fn signed_request(
    http: &reqwest::Client,
    secret: &PeerSecret,
    method: Method,
    url: &str,
    json: Option<&Value>,
) -> reqwest::Request {
    let mut builder = http.request(method, url);
    if let Some(json) = json {
        builder = builder.json(json);
    }
    let mut request = builder.build().expect("a valid peer request");
    let url = request.url().clone();
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let body = request.body().and_then(|b| b.as_bytes()).unwrap_or_default();
    let parts = SignedParts {
        method: request.method().as_str(),
        path_and_query: &path_and_query,
        headers: request.headers(),
        body,
    };
    let credential = sign(secret, &parts, now_ms(), Credential::fresh_nonce());
    credential.write_headers(request.headers_mut());
    request
}

impl BrokerProcess {
    /// The peer secret this broker was started with (`RUNNEL_PEER_SECRET_FILE`).
    pub fn peer_secret(&self) -> PeerSecret {
        let path = self.env_value("RUNNEL_PEER_SECRET_FILE").expect("the broker has a peer secret file");
        let bytes = std::fs::read(path).expect("read the peer secret");
        PeerSecret::from_bytes(&bytes).expect("a valid peer secret")
    }

    /// A signed `GET` of `path` on this broker's peer port.
    pub async fn peer_get(&self, path: &str) -> reqwest::Response {
        let http = reqwest::Client::new();
        let request = signed_request(&http, &self.peer_secret(), Method::GET, &self.url(9255, path), None);
        http.execute(request).await.expect("peer request")
    }
}
