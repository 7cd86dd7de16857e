//! Which partition a record goes to, and which broker leads it.

mod murmur3;
mod ring;

pub use murmur3::token;
pub use ring::{PartitionInfo, Ring};
