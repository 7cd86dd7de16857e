//! The AAAA lookup of a Kubernetes headless service, with hickory-resolver.

use std::net::{Ipv6Addr, SocketAddr};

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};

use crate::DiscoveryError;

/// A resolver bound to one service name, built once and reused by every refresh.
pub(crate) struct HeadlessLookup {
    service: String,
    fqdn: Name,
    resolver: TokioResolver,
}

impl HeadlessLookup {
    /// Reads the system DNS configuration unless `dns_server` overrides it.
    pub(crate) fn new(service: &str, dns_server: Option<SocketAddr>) -> Result<Self, DiscoveryError> {
        let fqdn = fully_qualified(service)?;
        let builder = match dns_server {
            Some(server) => {
                let servers = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), servers),
                    TokioConnectionProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(DiscoveryError::SystemConfig)?,
        };
        Ok(Self { service: service.to_owned(), fqdn, resolver: builder.build() })
    }

    /// The service's AAAA records as `[ip]` literals, sorted by address, without duplicates.
    /// A name with no records (NXDOMAIN, or a service without pods) is an empty list, not an error.
    pub(crate) async fn addresses(&self) -> Result<Vec<String>, DiscoveryError> {
        // Pods come and go faster than record TTLs: every refresh asks the nameserver.
        self.resolver.clear_cache();
        match self.resolver.ipv6_lookup(self.fqdn.clone()).await {
            Ok(lookup) => Ok(render(lookup.iter().map(|record| record.0).collect())),
            Err(error) => match answered_code(&error) {
                Some(ResponseCode::NXDomain | ResponseCode::NoError) => Ok(Vec::new()),
                Some(code) => Err(DiscoveryError::Nameserver { service: self.service.clone(), code }),
                None => Err(DiscoveryError::Lookup { service: self.service.clone(), source: error }),
            },
        }
    }
}

/// The response code when the nameserver did answer, but without records. hickory reports
/// NXDOMAIN and an empty NOERROR (the nameserver says there are none: an empty list) the same
/// way as SERVFAIL or REFUSED (it could not say, e.g. CoreDNS cannot reach the Kubernetes API:
/// an error, so a watcher keeps its last list).
fn answered_code(error: &ResolveError) -> Option<ResponseCode> {
    match error.proto()?.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
        _ => None,
    }
}

/// `service` with a trailing dot, so resolv.conf's search domains (and `ndots`) are never tried:
/// the operator gives the whole name, and search domains would only add failed lookups.
fn fully_qualified(service: &str) -> Result<Name, DiscoveryError> {
    let invalid = |source| DiscoveryError::InvalidServiceName { service: service.to_owned(), source };
    let trimmed = service.trim();
    if trimmed.is_empty() || trimmed == "." {
        return Err(invalid("empty name".into()));
    }
    let mut name = Name::from_ascii(trimmed).map_err(invalid)?;
    name.set_fqdn(true);
    Ok(name)
}

/// Bracketed so that `http://{name}:{port}` is a valid URL.
fn render(mut addresses: Vec<Ipv6Addr>) -> Vec<String> {
    addresses.sort_unstable();
    addresses.dedup();
    addresses.iter().map(|address| format!("[{address}]")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_a_trailing_dot() {
        let name = fully_qualified("runnel.streams.svc.cluster.local").expect("valid name");
        assert!(name.is_fqdn());
        assert_eq!(name.to_string(), "runnel.streams.svc.cluster.local.");
        let already = fully_qualified("runnel.streams.").expect("valid name");
        assert_eq!(already.to_string(), "runnel.streams.");
    }

    #[test]
    fn empty_or_malformed_names_are_refused() {
        for service in ["", "  ", ".", "a..b"] {
            assert!(
                matches!(fully_qualified(service), Err(DiscoveryError::InvalidServiceName { .. })),
                "{service:?} should be refused"
            );
        }
    }

    #[test]
    fn addresses_are_bracketed_sorted_and_unique() {
        let addresses =
            ["fd00::10", "fd00::2", "fd00::2", "::1"].iter().map(|a| a.parse().expect("an IPv6 address")).collect();
        assert_eq!(render(addresses), ["[::1]", "[fd00::2]", "[fd00::10]"]);
    }
}
