//! Rust client for Runnel's HTTP API: a batching [`Producer`], a [`Consumer`] that follows
//! the stateless consumer flow (register, poll every broker, commit, goodbye), and [`Groups`]
//! to see and reset consumer groups' offsets.

mod brokers;
mod consumer;
mod error;
mod groups;
mod poll_chunk;
mod producer;

pub use brokers::Brokers;
pub use consumer::{Consumer, ConsumerConfig, Record, StartFrom, DEFAULT_WAIT};
pub use error::ClientError;
pub use groups::{
    GroupDescription, GroupMember, GroupSummary, Groups, OffsetReset, PartitionOffsets, PlannedOffset, ResetPlan,
    ResetTo, TopicOffsets,
};
pub use poll_chunk::PollChunk;
pub use producer::{Produced, Producer};
pub use runnel_discovery::BrokerList;
