//! Serving HTTP on a listener with the bounds a connection must keep: a connection limit
//! (beyond it a connection gets one JSON 503 and is closed), a deadline for each request
//! head, and an idle timeout; with TLS, a handshake must end within the head's deadline too.
//! Request bodies have their own deadline where they are read
//! ([`crate::memory::read_body`]).

mod activity;
mod refusal;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::log_every::LogEvery;
use crate::memory::{H2_CONNECTION_WINDOW, H2_STREAMS, H2_STREAM_WINDOW, HTTP1_BUFFER};
use activity::Activity;

/// Refused and failed connections are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// How connections on a port are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionRules {
    /// An HTTP/1.1 request head must arrive within this, counted from when the connection
    /// is opened or its previous response was sent.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// After a close was asked (idle, or shutdown), a response still being written gets
    /// this long before the connection is dropped.
    pub close_grace: Duration,
}

/// Connections open and refused, shared by the ports that share one limit (for metrics).
#[derive(Default)]
pub struct ConnectionStats {
    pub open: AtomicUsize,
    pub refused: Counter,
}

/// A limit on open connections, shared by the listeners given the same one.
#[derive(Clone)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    pub stats: Arc<ConnectionStats>,
    log: Arc<LogEvery>,
}

impl ConnectionLimit {
    /// At most `max` connections; each one refused counts in `refused`.
    pub fn new(max: usize, refused: Counter) -> ConnectionLimit {
        ConnectionLimit {
            slots: Arc::new(Semaphore::new(max.max(1))),
            stats: Arc::new(ConnectionStats { open: AtomicUsize::new(0), refused }),
            log: Arc::new(LogEvery::new(LOG_EVERY)),
        }
    }

    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

/// Serves `router` on `listener` until `stop` turns true, then closes every connection
/// gracefully (in-flight requests finish, within [`ConnectionRules::close_grace`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limit: ConnectionLimit,
    rules: ConnectionRules,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    // Each connection task holds a sender: when all are gone, every connection has closed.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let accept_log = LogEvery::new(LOG_EVERY);
    let handshake_log = Arc::new(LogEvery::new(LOG_EVERY));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: the connection stays in the backlog
                // until one is free.
                accept_log.note(|unlogged| tracing::warn!(port, unlogged, "cannot accept a connection: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = limit.admit() else {
            limit.stats.refused.inc();
            limit.log.note(|unlogged| {
                tracing::warn!(port, %remote, refused_since_last_log = unlogged, "connection limit reached: refusing connections")
            });
            // A TLS client cannot read a plain-text answer: it only sees the connection close.
            if tls.is_none() {
                refusal::refuse(stream);
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection { router: router.clone(), remote, rules, stop: stop.clone() };
        let stats = limit.stats.clone();
        let open = open.clone();
        let (tls, handshake_log) = (tls.clone(), handshake_log.clone());
        tokio::spawn(async move {
            stats.open.fetch_add(1, Ordering::Relaxed);
            match tls {
                None => connection.run(stream).await,
                Some(tls) => match tokio::time::timeout(rules.header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => connection.run(stream).await,
                    Ok(Err(e)) => handshake_log
                        .note(|unlogged| tracing::info!(port, %remote, unlogged, "TLS handshake failed: {e}")),
                    Err(_) => handshake_log.note(
                        |unlogged| tracing::info!(port, %remote, unlogged, "TLS handshake did not finish in time"),
                    ),
                },
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop((slot, open));
        });
    }
    drop(open);
    let _ = all_closed.recv().await;
}

struct Connection {
    router: Router,
    remote: SocketAddr,
    rules: ConnectionRules,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self, stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) {
        let activity = Arc::new(Activity::default());
        let (router, remote) = (self.router.clone(), self.remote);
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // The peer port's refusals name the remote address.
            request.extensions_mut().insert(ConnectInfo(remote));
            let in_flight = requests.begin();
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                drop(in_flight);
                response
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.rules.header_timeout)
            .max_buf_size(HTTP1_BUFFER);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_STREAMS)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .initial_stream_window_size(H2_STREAM_WINDOW);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let mut closing_since: Option<tokio::time::Instant> = None;
        loop {
            let changed = activity.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let idle_deadline = activity.idle_deadline(self.rules.idle_timeout, self.rules.header_timeout);
            let hard_close = closing_since.map(|at| at + self.rules.close_grace);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = self.stop.wait_for(|s| *s), if closing_since.is_none() => {
                    connection.as_mut().graceful_shutdown();
                    closing_since = Some(tokio::time::Instant::now());
                }
                _ = sleep_until(idle_deadline), if closing_since.is_none() => {
                    if activity.idle_deadline(self.rules.idle_timeout, self.rules.header_timeout).is_some_and(|d| d <= tokio::time::Instant::now()) {
                        connection.as_mut().graceful_shutdown();
                        closing_since = Some(tokio::time::Instant::now());
                    }
                }
                _ = sleep_until(hard_close) => return,
                _ = changed => {}
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
