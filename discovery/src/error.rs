//! What can go wrong while finding brokers.

use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoError;
use hickory_resolver::ResolveError;

/// Why a lookup gave no list. A watcher keeps its last good list on any of these, so a DNS hiccup
/// never empties a cluster view.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The configured service name is not a DNS name (an operator typo: retrying will not help).
    #[error("`{service}` is not a valid DNS name: {source}")]
    InvalidServiceName {
        service: String,
        #[source]
        source: ProtoError,
    },
    /// No nameserver override was given and the system configuration could not be read.
    #[error("cannot read the system DNS configuration (/etc/resolv.conf): {0}")]
    SystemConfig(#[source] ResolveError),
    /// The nameserver answered with an error code (SERVFAIL, REFUSED, …): it could not tell.
    #[error("the nameserver answered \"{code}\" to the AAAA lookup of `{service}`")]
    Nameserver { service: String, code: ResponseCode },
    /// The nameserver could not be reached or gave an unusable answer.
    #[error("AAAA lookup of `{service}` failed: {source}")]
    Lookup {
        service: String,
        #[source]
        source: ResolveError,
    },
}
