//! Every setting of a broker, from flags or `RUNNEL_*` environment variables.
//! The README's configuration table lists the same defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::auth::{KeyError, TokenKey};
use crate::limits::MAX_REQUEST_SIZE_LIMIT;
use crate::memory::{BodyRules, MemoryPlan};
use crate::peer::{PeerSecret, SecretError};
use crate::serving::ConnectionRules;
use crate::size::parse_size;
use crate::store::{DiskReserve, MAX_BATCH_BODY, SEGMENT_BYTES};
use crate::timing::{CLUSTER_MIN_HEADER_TIMEOUT, MEMORY_WAIT, PEER_POOL_IDLE, SHUTDOWN_CLOSE_GRACE};
use crate::tls::{load_certified_key, peer_client_config, CertFiles, TlsError};

/// The smallest and largest `RUNNEL_MEMORY_LIMIT`.
const MIN_MEMORY_LIMIT: usize = 64 << 20;
const MAX_MEMORY_LIMIT: usize = 1 << 40;

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

    /// Turns on bearer tokens for the client ports (SPEC §13): an Ed25519 public key in PEM
    /// (`verify.pem` of `runnel token keygen`) or an HMAC secret of at least 32 bytes.
    /// Without it the client ports are open.
    #[arg(long, env = "RUNNEL_AUTH_KEY_FILE")]
    pub auth_key_file: Option<PathBuf>,
    /// With tokens on, `/metrics` needs one too (any valid token).
    #[arg(long, env = "RUNNEL_METRICS_AUTH", default_value_t = false, action = clap::ArgAction::Set)]
    pub metrics_auth: bool,
    /// Certificate chain (PEM, leaf first): HTTPS on the client ports. Reloaded when it changes.
    #[arg(long, env = "RUNNEL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "RUNNEL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM): TLS on the peer port, and the brokers called verified against
    /// this CA. The peer port serves RUNNEL_PEER_TLS_CERT, or else RUNNEL_TLS_CERT.
    #[arg(long, env = "RUNNEL_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
    /// The peer port's own certificate chain (PEM), when it is not the client ports' (a
    /// private CA's for the brokers' names, say). Reloaded when it changes.
    #[arg(long, env = "RUNNEL_PEER_TLS_CERT", requires = "peer_tls_key", requires = "peer_tls_ca")]
    pub peer_tls_cert: Option<PathBuf>,
    #[arg(long, env = "RUNNEL_PEER_TLS_KEY", requires = "peer_tls_cert")]
    pub peer_tls_key: Option<PathBuf>,

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
    /// Most record bytes one poll returns.
    #[arg(long, env = "RUNNEL_POLL_MAX_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub poll_max_bytes: usize,
    /// Longest `wait` a poll may ask for (a long-poll holds no memory while it waits).
    #[arg(long, env = "RUNNEL_POLL_WAIT_MAX_MS", default_value_t = 30_000)]
    pub poll_wait_max_ms: u64,

    /// Most live streams (SSE and WebSocket reads) open at once; each holds about two reads
    /// of records (`RUNNEL_POLL_MAX_BYTES` each) while its reader is slow.
    #[arg(long, env = "RUNNEL_MAX_STREAMS", default_value_t = 64)]
    pub max_streams: usize,

    /// Most topics one consumer registration may name (each costs cursors and state on every broker).
    #[arg(long, env = "RUNNEL_MAX_CONSUMER_TOPICS", default_value_t = 100)]
    pub max_consumer_topics: usize,

    /// Records of one partition a queue group may have leased or waiting past its first
    /// unacknowledged one (SPEC §14, like Kafka share groups' record locks): `next` returns
    /// fewer once a partition reaches it.
    #[arg(long, env = "RUNNEL_QUEUE_MAX_IN_FLIGHT", default_value_t = 1_000)]
    pub queue_max_in_flight: usize,

    /// Most series of each per-partition kind the metrics port exports: lag
    /// (`runnel_group_lag_records`, one per group and partition this broker leads; beyond it
    /// only each group's total) and `runnel_partition_under_replicated` (beyond it only the
    /// count); 0: totals only.
    #[arg(long, env = "RUNNEL_MAX_LAG_SERIES", default_value_t = 10_000)]
    pub max_lag_series: usize,

    /// Most idempotent producers whose state each partition keeps (SPEC §12); the one that
    /// wrote least recently is forgotten first, and a retry of its older requests is then
    /// stored again.
    #[arg(long, env = "RUNNEL_MAX_PRODUCERS_PER_PARTITION", default_value_t = 1_000)]
    pub max_producers_per_partition: usize,

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
    /// A produce to an unknown topic creates it with the defaults; false: 404 until it is
    /// created (`PUT /v1/topics/{topic}`).
    #[arg(long, env = "RUNNEL_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Memory the broker's buffers may hold in all (bytes, or with KiB/MiB/GiB): connections,
    /// produce bodies, reads and replication each get a share (docs/design.md). Beyond it
    /// requests wait, then get 503 with Retry-After.
    #[arg(long, env = "RUNNEL_MEMORY_LIMIT", default_value = "256MiB", value_parser = parse_bytes)]
    pub memory_limit: usize,
    /// Connections the client ports (all four together) keep open at once; beyond it a new
    /// connection gets a 503 and is closed. Default: what the memory limit's connection
    /// share allows (1,280 at 256 MiB).
    #[arg(long, env = "RUNNEL_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// An HTTP/1.1 request head must arrive within this (from the connection's opening or its
    /// previous response).
    #[arg(long, env = "RUNNEL_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// A request body must arrive within this (408 otherwise).
    #[arg(long, env = "RUNNEL_BODY_TIMEOUT_MS", default_value_t = 15_000)]
    pub body_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed.
    #[arg(long, env = "RUNNEL_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "runnel_broker=debug".
    #[arg(long, env = "RUNNEL_LOG", default_value = "info,openraft=warn")]
    pub log: String,

    /// Remove the committed offsets of a group that has had no member and no commit this long
    /// ("168h", Kafka's default, or "none" to keep them forever).
    #[arg(long, env = "RUNNEL_GROUP_RETENTION", default_value = "168h", value_parser = parse_retention)]
    pub group_retention: Retention,
    /// Most segment files (logs and indexes) open at once; idle ones close beyond it.
    /// 0 = half the open-file limit in force after it is raised (see `segment_files_bound`).
    #[arg(long, env = "RUNNEL_MAX_OPEN_SEGMENT_FILES", default_value_t = 0)]
    pub max_open_segment_files: usize,
    /// Free space on the data disk kept for Raft and metadata: below it, produces get 507.
    /// "auto" (256MiB or 5% of the filesystem, whichever is smaller), bytes ("1GiB"), "N%", or 0.
    #[arg(long, env = "RUNNEL_DISK_RESERVE", default_value = "auto")]
    pub disk_reserve: DiskReserve,
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

/// A size in bytes (see [`parse_size`]) that fits this machine's address space.
fn parse_bytes(value: &str) -> Result<usize, String> {
    parse_size(value).and_then(|n| usize::try_from(n).map_err(|_| format!("'{value}' is too large")))
}

/// The fewest segment files a store works with: a write round may hold its active segment's
/// log, the one it rolls to and an index at once, beside a read.
const MIN_OPEN_SEGMENT_FILES: usize = 4;

/// A setting that keeps the broker from starting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Outside what the broker can work with, named by its environment variable.
    #[error("{variable}={value}: {reason}")]
    Invalid { variable: &'static str, value: String, reason: String },
    #[error("{0}")]
    PeerSecret(#[from] SecretError),
    #[error(
        "{0} form a cluster of several brokers, whose peer port must be authenticated: set \
         RUNNEL_PEER_SECRET_FILE to a file holding a shared secret of at least 32 bytes on every broker \
         (e.g. `head -c 32 /dev/urandom | base64 > peer-secret`), or RUNNEL_PEER_INSECURE=true on a network \
         nobody else can reach"
    )]
    PeerSecretRequired(String),
    #[error("{0}")]
    AuthKey(#[from] KeyError),
    #[error("{0}")]
    Tls(#[from] TlsError),
}

impl Config {
    /// Checks every setting against the others and against what the broker can do; the
    /// first violation names its variable (the binary exits 2 with it).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |variable: &'static str, value: &dyn std::fmt::Display, reason: String| {
            Err(ConfigError::Invalid { variable, value: value.to_string(), reason })
        };
        let ms = |variable: &'static str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                fail(variable, &value, format!("must be between {min} and {max} milliseconds"))
            }
        };
        ms("RUNNEL_CONSUMER_TIMEOUT_MS", self.consumer_timeout_ms, 100, 86_400_000)?;
        ms("RUNNEL_AUTO_COMMIT_INTERVAL_MS", self.auto_commit_interval_ms, 1, 60_000)?;
        if self.auto_commit_interval_ms >= self.consumer_timeout_ms {
            return fail(
                "RUNNEL_AUTO_COMMIT_INTERVAL_MS",
                &self.auto_commit_interval_ms,
                format!("must be shorter than RUNNEL_CONSUMER_TIMEOUT_MS ({})", self.consumer_timeout_ms),
            );
        }
        ms("RUNNEL_POLL_WAIT_MAX_MS", self.poll_wait_max_ms, 0, 300_000)?;
        ms("RUNNEL_RETENTION_CHECK_MS", self.retention_check_ms, 1, 86_400_000)?;
        // Shorter would reset the group of a consumer that comes back soon after its
        // registration lapsed: a misconfiguration, not a choice.
        if let Retention(Some(group_retention)) = self.group_retention {
            if group_retention <= self.consumer_timeout() {
                return fail(
                    "RUNNEL_GROUP_RETENTION",
                    &humantime::format_duration(group_retention),
                    format!("must be longer than RUNNEL_CONSUMER_TIMEOUT_MS ({})", self.consumer_timeout_ms),
                );
            }
        }
        ms("RUNNEL_DISCOVERY_SETTLE_MS", self.discovery_settle_ms, 0, 3_600_000)?;
        ms("RUNNEL_HEADER_TIMEOUT_MS", self.header_timeout_ms, 100, 600_000)?;
        let cluster_min = CLUSTER_MIN_HEADER_TIMEOUT.as_millis() as u64;
        if self.is_cluster() && self.header_timeout_ms < cluster_min {
            return fail(
                "RUNNEL_HEADER_TIMEOUT_MS",
                &self.header_timeout_ms,
                format!(
                    "must be at least {cluster_min} in a cluster: brokers keep idle connections to each other for \
                     {} ms, and the peer port must not close them first",
                    PEER_POOL_IDLE.as_millis()
                ),
            );
        }
        ms("RUNNEL_BODY_TIMEOUT_MS", self.body_timeout_ms, 100, 600_000)?;
        ms("RUNNEL_IDLE_TIMEOUT_MS", self.idle_timeout_ms, 100, 86_400_000)?;
        if !SEGMENT_BYTES.contains(&self.segment_bytes) {
            let reason = format!("must be between {} and {} bytes", SEGMENT_BYTES.start(), SEGMENT_BYTES.end());
            return fail("RUNNEL_SEGMENT_BYTES", &self.segment_bytes, reason);
        }
        if !(1..=MAX_REQUEST_SIZE_LIMIT).contains(&self.max_request_size) {
            let reason = format!("must be between 1 and {MAX_REQUEST_SIZE_LIMIT} bytes (what one stored batch holds)");
            return fail("RUNNEL_MAX_REQUEST_SIZE", &self.max_request_size, reason);
        }
        self.validate_memory()?;
        if !(1..=MAX_BATCH_BODY).contains(&self.poll_max_bytes) {
            return fail(
                "RUNNEL_POLL_MAX_BYTES",
                &self.poll_max_bytes,
                format!("must be between 1 and {MAX_BATCH_BODY}"),
            );
        }
        if self.max_streams > 10_000 {
            return fail("RUNNEL_MAX_STREAMS", &self.max_streams, "must be at most 10000".into());
        }
        if self.max_lag_series > 1_000_000 {
            return fail("RUNNEL_MAX_LAG_SERIES", &self.max_lag_series, "must be at most 1000000".into());
        }
        if !(1..=100_000).contains(&self.max_producers_per_partition) {
            return fail(
                "RUNNEL_MAX_PRODUCERS_PER_PARTITION",
                &self.max_producers_per_partition,
                "must be between 1 and 100000".into(),
            );
        }
        let most_in_flight = crate::consensus::queue_groups::MAX_ACKED_AHEAD as usize;
        if !(1..=most_in_flight).contains(&self.queue_max_in_flight) {
            return fail(
                "RUNNEL_QUEUE_MAX_IN_FLIGHT",
                &self.queue_max_in_flight,
                format!("must be between 1 and {most_in_flight}"),
            );
        }
        if !(1..=10_000).contains(&self.max_consumer_topics) {
            return fail("RUNNEL_MAX_CONSUMER_TOPICS", &self.max_consumer_topics, "must be between 1 and 10000".into());
        }
        let ports = [
            ("RUNNEL_DISCOVERY_PORT", self.discovery_port),
            ("RUNNEL_PRODUCER_PORT", self.producer_port),
            ("RUNNEL_CONSUMER_PORT", self.consumer_port),
            ("RUNNEL_METRICS_PORT", self.metrics_port),
            ("RUNNEL_PEER_PORT", self.peer_port),
        ];
        for (i, (variable, port)) in ports.iter().enumerate() {
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                return fail(variable, port, format!("is also {other}: every port needs its own number"));
            }
        }
        let names = self.named_brokers();
        if names > 0 && names < self.broker_names.len() {
            return fail("RUNNEL_BROKER_NAMES", &self.broker_names.join(","), "a name is empty".into());
        }
        match self.ordinal {
            Some(ordinal) if self.service_name.is_none() && ordinal as usize >= names.max(1) => {
                let reason = format!("must be below the number of RUNNEL_BROKER_NAMES ({})", names.max(1));
                return fail("RUNNEL_ORDINAL", &ordinal, reason);
            }
            _ => {}
        }
        if (1..MIN_OPEN_SEGMENT_FILES).contains(&self.max_open_segment_files) {
            let reason = format!("must be 0 (half the open-file limit) or at least {MIN_OPEN_SEGMENT_FILES}");
            return fail("RUNNEL_MAX_OPEN_SEGMENT_FILES", &self.max_open_segment_files, reason);
        }
        self.peer_secret()?;
        if let Some(path) = &self.auth_key_file {
            TokenKey::load(path)?;
        }
        if let Some(files) = self.cert_files() {
            load_certified_key(&files)?;
        }
        if let Some(ca) = &self.peer_tls_ca {
            peer_client_config(ca)?;
            let Some(files) = self.peer_cert_files() else {
                return fail(
                    "RUNNEL_PEER_TLS_CA",
                    &ca.display(),
                    "the peer port needs a certificate: set RUNNEL_PEER_TLS_CERT and RUNNEL_PEER_TLS_KEY, or RUNNEL_TLS_CERT and RUNNEL_TLS_KEY".into(),
                );
            };
            load_certified_key(&files)?;
        }
        Ok(())
    }

    /// The peer port's certificate with `RUNNEL_PEER_TLS_CA`: its own, or the client ports'.
    pub fn peer_cert_files(&self) -> Option<CertFiles> {
        match (&self.peer_tls_cert, &self.peer_tls_key) {
            (Some(cert), Some(key)) => Some(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
                variables: ["RUNNEL_PEER_TLS_CERT", "RUNNEL_PEER_TLS_KEY"],
            }),
            _ => self.cert_files(),
        }
    }

    /// The certificate of the client ports (and of the peer port with `RUNNEL_PEER_TLS_CA`).
    pub fn cert_files(&self) -> Option<CertFiles> {
        Some(CertFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            variables: ["RUNNEL_TLS_CERT", "RUNNEL_TLS_KEY"],
        })
    }

    /// The memory limit must pay for at least one request of each kind in its shares
    /// (see [`MemoryPlan`]), and the connections asked for.
    fn validate_memory(&self) -> Result<(), ConfigError> {
        let limit = self.memory_limit;
        let fail = |variable: &'static str, value: usize, reason: String| {
            Err(ConfigError::Invalid { variable, value: value.to_string(), reason })
        };
        if !(MIN_MEMORY_LIMIT..=MAX_MEMORY_LIMIT).contains(&limit) {
            let reason = format!("must be between {MIN_MEMORY_LIMIT} (64MiB) and {MAX_MEMORY_LIMIT} (1024GiB) bytes");
            return fail("RUNNEL_MEMORY_LIMIT", limit, reason);
        }
        // Checked against the budgets the broker will enforce, not a second copy of their shares.
        let plan = MemoryPlan::new(limit, None);
        let peer_bodies = plan.peer_bodies.size();
        if self.max_request_size > peer_bodies {
            let reason = format!(
                "must be at most RUNNEL_MEMORY_LIMIT / 16 ({peer_bodies}): a request must fit the memory share of peer bodies"
            );
            return fail("RUNNEL_MAX_REQUEST_SIZE", self.max_request_size, reason);
        }
        let reads = plan.reads.size();
        if self.poll_max_bytes * 2 > reads {
            let reason = format!(
                "must be at most 3/32 of RUNNEL_MEMORY_LIMIT ({}): a poll's records and its response must fit the reads' share",
                reads / 2
            );
            return fail("RUNNEL_POLL_MAX_BYTES", self.poll_max_bytes, reason);
        }
        let allowed = MemoryPlan::connections_allowed(limit);
        match self.max_connections {
            Some(max) if max == 0 || max > allowed => {
                let reason = format!("must be between 1 and {allowed}, what RUNNEL_MEMORY_LIMIT ({limit}) pays for");
                fail("RUNNEL_MAX_CONNECTIONS", max, reason)
            }
            _ => Ok(()),
        }
    }

    /// The memory budgets and connection limit of this configuration.
    pub fn memory_plan(&self) -> MemoryPlan {
        MemoryPlan::new(self.memory_limit, self.max_connections)
    }

    /// How client and peer connections are bounded.
    pub fn connection_rules(&self) -> ConnectionRules {
        ConnectionRules {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            close_grace: SHUTDOWN_CLOSE_GRACE,
        }
    }

    /// How a request body (produce or peer) must arrive.
    pub fn body_rules(&self, limit: usize) -> BodyRules {
        BodyRules { limit, timeout: Duration::from_millis(self.body_timeout_ms), memory_wait: MEMORY_WAIT }
    }

    /// How many segment files the store may keep open, given the soft open-file limit: the
    /// setting, or by default half the limit, leaving the other half to connections, Raft's
    /// files and the rest of the process.
    pub fn segment_files_bound(&self, soft_open_files: u64) -> usize {
        match self.max_open_segment_files {
            0 => usize::try_from(soft_open_files / 2).unwrap_or(usize::MAX).max(MIN_OPEN_SEGMENT_FILES),
            n => n,
        }
    }

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
        let names = self.named_brokers();
        match self.service() {
            Some(service) => {
                Err(ConfigError::PeerSecretRequired(format!("the brokers of RUNNEL_SERVICE_NAME {service}")))
            }
            None if names > 1 => Err(ConfigError::PeerSecretRequired(format!("the {names} RUNNEL_BROKER_NAMES"))),
            None => Ok(Some(PeerSecret::random())),
        }
    }

    /// The headless service of Kubernetes mode, if one is named.
    fn service(&self) -> Option<&str> {
        self.service_name.as_deref().filter(|s| !s.is_empty())
    }

    /// Several brokers: a service, or more than one name.
    fn is_cluster(&self) -> bool {
        self.service().is_some() || self.named_brokers() > 1
    }

    /// How many brokers `RUNNEL_BROKER_NAMES` names (its default is one empty name).
    fn named_brokers(&self) -> usize {
        self.broker_names.iter().filter(|n| !n.is_empty()).count()
    }

    /// Where the peer port listens.
    pub fn peer_listen(&self) -> IpAddr {
        self.peer_listen.unwrap_or(self.listen)
    }

    pub fn consumer_timeout(&self) -> Duration {
        Duration::from_millis(self.consumer_timeout_ms)
    }

    /// The longest wait a long-poll gets: `RUNNEL_POLL_WAIT_MAX_MS`, but at most half the
    /// consumer timeout, since a waiting consumer counts as active only when its poll answers.
    pub fn poll_wait_max(&self) -> Duration {
        Duration::from_millis(self.poll_wait_max_ms.min(self.consumer_timeout_ms / 2))
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
        assert_eq!(c.group_retention, Retention(Some(Duration::from_secs(168 * 3600))));
        assert_eq!((c.producer_port, c.consumer_port, c.peer_port), (9251, 9252, 9255));
    }

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("runnel-broker").chain(args.iter().copied())).expect("parses")
    }

    /// Issue 10: an interval of 0 panicked a background task, a segment size was clamped
    /// without a word, and a request size past what one batch holds gave endless 503s.
    #[test]
    fn settings_the_broker_cannot_work_with_are_refused_by_name() {
        parse(&[]).validate().expect("the defaults are valid");
        let cases: [(&[&str], &str); 11] = [
            (&["--auto-commit-interval-ms", "0"], "RUNNEL_AUTO_COMMIT_INTERVAL_MS"),
            (&["--retention-check-ms", "0"], "RUNNEL_RETENTION_CHECK_MS"),
            (&["--consumer-timeout-ms", "0"], "RUNNEL_CONSUMER_TIMEOUT_MS"),
            (&["--consumer-timeout-ms", "1000", "--auto-commit-interval-ms", "1000"], "RUNNEL_AUTO_COMMIT_INTERVAL_MS"),
            (&["--segment-bytes", "1"], "RUNNEL_SEGMENT_BYTES"),
            (&["--max-request-size", "30000000"], "RUNNEL_MAX_REQUEST_SIZE"),
            (&["--max-request-size", "20000000"], "RUNNEL_MAX_REQUEST_SIZE"),
            (&["--peer-port", "9251"], "RUNNEL_PEER_PORT"),
            (&["--broker-names", "a,b,c", "--ordinal", "3"], "RUNNEL_ORDINAL"),
            (&["--consumer-timeout-ms", "2000", "--group-retention", "2s"], "RUNNEL_GROUP_RETENTION"),
            (&["--max-open-segment-files", "3"], "RUNNEL_MAX_OPEN_SEGMENT_FILES"),
        ];
        for (args, variable) in cases {
            let error = parse(args).validate().expect_err("refused");
            assert!(matches!(&error, ConfigError::Invalid { variable: v, .. } if *v == variable), "{args:?}: {error}");
        }
        parse(&["--max-request-size", &MAX_REQUEST_SIZE_LIMIT.to_string(), "--memory-limit", "1GiB"])
            .validate()
            .expect("the limit itself is valid");
    }

    /// Issue 11: by default the store keeps half the open-file limit for segment files.
    #[test]
    fn open_segment_files_default_to_half_the_open_file_limit() {
        assert_eq!(parse(&[]).segment_files_bound(1_048_576), 524_288);
        assert_eq!(parse(&[]).segment_files_bound(256), 128);
        assert_eq!(parse(&[]).segment_files_bound(2), MIN_OPEN_SEGMENT_FILES);
        assert_eq!(parse(&["--max-open-segment-files", "10"]).segment_files_bound(256), 10);
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
    fn memory_settings_take_units_and_must_pay_for_what_they_bound() {
        assert_eq!(parse(&[]).memory_limit, 256 << 20);
        assert_eq!(parse(&["--memory-limit", "1GiB"]).memory_limit, 1 << 30);
        assert_eq!(parse(&["--memory-limit", "512k"]).memory_limit, 512 << 10);
        assert_eq!(parse(&["--memory-limit", "1000"]).memory_limit, 1000);
        assert!(Config::try_parse_from(["runnel-broker", "--memory-limit", "lots"]).is_err());
        assert!(Config::try_parse_from(["runnel-broker", "--memory-limit", "5TB!"]).is_err());
        let refused: [(&[&str], &str); 4] = [
            (&["--memory-limit", "32MiB"], "RUNNEL_MEMORY_LIMIT"),
            (&["--memory-limit", "64MiB", "--max-request-size", "8388608"], "RUNNEL_MAX_REQUEST_SIZE"),
            (&["--memory-limit", "64MiB", "--poll-max-bytes", "8388608"], "RUNNEL_POLL_MAX_BYTES"),
            (&["--max-connections", "100000"], "RUNNEL_MAX_CONNECTIONS"),
        ];
        for (args, variable) in refused {
            let error = parse(args).validate().expect_err("refused");
            assert!(matches!(&error, ConfigError::Invalid { variable: v, .. } if *v == variable), "{args:?}: {error}");
        }
        parse(&["--max-connections", "1000"]).validate().expect("fewer connections than the memory pays for");
        parse(&["--header-timeout-ms", "1500"]).validate().expect("a single broker may use a short head timeout");
        let cluster = ["--broker-names", "a,b,c", "--peer-insecure", "true", "--header-timeout-ms", "1500"];
        let error = parse(&cluster).validate().expect_err("refused in a cluster");
        assert!(matches!(&error, ConfigError::Invalid { variable: "RUNNEL_HEADER_TIMEOUT_MS", .. }), "{error}");
    }

    #[test]
    fn the_disk_reserve_is_auto_unless_set() {
        assert_eq!(parse(&[]).disk_reserve, DiskReserve::Auto);
        assert_eq!(parse(&["--disk-reserve", "1GiB"]).disk_reserve, DiskReserve::Bytes(1 << 30));
        assert_eq!(parse(&["--disk-reserve", "10%"]).disk_reserve, DiskReserve::Percent(10));
        assert!(Config::try_parse_from(["runnel-broker", "--disk-reserve", "lots"]).is_err());
    }

    #[test]
    fn retention_none_disables() {
        let c = Config::try_parse_from(["runnel-broker", "--retention", "none"]).expect("parse");
        assert_eq!(c.retention, Retention(None));
        assert!(Config::try_parse_from(["runnel-broker", "--retention", "soon"]).is_err());
        parse(&["--group-retention", "none"]).validate().expect("offsets may be kept forever");
        parse(&["--consumer-timeout-ms", "1000", "--group-retention", "2s"])
            .validate()
            .expect("longer than the timeout");
    }

    #[test]
    fn a_long_poll_waits_at_most_half_the_consumer_timeout() {
        assert_eq!(parse(&[]).poll_wait_max(), Duration::from_secs(30), "the default");
        let short = parse(&["--consumer-timeout-ms", "1000"]);
        assert!(short.validate().is_ok(), "a short consumer timeout is no error");
        assert_eq!(short.poll_wait_max(), Duration::from_millis(500));
        assert!(parse(&["--poll-wait-max-ms", "300001"]).validate().is_err());
    }
}
