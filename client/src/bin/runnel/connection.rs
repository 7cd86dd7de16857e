//! How the tool reaches the cluster: any broker (or the discovery service) by host name.

use runnel_client::{Brokers, ClientError};

#[derive(clap::Args, Clone)]
pub struct ConnectionArgs {
    /// A broker or the discovery service; the broker list is read from it.
    #[arg(long, env = "RUNNEL_HOST", default_value = "localhost", global = true)]
    pub host: String,
    /// Discovery port (`GET /v1/brokers`).
    #[arg(long, default_value_t = 9250, global = true)]
    pub discovery_port: u16,
}

impl ConnectionArgs {
    pub async fn brokers(&self, http: &reqwest::Client) -> Result<Brokers, ClientError> {
        Brokers::discover(http, &self.host, self.discovery_port).await
    }
}
