//! Requests to a broker's peer port as another broker sends them: signed with the cluster's
//! peer secret (SPEC §13), which every test cluster has.

use reqwest::Method;
use runnel_broker::peer::{sign_request, PeerSecret};
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
    sign_request(secret, &mut request);
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
