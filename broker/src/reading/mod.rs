//! Reads by position (SPEC §10): any partition of a topic from an offset, its earliest or
//! latest record, or a time, with no group and no commit. The partition's leader reads (only
//! what a majority of copies hold is readable); any other broker forwards to it.

mod follow;
mod peer_api;
mod position;
mod service;
mod wire;

pub use follow::{Follow, Step};
pub use peer_api::router as peer_router;
pub use position::Start;
pub use service::{PositionReads, ReadRequest, ReadSettings, RecordsRead};
