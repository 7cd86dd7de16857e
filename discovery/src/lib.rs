//! How Runnel finds its brokers (SPEC §5): from a static list or from the AAAA records of a
//! Kubernetes headless service, once ([`BrokerSource::resolve`]) or kept up to date
//! ([`BrokerSource::watch`]); a StatefulSet pod's ordinal ([`ordinal_from_hostname`]); and the
//! wire format of `GET /v1/brokers` ([`BrokerList`]), shared by the servers and the clients.
//!
//! The library needs only hickory-resolver, tokio, serde, thiserror and tracing; the
//! `runnel-discovery` binary (feature `server`, on by default) adds the HTTP server and the CLI.

mod broker_list;
mod broker_source;
mod broker_watch;
mod error;
mod headless_lookup;
mod ordinal;

pub use broker_list::BrokerList;
pub use broker_source::BrokerSource;
pub use error::DiscoveryError;
pub use ordinal::ordinal_from_hostname;
