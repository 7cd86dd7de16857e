//! Where the brokers are: given directly, or asked from a discovery endpoint
//! (`GET http://host:9250/v1/brokers`, SPEC §5).

use std::time::Duration;

use runnel_discovery::{BrokerList, BrokerSource};

use crate::{Access, ClientError};

/// Host names of the brokers and their client ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brokers {
    pub hosts: Vec<String>,
    pub producer_port: u16,
    pub consumer_port: u16,
    /// The discovery port the list came from (`discover`), where a consumer asks again for the
    /// brokers to poll as the cluster is resized; `None` keeps the list as given.
    pub discovery_port: Option<u16>,
    /// How they are called (scheme, token): plain HTTP unless given.
    pub access: Access,
    /// `hosts[i]` is the broker of ordinal `i` (a list from `/v1/brokers`, which names them in
    /// order), so a request can go straight to the broker leading its partition. `false` for
    /// a list whose order says nothing (given, or a DNS answer).
    pub in_ordinal_order: bool,
}

impl Brokers {
    /// Brokers known up front, on the default ports.
    pub fn fixed(hosts: impl IntoIterator<Item = impl Into<String>>) -> Brokers {
        Brokers {
            hosts: hosts.into_iter().map(Into::into).collect(),
            producer_port: 9251,
            consumer_port: 9252,
            discovery_port: None,
            access: Access::default(),
            in_ordinal_order: false,
        }
    }

    /// The same brokers, called with `access`.
    pub fn with_access(self, access: Access) -> Brokers {
        Brokers { access, ..self }
    }

    /// Brokers found without asking one: a static list, or the AAAA records of a Kubernetes
    /// headless service (`BrokerSource::headless("runnel.streams.svc.cluster.local")`), on
    /// the default ports.
    pub async fn from_source(source: &BrokerSource) -> Result<Brokers, ClientError> {
        let hosts = source.resolve().await?;
        if hosts.is_empty() {
            return Err(ClientError::NoBrokers);
        }
        Ok(Brokers::fixed(hosts))
    }

    /// Asks `host` (any broker, or the discovery service) on `port` for the broker list, over
    /// plain HTTP with no token.
    pub async fn discover(http: &reqwest::Client, host: &str, port: u16) -> Result<Brokers, ClientError> {
        Brokers::discover_with(&Access::plain(http.clone()), host, port).await
    }

    /// Like [`Brokers::discover`], called with `access`, which the brokers found keep.
    pub async fn discover_with(access: &Access, host: &str, port: u16) -> Result<Brokers, ClientError> {
        let url = format!("{}://{host}:{port}/v1/brokers", access.scheme());
        let response = access
            .http()
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|source| ClientError::Transport { url: url.clone(), source })?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(ClientError::Status { url, status, body: response.text().await.unwrap_or_default() });
        }
        let list: BrokerList = response
            .json()
            .await
            .map_err(|e| ClientError::InvalidResponse { url: url.clone(), reason: e.to_string() })?;
        let hosts = list.hosts();
        if hosts.is_empty() {
            return Err(ClientError::NoBrokers);
        }
        Ok(Brokers {
            hosts,
            producer_port: list.producer_port,
            consumer_port: list.consumer_port,
            discovery_port: Some(port),
            access: access.clone(),
            in_ordinal_order: true,
        })
    }

    /// The producer port's `path` on broker `index` (counted round the list); an empty list
    /// (possible through `fixed` or the public fields) is [`ClientError::NoBrokers`].
    pub fn producer_url(&self, index: usize, path: &str) -> Result<String, ClientError> {
        self.url(index, self.producer_port, path)
    }

    /// The place in `hosts` of the broker with `ordinal`, when the list is in ordinal order and
    /// holds it.
    pub fn index_of_ordinal(&self, ordinal: u32) -> Option<usize> {
        let index = ordinal as usize;
        (self.in_ordinal_order && index < self.hosts.len()).then_some(index)
    }

    /// Like [`Brokers::producer_url`], on the consumer port.
    pub fn consumer_url(&self, index: usize, path: &str) -> Result<String, ClientError> {
        self.url(index, self.consumer_port, path)
    }

    /// The list asked again from the brokers it names, in turn (`None` for a list given as is,
    /// or when none answers).
    pub async fn rediscover(&self) -> Option<Brokers> {
        let port = self.discovery_port?;
        for host in &self.hosts {
            if let Ok(brokers) = Brokers::discover_with(&self.access, host, port).await {
                return Some(brokers);
            }
        }
        None
    }

    /// Sends a request to `path` on the consumer port of the brokers in turn until one
    /// answers with success; 503s and connection errors move on to the next broker, three
    /// rounds at most; any other answer is the error.
    pub(crate) async fn on_any(
        &self,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let mut last = ClientError::NoBrokers;
        for round in 0..3 {
            for index in 0..self.hosts.len() {
                let url = self.consumer_url(index, path)?;
                match request(&url).send().await {
                    Ok(r) if r.status().is_success() => return Ok(r),
                    Ok(r) => {
                        let status = r.status();
                        last = ClientError::Status { url, status, body: r.text().await.unwrap_or_default() };
                        if !last.is_retryable() {
                            return Err(last);
                        }
                    }
                    Err(source) => last = ClientError::Transport { url, source },
                }
            }
            tokio::time::sleep(Duration::from_millis(200 * (round + 1))).await;
        }
        Err(ClientError::RetriesExhausted { attempts: 3 * self.hosts.len() as u32, last: Box::new(last) })
    }

    fn url(&self, index: usize, port: u16, path: &str) -> Result<String, ClientError> {
        let host = self.hosts.get(index.checked_rem(self.hosts.len()).ok_or(ClientError::NoBrokers)?);
        Ok(format!("{}://{}:{port}{path}", self.access.scheme(), host.ok_or(ClientError::NoBrokers)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_source_gives_the_brokers_or_says_there_are_none() {
        let brokers =
            Brokers::from_source(&BrokerSource::Static(vec!["b0".into(), "b1".into()])).await.expect("brokers");
        assert_eq!(brokers.producer_url(1, "/status").expect("url"), "http://b1:9251/status");
        let none = Brokers::from_source(&BrokerSource::Static(Vec::new())).await;
        assert!(matches!(none, Err(ClientError::NoBrokers)));
        let bad = Brokers::from_source(&BrokerSource::headless("not a name")).await;
        assert!(matches!(bad, Err(ClientError::Discovery(_))), "{bad:?}");
    }

    /// Issue 10: `Brokers::fixed(vec![])` then `Producer::send` panicked (remainder by zero).
    #[tokio::test]
    async fn an_empty_broker_list_is_an_error_not_a_panic() {
        let producer = crate::Producer::new(Brokers::fixed(Vec::<String>::new()));
        let sent = producer.send("t", None, "x").await;
        assert!(matches!(&sent, Err(ClientError::Batch(e)) if matches!(**e, ClientError::NoBrokers)), "{sent:?}");
        let batch = producer.send_batch("t", Some("k"), vec!["y".into()]).await;
        assert!(matches!(batch, Err(ClientError::NoBrokers)), "{batch:?}");
    }
}
