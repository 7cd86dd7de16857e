//! The client's Server-Sent Events reader, for tests of the live streams.

pub use runnel_client::events::{Event, EventReader};
