//! Broker discovery. This first version holds the wire format of `GET /v1/brokers` (SPEC §5),
//! shared by the broker that serves it and the clients that read it; DNS (AAAA) discovery
//! comes with the Kubernetes work.

mod broker_list;

pub use broker_list::BrokerList;
