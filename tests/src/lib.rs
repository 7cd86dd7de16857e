//! Test harness: starts the real `runnel-broker` binary on its own loopback address and
//! data directory, and offers small HTTP helpers that say what a client would do.

mod broker_process;
mod client;
pub mod docker;
pub mod events;
mod peer;
pub mod resize_views;
mod stalled;
pub mod tls;
pub mod tokens;
pub mod workload;

pub use broker_process::{
    broker_binary, built_binary, free_loopback_ip, start_cluster, write_peer_secret, BrokerProcess, StaticCluster,
};
pub use client::{partition_holding, Polled, TestClient};
pub use peer::signed_request;
pub use stalled::{stalled_produce, Stall};
