//! Topics as objects (SPEC §15): created (explicitly, or by a first produce unless
//! `RUNNEL_AUTO_CREATE_TOPICS=false`), changed and deleted through Raft; each broker applies
//! their settings to its store and removes a deleted topic's files (`upkeep`).

mod service;
mod settings;
mod upkeep;

pub use service::{HoldsTopics, TopicService};
pub use settings::{patch_from_json, settings_from_json, settings_json};
