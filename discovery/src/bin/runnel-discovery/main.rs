//! `runnel-discovery`: a standalone service that tells clients where the brokers are
//! (`GET /v1/brokers`), from a headless service's AAAA records or a static list.

mod config;
mod routes;

use std::io::{ErrorKind, IsTerminal};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::routes::Discovery;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = EnvFilter::try_new(&config.log)
        .with_context(|| format!("RUNNEL_LOG={:?} is not a valid filter", config.log))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stdout().is_terminal()).init();

    let terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let source = config.broker_source()?;
    tracing::info!(?source, refresh_ms = config.discovery_refresh_ms, "runnel-discovery starting");
    let brokers = source.watch(config.refresh());
    let listener = bind(config.listen, config.discovery_port).await?;
    tracing::info!(address = %listener.local_addr()?, "serving GET /v1/brokers and GET /status");

    let app =
        routes::router(Discovery { brokers, producer_port: config.producer_port, consumer_port: config.consumer_port });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_requested(terminate))
        .await
        .context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Binds `listen:port`. The default `::` serves IPv4 too, but fails where IPv6 is disabled
/// (e.g. Docker's default bridge network): then 0.0.0.0 is used instead.
async fn bind(listen: IpAddr, port: u16) -> anyhow::Result<TcpListener> {
    let address = SocketAddr::new(listen, port);
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(listener),
        Err(error)
            if listen.is_unspecified()
                && listen.is_ipv6()
                && !matches!(error.kind(), ErrorKind::AddrInUse | ErrorKind::PermissionDenied) =>
        {
            tracing::warn!(%error, "cannot bind {address} (IPv6 off?); using 0.0.0.0 instead");
            let fallback = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
            TcpListener::bind(fallback).await.with_context(|| format!("cannot bind {fallback}"))
        }
        Err(error) => Err(error).with_context(|| format!("cannot bind {address}")),
    }
}

async fn shutdown_requested(mut terminate: Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
