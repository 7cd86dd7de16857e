//! Every setting of `runnel-discovery`, from flags or `RUNNEL_*` environment variables
//! (documented in discovery/README.md).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::bail;
use clap::{ArgGroup, Parser};
use runnel_discovery::BrokerSource;

#[derive(Debug, Parser)]
#[command(name = "runnel-discovery", version, about = "Serves GET /v1/brokers: where the Runnel brokers are")]
#[command(group(ArgGroup::new("brokers").required(true).args(["service_name", "broker_names"])))]
pub struct Config {
    /// Kubernetes headless service whose AAAA records are the brokers, e.g.
    /// runnel.streams.svc.cluster.local (the whole name: search domains are not used).
    #[arg(long, env = "RUNNEL_SERVICE_NAME", conflicts_with = "broker_names")]
    pub service_name: Option<String>,

    /// Comma-separated broker names, when there is no headless service to look up.
    #[arg(long, env = "RUNNEL_BROKER_NAMES", value_delimiter = ',')]
    pub broker_names: Vec<String>,

    /// Address to bind; `::` also accepts IPv4 (and falls back to 0.0.0.0 where IPv6 is off).
    #[arg(long, env = "RUNNEL_LISTEN", default_value_t = IpAddr::V6(Ipv6Addr::UNSPECIFIED))]
    pub listen: IpAddr,

    /// Port serving GET /v1/brokers and GET /status.
    #[arg(long, env = "RUNNEL_DISCOVERY_PORT", default_value_t = 9250)]
    pub discovery_port: u16,

    /// Producer port announced to clients (every broker uses the same ports).
    #[arg(long, env = "RUNNEL_PRODUCER_PORT", default_value_t = 9251)]
    pub producer_port: u16,

    /// Consumer port announced to clients.
    #[arg(long, env = "RUNNEL_CONSUMER_PORT", default_value_t = 9252)]
    pub consumer_port: u16,

    /// How often the headless service is looked up again, in milliseconds (at least 100).
    #[arg(long, env = "RUNNEL_DISCOVERY_REFRESH_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub discovery_refresh_ms: u64,

    /// Nameserver `ip:port` to ask instead of the system's (/etc/resolv.conf).
    #[arg(long, env = "RUNNEL_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,

    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. `info` or `runnel_discovery=debug`.
    #[arg(long, env = "RUNNEL_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    /// Where the brokers are; an empty name or list is refused (it could never find a broker).
    pub fn broker_source(&self) -> anyhow::Result<BrokerSource> {
        match &self.service_name {
            Some(service) if service.trim().is_empty() => {
                bail!("RUNNEL_SERVICE_NAME is empty: give the headless service's name")
            }
            Some(service) => {
                Ok(BrokerSource::Headless { service: service.trim().to_owned(), dns_server: self.dns_server })
            }
            None => {
                let names: Vec<String> = self
                    .broker_names
                    .iter()
                    .map(|name| name.trim())
                    .filter(|name| !name.is_empty())
                    .map(String::from)
                    .collect();
                if names.is_empty() {
                    bail!("RUNNEL_BROKER_NAMES is empty: give a comma-separated list of broker names");
                }
                Ok(BrokerSource::Static(names))
            }
        }
    }

    pub fn refresh(&self) -> Duration {
        Duration::from_millis(self.discovery_refresh_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("runnel-discovery").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = parse(&["--service-name", "runnel.streams.svc.cluster.local"]).expect("valid");
        assert_eq!(config.listen, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!((config.discovery_port, config.producer_port, config.consumer_port), (9250, 9251, 9252));
        assert_eq!(config.refresh(), Duration::from_secs(5));
        assert_eq!(
            config.broker_source().expect("a source"),
            BrokerSource::headless("runnel.streams.svc.cluster.local")
        );
    }

    #[test]
    fn a_static_list_is_split_and_trimmed() {
        let config = parse(&["--broker-names", "a.local, b.local,,c.local"]).expect("valid");
        let expected = BrokerSource::Static(vec!["a.local".into(), "b.local".into(), "c.local".into()]);
        assert_eq!(config.broker_source().expect("a source"), expected);
    }

    #[test]
    fn empty_sources_are_refused() {
        assert!(parse(&["--broker-names", ", ,"]).expect("parses").broker_source().is_err());
        assert!(parse(&["--service-name", " "]).expect("parses").broker_source().is_err());
    }

    #[test]
    fn exactly_one_source_is_required() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--service-name", "s.local", "--broker-names", "a"]).is_err());
        assert!(parse(&["--service-name", "s.local", "--discovery-refresh-ms", "10"]).is_err());
    }
}
