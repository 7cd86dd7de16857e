//! Producing, behind the producer port's handler: which partition a request goes to, how many
//! produce bytes may be in flight at once, and getting the records to the partition's leader
//! (this broker or another, over the peer route in `peer_api`).

mod forwarding;
mod peer_api;
mod service;

pub use peer_api::router as peer_router;
pub use service::{ProduceService, Stored};
