//! Partition replication: each partition's leader (its ring owner) copies its log to the
//! next brokers on the ring, and a produce is acknowledged once a majority of the replicas
//! hold it fsync'd. Leaders are fixed for now; failover with leader epochs comes next.

mod follower_api;
mod leader;
mod replica_set;

pub use follower_api::router as follower_router;
pub use leader::Replication;
pub use replica_set::followers_of;
