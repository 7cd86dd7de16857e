//! How Runnel finds its brokers (SPEC §5): from a static list or from the AAAA records of a
//! Kubernetes headless service, once ([`BrokerSource::resolve`]) or kept up to date
//! ([`BrokerSource::watch`]); a StatefulSet pod's ordinal ([`ordinal_from_hostname`]); and the
//! wire format of `GET /v1/brokers` ([`BrokerList`]), shared by the servers and the clients;
//! and where a key's records live: its Murmur3 [`token`] and the [`Ring`] of partitions, which
//! the brokers place records by and a client predicts a record's partition with (an
//! idempotent producer's sequence is per partition).
//!
//! The library needs only hickory-resolver, tokio, serde, thiserror and tracing; the
//! `runnel-discovery` binary (feature `server`, on by default) adds the HTTP server and the CLI.

mod broker_list;
mod broker_source;
mod broker_watch;
mod error;
mod headless_lookup;
mod murmur3;
mod ordinal;
mod ring;

pub use broker_list::BrokerList;
pub use broker_source::BrokerSource;
pub use error::DiscoveryError;
pub use murmur3::token;
pub use ordinal::ordinal_from_hostname;
pub use ring::{PartitionInfo, Ring};
