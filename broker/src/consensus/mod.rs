//! Replicated consumer state with openraft: the log store, the state machine, the network
//! (HTTP on the peer port) and the node that ties them together, as in openraft's examples.

mod cluster_shape;
pub mod cluster_state;
mod durable_file;
mod log_store;
mod network;
mod node;
mod peer_api;
pub mod queue_groups;
pub mod revocations;
mod state_machine;
pub mod topics;
mod type_config;

pub use node::{RaftChanges, RaftConfig, RaftError, RaftHealth, RaftNode, RaftStanding};

#[cfg(test)]
mod tests;
