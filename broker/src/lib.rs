//! The Runnel broker: a partitioned, durable event log with PolarStreams' v1 HTTP API.
//!
//! One folder per concern: `store/` (segments on disk), `consensus/` (Raft-replicated
//! consumer state), `consumer/` (groups, cursors, offsets), `http/` (the listeners),
//! `partitioning/` (keys to partitions to brokers).

pub mod allocator;
pub mod auth;
pub mod bounds;
pub mod cluster;
pub mod config;
pub mod consensus;
pub mod consumer;
pub mod error;
pub mod fd_limit;
pub mod http;
pub mod limits;
pub mod log_every;
pub mod memory;
pub mod metrics;
pub mod partitioning;
pub mod peer;
pub mod produce;
pub mod queue;
pub mod reading;
pub mod replication;
pub mod server;
pub mod serving;
pub mod size;
pub mod store;
pub mod supervisor;
pub mod timing;
pub mod tls;
pub mod topics;
