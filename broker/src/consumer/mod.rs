//! Stateless HTTP consumers: groups, assignment, cursors and offsets.

mod activity;
mod assignment;
mod cursors;
mod generation_order;
mod group_offsets;
mod peer_api;
mod pending_commits;
mod poll_tokens;
mod record_json;
mod service;

pub use assignment::TopicPartition;
pub use group_offsets::{
    GroupDescription, GroupOffsets, GroupSummary, LedLag, Member, PartitionOffsets, PlannedOffset, ResetRequest,
    ResetTo,
};
pub use peer_api::router as peer_router;
pub use record_json::write_record;
pub use service::{Chunk, ConsumerCounts, ConsumerService, ConsumerSettings, PollOutcome, Registration};
