//! Starting and stopping a broker: storage, Raft, the consumer service, the five listeners
//! (the peer port with its own connection limit, the four client ports sharing one)
//! and the background tasks, and the graceful shutdown order.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::{middleware, Router};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;

use crate::auth::{authenticate, Authenticator};
use crate::bounds::{self, Bounds};
use crate::cluster::{self, form_cluster, load_or_create_node_id, topology, Peers};
use crate::config::Config;
use crate::consensus::{RaftConfig, RaftNode};
use crate::consumer::{self, ConsumerService, ConsumerSettings, GroupOffsets};
use crate::http::{consumer_router, discovery_router, metrics_router, producer_router, AppState};
use crate::limits::{PEER_BODY_LIMIT, QUEUE_MAX_BATCH};
use crate::metrics::Metrics;
use crate::peer::{
    peer_errors_as_json, read_peer_bodies, require_peer_auth, PeerBodies, PeerError, PeerHttp, PeerVerifier,
};
use crate::produce::{self, ProduceService};
use crate::queue::{self, QueueLimits, QueueService};
use crate::reading::{self, PositionReads, ReadSettings};
use crate::replication::{replication_router, Leadership, Replication};
use crate::serving::{self, ConnectionLimit};
use crate::store::{Storage, StorageConfig};
use crate::supervisor::Supervisor;
use crate::timing::SHUTDOWN_DRAIN;
use crate::tls::{peer_client_config, ServerTls};
use crate::topics::TopicService;
use tokio_rustls::TlsAcceptor;

/// A running broker.
pub struct Broker {
    app: Arc<AppState>,
    stop: watch::Sender<bool>,
    tasks: Supervisor,
    /// Reload the client ports' and the peer port's certificates while the broker runs.
    _tls: [Option<ServerTls>; 2],
}

impl Broker {
    pub async fn start(config: Config) -> anyhow::Result<Broker> {
        let soft_open_files = match crate::fd_limit::raise_to_hard_limit() {
            Ok((soft, hard)) => {
                tracing::info!(soft, hard, "open-file limit");
                soft
            }
            Err(e) => {
                tracing::warn!("could not raise the open-file limit: {e}");
                // The usual soft limit.
                1024
            }
        };
        let max_open_files = config.segment_files_bound(soft_open_files);
        tracing::info!(max_open_files, "segment files kept open at most");
        let peer_secret = config.peer_secret()?;
        if peer_secret.is_none() {
            tracing::warn!(
                "RUNNEL_PEER_INSECURE=true: the peer port takes requests from anyone who reaches it, \
                 who can then change or delete data"
            );
        }
        let peer_http = match config.peer_tls_ca.as_deref().map(peer_client_config).transpose()? {
            Some(tls) => {
                PeerHttp::with_tls(peer_secret.clone(), tls).context("cannot set up TLS to the other brokers")?
            }
            None => PeerHttp::new(peer_secret.clone()),
        };
        let tls = config.cert_files().map(ServerTls::start).transpose()?;
        let peer_tls = match (&config.peer_tls_ca, config.peer_cert_files()) {
            (Some(_), Some(files)) if config.cert_files().as_ref() != Some(&files) => Some(ServerTls::start(files)?),
            (Some(_), Some(_)) => tls.clone(),
            _ => None,
        };
        std::fs::create_dir_all(&config.home)
            .with_context(|| format!("cannot create RUNNEL_HOME {}", config.home.display()))?;
        let metrics = Arc::new(Metrics::new());
        let (storage, report) = Storage::open(StorageConfig {
            dir: config.home.join("topics"),
            segment_bytes: config.segment_bytes,
            index_interval_bytes: 4096,
            retention: config.retention.0,
            retention_bytes: (config.retention_bytes > 0).then_some(config.retention_bytes),
            max_open_files,
            disk_reserve: config.disk_reserve,
            max_producers: config.max_producers_per_partition,
        })
        .context("cannot open the segment store")?;
        for t in &report.truncated {
            tracing::warn!(topic = %t.topic, partition = t.partition, segment = %t.segment.display(),
                kept_bytes = t.valid_bytes, dropped_bytes = t.dropped_bytes, reason = %t.reason,
                "dropped a torn or corrupt tail found at start-up");
        }
        tracing::info!(partitions = report.partitions, truncated = report.truncated.len(), "storage recovered");
        let observer = metrics.clone();
        storage.set_fsync_observer(Arc::new(move |d| observer.fsync(d)));

        let (names, ordinal) = topology(&config).await?;
        let node_id = load_or_create_node_id(&config.home).context("cannot read this broker's node id")?;
        let raft = RaftNode::start(RaftConfig {
            node_id,
            peer_addr: format!("{}:{}", names[ordinal as usize], config.peer_port),
            dir: config.home.join("raft"),
            snapshot_every: 5000,
            http: peer_http.clone(),
        })
        .await
        .context("cannot start Raft")?;
        let peers =
            Peers::new(names, ordinal, config.consumer_ranges, config.peer_port, raft.clone(), peer_http.clone());
        let leadership = Leadership::new(raft.clone(), ordinal);
        let memory = config.memory_plan();
        let replication = Replication::new(storage.clone(), peers.clone(), leadership, memory.replication.clone());
        let consumers = Arc::new(ConsumerService::new(
            raft.clone(),
            storage.clone(),
            replication.clone(),
            peers.clone(),
            ConsumerSettings {
                poll_max_bytes: config.poll_max_bytes,
                timeout: config.consumer_timeout(),
                group_retention: config.group_retention.0,
                poll_wait_max: config.poll_wait_max(),
            },
            memory.reads.clone(),
        ));
        let bounds = Bounds::new(replication.clone(), storage.clone(), peers.clone());
        let groups = Arc::new(GroupOffsets::new(raft.clone(), replication.clone(), bounds.clone()));
        let (join_refusal, join_refused) = watch::channel(None);
        let topics = TopicService::new((raft.clone(), storage.clone(), peers.ordinal()), config.auto_create_topics);
        topics.tell(replication.clone());
        let produce = Arc::new(ProduceService::new(replication.clone(), peers.clone(), topics.clone()));
        let reads = Arc::new(PositionReads::new(
            storage.clone(),
            replication.clone(),
            peers.clone(),
            memory.reads.clone(),
            ReadSettings { max_bytes: config.poll_max_bytes, wait_max: Duration::from_millis(config.poll_wait_max_ms) },
        ));
        let queues = Arc::new(QueueService::new(
            (raft.clone(), replication.clone(), storage.clone()),
            (produce.clone(), peers.clone()),
            memory.reads.clone(),
            QueueLimits {
                max_in_flight: config.queue_max_in_flight,
                max_batch: QUEUE_MAX_BATCH,
                max_bytes: config.poll_max_bytes,
                wait_max: Duration::from_millis(config.poll_wait_max_ms),
            },
            metrics.queue.clone(),
        ));
        topics.tell(queues.clone());
        let client_connections = ConnectionLimit::new(memory.client_connections, metrics.connections_refused.clone());
        let app = Arc::new(AppState {
            storage: storage.clone(),
            raft: raft.clone(),
            consumers: consumers.clone(),
            groups,
            produce: produce.clone(),
            reads: reads.clone(),
            queues: queues.clone(),
            topics: topics.clone(),
            bounds: bounds.clone(),
            streams: Arc::new(tokio::sync::Semaphore::new(config.max_streams)),
            replication: replication.clone(),
            metrics,
            peers: peers.clone(),
            producer_port: config.producer_port,
            consumer_port: config.consumer_port,
            max_consumer_topics: config.max_consumer_topics,
            max_lag_series: config.max_lag_series,
            memory: memory.clone(),
            produce_body: config.body_rules(config.max_request_size),
            connections: client_connections.stats.clone(),
            join_refused,
        });

        let auth = Authenticator::new(
            config.auth_key_file.as_deref(),
            config.metrics_auth,
            raft.clone(),
            app.metrics.clone(),
        )?;
        if auth.is_open() {
            tracing::warn!(
                "RUNNEL_AUTH_KEY_FILE is not set: the client ports take requests from anyone who reaches them, \
                 who can then produce to, read and reset any topic or group"
            );
        }
        let client = |router: Router| router.layer(middleware::from_fn_with_state(auth.clone(), authenticate));
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Supervisor::new(stopped.clone());
        let mut peer = raft
            .peer_router()
            .merge(cluster::peer_router(raft.clone(), peers.clone()))
            .merge(consumer::peer_router(consumers.clone()))
            .merge(bounds::peer_router(bounds))
            .merge(produce::peer_router(produce))
            .merge(reading::peer_router(reads))
            .merge(queue::peer_router(queues))
            .merge(replication_router(replication.clone()))
            .fallback(|uri: axum::http::Uri| async move { PeerError::NotFound(uri.path().to_string()) })
            .layer(middleware::map_response(peer_errors_as_json));
        if let Some(secret) = peer_secret {
            let verifier = PeerVerifier::new(secret, PEER_BODY_LIMIT, peer_tls.is_some());
            peer = peer.layer(middleware::from_fn_with_state(verifier, require_peer_auth));
        }
        let bodies = PeerBodies { budget: memory.peer_bodies.clone(), rules: config.body_rules(PEER_BODY_LIMIT) };
        peer = peer.layer(middleware::from_fn_with_state(bodies, read_peer_bodies));
        let peer_connections = ConnectionLimit::new(memory.peer_connections, Counter::default());
        let client_tls = tls.as_ref().map(|t| t.acceptor().clone());
        let peer_acceptor = peer_tls.as_ref().map(|t| t.acceptor().clone());
        // The four client ports: the same connection limit, certificate and token check.
        let client_port = |port, router| (config.listen, port, client(router), &client_connections, client_tls.clone());
        let listeners: [(IpAddr, u16, Router, &ConnectionLimit, Option<TlsAcceptor>); 5] = [
            (config.peer_listen(), config.peer_port, peer, &peer_connections, peer_acceptor),
            client_port(config.discovery_port, discovery_router(app.clone())),
            client_port(config.metrics_port, metrics_router(app.clone())),
            client_port(config.consumer_port, consumer_router(app.clone())),
            client_port(config.producer_port, producer_router(app.clone())),
        ];
        let rules = config.connection_rules();
        for (ip, port, router, limit, tls) in listeners {
            let addr = SocketAddr::new(ip, port);
            let listener =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            tasks.spawn("listener", serving::serve(listener, router, limit.clone(), rules, tls, stopped.clone()));
        }
        tokio::spawn(cluster::agree_ring(raft.clone(), peers.clone(), stopped.clone()));
        tokio::spawn(form_cluster(raft.clone(), peers, join_refusal));
        tasks.spawn("takeovers", replication.clone().run_takeovers(stopped.clone()));
        tasks.spawn("sealing", replication.clone().run_sealing(stopped.clone()));
        tasks.spawn("departures", replication.clone().run_departures(stopped.clone()));
        tasks.spawn("controller", replication.run_controller(stopped.clone()));
        tasks.spawn("topic upkeep", topics.clone().run_upkeep(stopped.clone()));
        tasks.spawn("consumer housekeeping", consumers.run_background(config.auto_commit_interval(), stopped.clone()));
        let retention =
            run_retention(storage, topics.clone(), Duration::from_millis(config.retention_check_ms), stopped);
        tasks.spawn("retention", retention);
        tracing::info!(home = %config.home.display(), listen = %config.listen, producer = config.producer_port,
            consumer = config.consumer_port, tls = tls.is_some(), peer_tls = config.peer_tls_ca.is_some(),
            tokens = !auth.is_open(), "broker started");
        Ok(Broker { app, stop, tasks, _tls: [tls, peer_tls] })
    }

    /// Resolves if a background task ends while the broker runs: the broker is then broken
    /// and should stop (the binary exits non-zero).
    pub async fn failure(&mut self) -> String {
        self.tasks.failure().await
    }

    /// Hands the partitions it leads to other copies (so no write fails), stops accepting,
    /// lets in-flight requests finish (their writes are fsync'd before they are answered),
    /// writes the last auto-commits, then closes storage and Raft.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.app.replication.begin_draining();
        let drained = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
        self.app.replication.hand_over_all().await;
        // Clients still sending get a 503 with Retry-After (and go elsewhere) rather than a
        // refused or reset connection once the listeners close.
        tokio::time::sleep_until(drained).await;
        let _ = self.stop.send(true);
        self.tasks.join().await;
        self.app.storage.close().await;
        self.app.raft.shutdown().await;
        tracing::info!("shutdown complete");
    }
}

async fn run_retention(storage: Storage, topics: Arc<TopicService>, every: Duration, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = topics.limits_applied() => {}
        _ = stop.changed() => return,
    }
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => match storage.enforce_retention().await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(segments = deleted, "retention deleted old segments"),
                Err(e) => tracing::warn!("retention failed: {e}"),
            },
            _ = stop.changed() => break,
        }
    }
}
