//! Every setting of a broker, from flags or `RUNNEL_*` environment variables.
//! The README's configuration table lists the same defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::peer_auth::{PeerSecret, SecretError};

#[derive(Debug, Clone, Parser)]
#[command(name = "runnel-broker", version, about = "Runnel broker: a partitioned event log with a stateless HTTP API")]
pub struct Config {
    /// Data directory (segments, Raft log and snapshots).
    #[arg(long, env = "RUNNEL_HOME", default_value = "./runnel-data")]
    pub home: PathBuf,

    /// Address every listener binds to (use 127.0.0.2, 127.0.0.3, … to run several brokers on one machine).
    #[arg(long, env = "RUNNEL_LISTEN", default_value = "0.0.0.0")]
    pub listen: IpAddr,

    #[arg(long, env = "RUNNEL_DISCOVERY_PORT", default_value_t = 9250)]
    pub discovery_port: u16,
    #[arg(long, env = "RUNNEL_PRODUCER_PORT", default_value_t = 9251)]
    pub producer_port: u16,
    #[arg(long, env = "RUNNEL_CONSUMER_PORT", default_value_t = 9252)]
    pub consumer_port: u16,
    #[arg(long, env = "RUNNEL_METRICS_PORT", default_value_t = 9253)]
    pub metrics_port: u16,
    /// Broker-to-broker traffic (Raft, replication, forwarding).
    #[arg(long, env = "RUNNEL_PEER_PORT", default_value_t = 9255)]
    pub peer_port: u16,
    /// Address the peer port binds to instead of `listen` (e.g. a private network's).
    #[arg(long, env = "RUNNEL_PEER_LISTEN")]
    pub peer_listen: Option<IpAddr>,
    /// File holding the secret (at least 32 bytes, trimmed) that every broker-to-broker request
    /// is signed with; the same file on every broker. Required for a cluster of several brokers.
    #[arg(long, env = "RUNNEL_PEER_SECRET_FILE")]
    pub peer_secret_file: Option<PathBuf>,
    /// Let a cluster of several brokers run without a peer secret: anyone who reaches the peer
    /// port can then change or delete data. Only for a network nobody else can reach.
    #[arg(long, env = "RUNNEL_PEER_INSECURE", default_value_t = false, action = clap::ArgAction::Set)]
    pub peer_insecure: bool,

    /// Comma-separated broker host names in ordinal order; empty means a single-broker cluster.
    #[arg(long, env = "RUNNEL_BROKER_NAMES", value_delimiter = ',', default_value = "")]
    pub broker_names: Vec<String>,
    /// This broker's index in `broker_names` (default 0); with a service name, taken from the hostname `name-N`.
    #[arg(long, env = "RUNNEL_ORDINAL")]
    pub ordinal: Option<u32>,

    /// Kubernetes mode: the headless service whose AAAA records list the brokers (e.g.
    /// `runnel.streams.svc.cluster.local`); broker i is then `{name}-i.{service}`.
    #[arg(long, env = "RUNNEL_SERVICE_NAME", conflicts_with = "broker_names")]
    pub service_name: Option<String>,
    /// Nameserver `ip:port` for the service lookup instead of /etc/resolv.conf's.
    #[arg(long, env = "RUNNEL_DNS_SERVER")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// The service's record count must stay the same this long before the broker trusts it.
    #[arg(long, env = "RUNNEL_DISCOVERY_SETTLE_MS", default_value_t = 3000)]
    pub discovery_settle_ms: u64,

    /// Partitions each broker holds per topic (PolarStreams' consumer ranges).
    #[arg(long, env = "RUNNEL_CONSUMER_RANGES", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub consumer_ranges: u32,

    /// Largest produce request body in bytes; larger ones get 413.
    #[arg(long, env = "RUNNEL_MAX_REQUEST_SIZE", default_value_t = 1024 * 1024)]
    pub max_request_size: usize,
    /// Produce bytes in flight (received, not yet durable) across all requests; beyond it requests wait.
    #[arg(long, env = "RUNNEL_PRODUCE_BUFFER", default_value_t = 64 * 1024 * 1024)]
    pub produce_buffer: usize,
    /// Most record bytes one poll returns.
    #[arg(long, env = "RUNNEL_POLL_MAX_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub poll_max_bytes: usize,

    /// A consumer that makes no request for this long is unregistered.
    #[arg(long, env = "RUNNEL_CONSUMER_TIMEOUT_MS", default_value_t = 120_000)]
    pub consumer_timeout_ms: u64,
    /// How often auto-commits from polls are gathered into one Raft entry.
    #[arg(long, env = "RUNNEL_AUTO_COMMIT_INTERVAL_MS", default_value_t = 200)]
    pub auto_commit_interval_ms: u64,

    /// Segment file size at which a partition rolls to a new segment.
    #[arg(long, env = "RUNNEL_SEGMENT_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub segment_bytes: u64,
    /// Delete segments older than this ("168h", "30m", or "none" to keep forever).
    #[arg(long, env = "RUNNEL_RETENTION", default_value = "168h", value_parser = parse_retention)]
    pub retention: Retention,
    /// Delete the oldest segments of a partition while it is larger than this many bytes (0 = no limit).
    #[arg(long, env = "RUNNEL_RETENTION_BYTES", default_value_t = 0)]
    pub retention_bytes: u64,
    /// How often retention runs.
    #[arg(long, env = "RUNNEL_RETENTION_CHECK_MS", default_value_t = 60_000)]
    pub retention_check_ms: u64,

    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "runnel_broker=debug".
    #[arg(long, env = "RUNNEL_LOG", default_value = "info,openraft=warn")]
    pub log: String,
}

/// How long records are kept; `None` keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

fn parse_retention(value: &str) -> Result<Retention, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(Retention(None));
    }
    humantime::parse_duration(value).map(|d| Retention(Some(d))).map_err(|e| format!("{e} (examples: 168h, 30m, none)"))
}

/// A setting that keeps the broker from starting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    PeerSecret(#[from] SecretError),
    #[error(
        "{0} form a cluster of several brokers, whose peer port must be authenticated: set \
         RUNNEL_PEER_SECRET_FILE to a file holding a shared secret of at least 32 bytes on every broker \
         (e.g. `head -c 32 /dev/urandom | base64 > peer-secret`), or RUNNEL_PEER_INSECURE=true on a network \
         nobody else can reach"
    )]
    PeerSecretRequired(String),
}

impl Config {
    /// The secret broker-to-broker requests are signed and checked with (SPEC §13): the file's,
    /// if one is set; none with `RUNNEL_PEER_INSECURE=true`; for a single broker without either,
    /// a random one, so its peer port (which no other broker calls) answers no one.
    pub fn peer_secret(&self) -> Result<Option<PeerSecret>, ConfigError> {
        if let Some(path) = &self.peer_secret_file {
            return Ok(Some(PeerSecret::load(path)?));
        }
        if self.peer_insecure {
            return Ok(None);
        }
        let names = self.broker_names.iter().filter(|n| !n.is_empty()).count();
        match self.service_name.as_deref().filter(|s| !s.is_empty()) {
            Some(service) => {
                Err(ConfigError::PeerSecretRequired(format!("the brokers of RUNNEL_SERVICE_NAME {service}")))
            }
            None if names > 1 => Err(ConfigError::PeerSecretRequired(format!("the {names} RUNNEL_BROKER_NAMES"))),
            None => Ok(Some(PeerSecret::random())),
        }
    }

    /// Where the peer port listens.
    pub fn peer_listen(&self) -> IpAddr {
        self.peer_listen.unwrap_or(self.listen)
    }

    pub fn consumer_timeout(&self) -> Duration {
        Duration::from_millis(self.consumer_timeout_ms)
    }

    pub fn auto_commit_interval(&self) -> Duration {
        Duration::from_millis(self.auto_commit_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_single_broker() {
        let c = Config::try_parse_from(["runnel-broker"]).expect("defaults parse");
        assert_eq!(c.home, PathBuf::from("./runnel-data"));
        assert_eq!((c.ordinal, c.service_name), (None, None));
        assert_eq!(c.retention, Retention(Some(Duration::from_secs(168 * 3600))));
        assert_eq!((c.producer_port, c.consumer_port, c.peer_port), (9251, 9252, 9255));
    }

    #[test]
    fn a_cluster_needs_a_peer_secret_and_a_single_broker_none() {
        let three = ["runnel-broker", "--broker-names", "a,b,c"];
        let err = Config::try_parse_from(three).expect("parse").peer_secret().expect_err("refused");
        assert!(err.to_string().contains("RUNNEL_PEER_SECRET_FILE"), "{err}");
        let k8s = Config::try_parse_from(["runnel-broker", "--service-name", "runnel.svc"]).expect("parse");
        assert!(k8s.peer_secret().is_err());
        let insecure = Config::try_parse_from([&three[..], &["--peer-insecure", "true"]].concat()).expect("parse");
        assert!(insecure.peer_secret().expect("allowed").is_none());
        let single = Config::try_parse_from(["runnel-broker", "--broker-names", "a"]).expect("parse");
        assert!(single.peer_secret().expect("allowed").is_some(), "a single broker gets a random secret");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        let with_file = [&three[..], &["--peer-secret-file", file.to_str().expect("utf-8")]].concat();
        let missing = Config::try_parse_from(&with_file).expect("parse").peer_secret().expect_err("unreadable");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        std::fs::write(&file, "x".repeat(40)).expect("write");
        assert!(Config::try_parse_from(&with_file).expect("parse").peer_secret().expect("loads").is_some());
    }

    #[test]
    fn retention_none_disables() {
        let c = Config::try_parse_from(["runnel-broker", "--retention", "none"]).expect("parse");
        assert_eq!(c.retention, Retention(None));
        assert!(Config::try_parse_from(["runnel-broker", "--retention", "soon"]).is_err());
    }
}
