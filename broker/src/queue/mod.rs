//! Queue groups (SPEC §14): workers lease records one batch at a time, each record to one
//! worker until it is acknowledged, given back (nack) or its `ackWaitMs` runs out.
//!
//! - [`window`]: one partition's leases on its leader (pure, tested with made-up instants).
//! - [`ack_token`]: what a worker holds for each leased record.
//! - [`QueueService`]: `next` leases from the partitions this broker leads; `ack`, `nack` and
//!   `extend` go to the leader of each token's partition (`peer_api`), and an ack is answered
//!   once Raft holds it (`consensus::queue_groups`), so no acknowledged record is leased again,
//!   also after a failover. Leases are not replicated: a new leader offers every record that
//!   is not acknowledged at once.
//! - `dead_letter`: a record leased `maxDeliver` times is appended to the dead-letter topic,
//!   then acknowledged.

pub mod ack_token;
mod dead_letter;
mod peer_api;
mod service;
mod settle;
pub mod window;

pub use peer_api::router as peer_router;
pub use service::{LeasedRecord, NextBatch, QueueInfo, QueueLimits, QueueService};
pub use settle::{Settle, SettleResult};
