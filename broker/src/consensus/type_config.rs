use std::io::Cursor;

use super::cluster_state::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Runnel's Raft types: log entries carry [`Command`]s, applying one yields a [`CommandResult`].
    pub TypeConfig: D = Command, R = CommandResult
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoreError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
