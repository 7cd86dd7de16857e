//! Where the brokers are: given directly, or asked from a discovery endpoint
//! (`GET http://host:9250/v1/brokers`, SPEC §5).

use std::time::Duration;

use runnel_discovery::BrokerList;

use crate::ClientError;

/// Host names of the brokers and their client ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brokers {
    pub hosts: Vec<String>,
    pub producer_port: u16,
    pub consumer_port: u16,
}

impl Brokers {
    /// Brokers known up front, on the default ports.
    pub fn fixed(hosts: impl IntoIterator<Item = impl Into<String>>) -> Brokers {
        Brokers { hosts: hosts.into_iter().map(Into::into).collect(), producer_port: 9251, consumer_port: 9252 }
    }

    /// Asks `host` (any broker, or the discovery service) on `port` for the broker list.
    pub async fn discover(http: &reqwest::Client, host: &str, port: u16) -> Result<Brokers, ClientError> {
        let url = format!("http://{host}:{port}/v1/brokers");
        let response = http
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
        Ok(Brokers { hosts, producer_port: list.producer_port, consumer_port: list.consumer_port })
    }

    pub fn producer_url(&self, index: usize, path: &str) -> String {
        format!("http://{}:{}{path}", self.hosts[index % self.hosts.len()], self.producer_port)
    }

    pub fn consumer_url(&self, index: usize, path: &str) -> String {
        format!("http://{}:{}{path}", self.hosts[index % self.hosts.len()], self.consumer_port)
    }
}
