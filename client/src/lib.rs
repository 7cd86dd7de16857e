//! Rust client for Runnel's HTTP API: a batching [`Producer`], a [`Consumer`] that follows
//! the stateless consumer flow (register, poll every broker, commit, goodbye), [`Groups`]
//! to see and reset consumer groups' offsets, and a [`Reader`] of partitions by position
//! (a page from an offset, the earliest or latest record or a time, or a live follow).

mod access;
mod brokers;
mod consumer;
mod error;
pub mod events;
mod groups;
mod idempotence;
mod poll_chunk;
mod producer;
mod queue;
mod reader;
pub mod tokens;
mod wire;

pub use access::{Access, AccessConfig};
pub use brokers::Brokers;
pub use consumer::{Consumer, ConsumerConfig, Record, StartFrom, DEFAULT_WAIT};
pub use error::ClientError;
pub use groups::{
    GroupDescription, GroupMember, GroupSummary, Groups, OffsetReset, PartitionOffsets, PlannedOffset, ResetPlan,
    ResetTo, TopicOffsets,
};
pub use poll_chunk::PollChunk;
pub use producer::{Produced, Producer, ProducerConfig};
pub use queue::{QueueConsumer, QueueRecord, QueueSettings, SettleResult};
pub use reader::{Page, PartitionView, Position, PositionedRecord, Reader};
pub use runnel_discovery::BrokerList;
