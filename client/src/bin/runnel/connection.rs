//! How the tool reaches the cluster: any broker (or the discovery service) by host name, over
//! HTTP or HTTPS, with a bearer token when the cluster asks for one (SPEC §13).

use std::path::PathBuf;

use anyhow::Context;
use runnel_client::{Access, AccessConfig, Brokers};

#[derive(clap::Args, Clone)]
pub struct ConnectionArgs {
    /// A broker or the discovery service; the broker list is read from it.
    #[arg(long, env = "RUNNEL_HOST", default_value = "localhost", global = true)]
    pub host: String,
    /// Discovery port (`GET /v1/brokers`).
    #[arg(long, default_value_t = 9250, global = true)]
    pub discovery_port: u16,
    /// Bearer token (`runnel token create`) sent with every request.
    #[arg(long, env = "RUNNEL_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Call the brokers over HTTPS.
    #[arg(long, env = "RUNNEL_TLS", global = true, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub tls: bool,
    /// CA certificate(s) (PEM) to trust for the brokers' certificates; implies --tls.
    #[arg(long, env = "RUNNEL_CA", global = true)]
    pub ca: Option<PathBuf>,
}

impl ConnectionArgs {
    /// How requests are made: scheme, CA, token.
    pub fn access(&self) -> anyhow::Result<Access> {
        let ca_pem = (self.ca.as_ref())
            .map(|path| std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display())))
            .transpose()?;
        Ok(Access::new(AccessConfig { token: self.token.clone(), https: self.tls, ca_pem, timeout: None })?)
    }

    /// The broker list, from `--host`.
    pub async fn brokers(&self) -> anyhow::Result<Brokers> {
        Ok(Brokers::discover_with(&self.access()?, &self.host, self.discovery_port).await?)
    }

    /// The URL of `path` on the discovery port of `--host`.
    pub fn discovery_url(&self, access: &Access, path: &str) -> String {
        format!("{}://{}:{}{path}", access.scheme(), self.host, self.discovery_port)
    }
}
