//! Which partition a record goes to, and which broker leads it.

mod layout;
mod murmur3;
mod ring;

pub use layout::{Generation, Layout, REPLICATION_FACTOR};
pub use murmur3::token;
pub use ring::{PartitionInfo, Ring};
