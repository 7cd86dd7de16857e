//! Which partition a record goes to, and which broker leads it.

mod layout;

pub use layout::{Generation, Layout, REPLICATION_FACTOR};
// Shared with the client, which predicts partitions with them.
pub use runnel_discovery::{token, PartitionInfo, Ring};
