//! The background task behind [`BrokerSource::watch`](crate::BrokerSource::watch).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::headless_lookup::HeadlessLookup;
use crate::{BrokerSource, DiscoveryError};

/// Faster refreshes would only load the nameserver.
const MIN_REFRESH: Duration = Duration::from_millis(100);

pub(crate) fn watch(source: BrokerSource, every: Duration) -> watch::Receiver<Vec<String>> {
    match source {
        BrokerSource::Static(names) => watch::channel(names).1,
        BrokerSource::Headless { service, dns_server } => {
            let (sender, receiver) = watch::channel(Vec::new());
            tokio::spawn(refresh(service, dns_server, every.max(MIN_REFRESH), sender));
            receiver
        }
    }
}

async fn refresh(service: String, dns_server: Option<SocketAddr>, every: Duration, sender: watch::Sender<Vec<String>>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut lookup = None;
    let mut state = Published { service, sender, answered: false, last_error: None };
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = state.sender.closed() => return,
        }
        match look_up(&mut lookup, &state.service, dns_server).await {
            Ok(brokers) => state.publish(brokers),
            Err(error) => state.report(&error),
        }
    }
}

/// Builds the resolver on first use (and again after a failure to build it), then asks it.
async fn look_up(
    cached: &mut Option<HeadlessLookup>,
    service: &str,
    dns_server: Option<SocketAddr>,
) -> Result<Vec<String>, DiscoveryError> {
    let lookup = match cached {
        Some(lookup) => lookup,
        None => cached.insert(HeadlessLookup::new(service, dns_server)?),
    };
    lookup.addresses().await
}

/// What the receivers see, and what was last logged about it.
struct Published {
    service: String,
    sender: watch::Sender<Vec<String>>,
    answered: bool,
    last_error: Option<String>,
}

impl Published {
    fn publish(&mut self, brokers: Vec<String>) {
        let service = &self.service;
        if self.last_error.take().is_some() {
            tracing::info!(%service, "broker lookup works again");
        }
        if !self.answered {
            self.answered = true;
            tracing::info!(%service, count = brokers.len(), ?brokers, "brokers found");
            self.sender.send_replace(brokers);
        } else if *self.sender.borrow() != brokers {
            let before = self.sender.send_replace(brokers);
            let after = self.sender.borrow();
            let added: Vec<&String> = after.iter().filter(|name| !before.contains(name)).collect();
            let removed: Vec<&String> = before.iter().filter(|name| !after.contains(name)).collect();
            tracing::info!(%service, count = after.len(), ?added, ?removed, "brokers changed");
        }
    }

    /// Warns once per distinct error, so a long outage does not flood the log.
    fn report(&mut self, error: &DiscoveryError) {
        let (service, message, known) = (&self.service, error.to_string(), self.sender.borrow().len());
        if self.last_error.as_deref() == Some(message.as_str()) {
            tracing::debug!(%service, error = %message, known, "broker lookup still failing");
        } else {
            tracing::warn!(%service, error = %message, known, "broker lookup failed; keeping the last known brokers");
            self.last_error = Some(message);
        }
    }
}
