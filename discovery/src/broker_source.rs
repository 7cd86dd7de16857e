//! Where the list of brokers comes from (SPEC §5): a static list or a headless service.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use crate::headless_lookup::HeadlessLookup;
use crate::{broker_watch, DiscoveryError};

/// Where brokers are found. Brokers use it to find their peers, the discovery service to answer
/// `GET /v1/brokers`, and clients to find brokers without a discovery service.
///
/// ```no_run
/// # async fn example() -> Result<(), runnel_discovery::DiscoveryError> {
/// use std::time::Duration;
/// use runnel_discovery::BrokerSource;
///
/// let source = BrokerSource::headless("runnel.streams.svc.cluster.local");
/// let brokers = source.resolve().await?; // e.g. ["[fd00::2]", "[fd00::3]"]
/// let url = format!("http://{}:9251/status", brokers[0]);
///
/// let mut current = source.watch(Duration::from_secs(5));
/// while current.changed().await.is_ok() {
///     println!("brokers now: {:?}", *current.borrow());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerSource {
    /// Names given by the operator (`RUNNEL_BROKER_NAMES`), returned as given and in that order,
    /// because a broker's position in the list is its ordinal.
    Static(Vec<String>),
    /// The AAAA records of a Kubernetes headless service (`RUNNEL_SERVICE_NAME`): one per pod,
    /// including pods not ready yet when the service has `publishNotReadyAddresses: true`.
    Headless {
        /// The whole name, e.g. `runnel.streams.svc.cluster.local`; search domains are not used.
        service: String,
        /// A nameserver `ip:port` to ask instead of the system's (`/etc/resolv.conf`): for tests,
        /// or a cluster DNS that the container's resolv.conf does not point at.
        dns_server: Option<SocketAddr>,
    },
}

impl BrokerSource {
    /// The headless service `service`, looked up through the system's nameservers.
    pub fn headless(service: impl Into<String>) -> Self {
        Self::Headless { service: service.into(), dns_server: None }
    }

    /// The brokers right now. Headless addresses are `[ip]` literals (so `http://{name}:{port}`
    /// works), sorted and without duplicates; a service with no records gives an empty list.
    pub async fn resolve(&self) -> Result<Vec<String>, DiscoveryError> {
        match self {
            Self::Static(names) => Ok(names.clone()),
            Self::Headless { service, dns_server } => HeadlessLookup::new(service, *dns_server)?.addresses().await,
        }
    }

    /// The brokers, kept up to date by a background task that looks them up every `every`
    /// (at least 100 ms). The first lookup runs at once and is always announced through
    /// `changed()`, even when empty; later ones only when the list changes. A failed lookup keeps
    /// the last good list (and is logged), so a DNS outage never empties the view. The task
    /// stops when every receiver is dropped. A static list is the value from the start and never
    /// changes (its sender is already gone, so `changed()` returns an error at once).
    ///
    /// Must be called inside a Tokio runtime (it spawns the task).
    pub fn watch(self, every: Duration) -> watch::Receiver<Vec<String>> {
        broker_watch::watch(self, every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_static_list_is_returned_as_given() {
        let names = vec!["runnel-1.local".to_owned(), "runnel-0.local".to_owned()];
        let source = BrokerSource::Static(names.clone());
        assert_eq!(source.resolve().await.expect("static lists never fail"), names);
        let watched = source.watch(Duration::from_millis(100));
        assert_eq!(*watched.borrow(), names);
    }

    #[tokio::test]
    async fn an_invalid_service_name_is_a_typed_error() {
        let source =
            BrokerSource::Headless { service: "a..b".to_owned(), dns_server: Some(([127, 0, 0, 1], 9).into()) };
        assert!(matches!(source.resolve().await, Err(DiscoveryError::InvalidServiceName { .. })));
    }
}
