use std::io::IsTerminal;

use clap::Parser;
use runnel_broker::config::Config;
use runnel_broker::server::Broker;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    runnel_broker::allocator::limit_arenas();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let config = Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("runnel-broker: invalid configuration: {e}");
        std::process::exit(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut broker = Broker::start(config).await?;
    let failure = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = terminate.recv() => None,
        failure = broker.failure() => Some(failure),
    };
    broker.shutdown().await;
    match failure {
        Some(failure) => anyhow::bail!("the broker stopped because {failure}"),
        None => Ok(()),
    }
}
