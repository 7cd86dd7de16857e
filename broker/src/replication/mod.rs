//! Partition replication and leadership. Each partition has copies on its ring owner and the
//! next brokers; Raft names which copy leads, in numbered leader epochs. The leader copies its
//! log to the others and acknowledges a produce once a majority hold it fsync'd. The
//! controller (the Raft leader) moves leadership away from dead brokers and back to owners.

mod controller;
mod copy_log;
mod copy_protocol;
mod departure;
mod growth;
mod in_sync;
mod leader;
mod leadership;
mod partition_tasks;
mod peer_api;
mod peer_client;
mod replica_set;
mod sealing;
mod takeover;

pub use leader::Replication;
pub use leadership::Leadership;
pub use peer_api::router as replication_router;
