//! Stateless HTTP consumers: groups, assignment, cursors and offsets.

mod activity;
mod assignment;
mod cursors;
mod pending_commits;
mod record_json;
mod service;

pub use assignment::TopicPartition;
pub use record_json::write_record;
pub use service::{Chunk, ConsumerCounts, ConsumerService, PollOutcome, Registration};
