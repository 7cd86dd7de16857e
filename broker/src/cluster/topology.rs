//! Who the brokers are: the static list (`RUNNEL_BROKER_NAMES` + `RUNNEL_ORDINAL`), or a
//! Kubernetes StatefulSet behind a headless service (`RUNNEL_SERVICE_NAME`). In the second
//! form the service's AAAA records say how many brokers there are (one per pod, ready or not,
//! with `publishNotReadyAddresses`), the hostname `name-N` gives this broker's ordinal, and
//! broker `i` is reached at the pod's stable DNS name `name-i.{service}`, which survives the
//! pod moving to another address.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use runnel_discovery::{ordinal_from_hostname, BrokerSource};

use crate::config::Config;

/// How often the service is looked up while the brokers are starting.
const LOOKUP_EVERY: Duration = Duration::from_millis(500);

/// Broker names in ordinal order, and this broker's ordinal.
pub async fn topology(config: &Config) -> anyhow::Result<(Vec<String>, u32)> {
    let Some(service) = config.service_name.as_deref().filter(|s| !s.is_empty()) else {
        let names: Vec<String> = config.broker_names.iter().filter(|n| !n.is_empty()).cloned().collect();
        if names.is_empty() {
            let host = if config.listen.is_unspecified() { "localhost".to_string() } else { config.listen.to_string() };
            return Ok((vec![host], 0));
        }
        if config.ordinal.unwrap_or(0) as usize >= names.len() {
            bail!(
                "RUNNEL_ORDINAL {} is not below the {} RUNNEL_BROKER_NAMES",
                config.ordinal.unwrap_or(0),
                names.len()
            );
        }
        return Ok((names, config.ordinal.unwrap_or(0)));
    };
    let hostname = hostname()?;
    let ordinal = match config.ordinal {
        Some(ordinal) => ordinal,
        None => ordinal_from_hostname(&hostname).with_context(|| {
            format!("hostname {hostname:?} is not a StatefulSet pod name (name-N); set RUNNEL_ORDINAL")
        })?,
    };
    let base = hostname.split('.').next().and_then(|h| h.rsplit_once('-')).map_or(hostname.as_str(), |(b, _)| b);
    // A StatefulSet creates pod N only after pods 0 to N-1, so this pod's ordinal is a floor
    // for the count: the service may lack a pod that is restarting (its record gone meanwhile).
    let count = settled_count(service, config).await?.max(ordinal + 1);
    let names = (0..count).map(|i| format!("{base}-{i}.{service}")).collect();
    tracing::info!(%service, count, ordinal, "brokers found through the headless service");
    Ok((names, ordinal))
}

/// The number of AAAA records of `service` once it has stopped changing for the settle time
/// (the pods of a StatefulSet with parallel pod management appear within moments of each other).
async fn settled_count(service: &str, config: &Config) -> anyhow::Result<u32> {
    let source = BrokerSource::Headless { service: service.to_string(), dns_server: config.dns_server };
    let settle = Duration::from_millis(config.discovery_settle_ms);
    let mut last: Option<(usize, Instant)> = None;
    loop {
        match source.resolve().await {
            Ok(addresses) if !addresses.is_empty() => {
                let since = match last {
                    Some((count, since)) if count == addresses.len() => since,
                    _ => Instant::now(),
                };
                if since.elapsed() >= settle {
                    return Ok(addresses.len() as u32);
                }
                last = Some((addresses.len(), since));
            }
            Ok(_) => tracing::info!(%service, "no brokers in the headless service yet"),
            Err(e) => tracing::warn!(%service, "looking up the headless service failed: {e}"),
        }
        tokio::time::sleep(LOOKUP_EVERY).await;
    }
}

fn hostname() -> anyhow::Result<String> {
    if let Some(name) = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()) {
        return Ok(name);
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").context("cannot read this host's name")?;
    Ok(name.trim().to_string())
}
