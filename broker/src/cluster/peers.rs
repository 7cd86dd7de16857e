//! The static topology: broker names in ordinal order, all on the same ports.

use std::time::Duration;

use crate::peer::PeerHttp;

#[derive(Clone)]
pub struct Peers {
    names: Vec<String>,
    ordinal: u32,
    peer_port: u16,
    http: PeerHttp,
}

impl Peers {
    pub fn new(names: Vec<String>, ordinal: u32, peer_port: u16, http: PeerHttp) -> Peers {
        Peers { names, ordinal, peer_port, http }
    }

    pub fn count(&self) -> u32 {
        self.names.len().max(1) as u32
    }

    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `host:port` of broker `index`'s peer listener.
    pub fn peer_addr(&self, index: u32) -> String {
        let host = self.names.get(index as usize).map_or("localhost", String::as_str);
        format!("{host}:{}", self.peer_port)
    }

    pub fn url(&self, index: u32, path: &str) -> String {
        format!("http://{}{path}", self.peer_addr(index))
    }

    /// Ordinals of every other broker.
    pub fn others(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.count()).filter(move |i| *i != self.ordinal)
    }

    /// POSTs `body` as JSON to `path` on every other broker at once, each call given up after
    /// `within`; answers in ordinal order.
    pub async fn post_to_others<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
        within: Duration,
    ) -> Vec<(u32, Result<reqwest::Response, reqwest::Error>)> {
        let calls = self.others().map(|peer| {
            let call = self.http.post(self.url(peer, path)).json(body).timeout(within).send();
            async move { (peer, call.await) }
        });
        futures_util::future::join_all(calls).await
    }

    pub fn http(&self) -> &PeerHttp {
        &self.http
    }
}
