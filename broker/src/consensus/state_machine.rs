//! The state machine: [`ClusterState`] plus what openraft needs (last applied log id,
//! membership). Snapshots are the JSON of all three, kept in `snapshot.json`.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership};
use serde::{Deserialize, Serialize};

use super::cluster_state::{ClusterState, CommandResult};
use super::durable_file::{self, SpaceWait};
use super::type_config::{Entry, LogId, Node, NodeId, StoreError, TypeConfig};

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    state: ClusterState,
}

/// The last applied log id and the membership in force.
type Applied = (Option<LogId>, StoredMembership<NodeId, Node>);

#[derive(Clone)]
pub struct StateMachine {
    pub state: Arc<RwLock<ClusterState>>,
    applied: Arc<Mutex<Applied>>,
    path: PathBuf,
    /// Ends a snapshot write's wait for disk space (shutdown), and counts it.
    space: SpaceWait,
}

fn sm_err(e: impl std::error::Error + 'static) -> StoreError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snapshot_err(e: impl std::error::Error + 'static) -> StoreError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

impl StateMachine {
    /// Starts from the last snapshot in `dir`, if any; openraft replays the log after it.
    /// `space` ends a snapshot write's wait for disk space, and counts it.
    pub fn open(dir: &Path, space: SpaceWait) -> std::io::Result<StateMachine> {
        let path = dir.join("snapshot.json");
        let stored: Option<StoredSnapshot> = match durable_file::read(&path)? {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(std::io::Error::other)?),
            None => None,
        };
        let (state, applied) = match stored {
            Some(s) => (s.state, (s.meta.last_log_id, s.meta.last_membership)),
            None => (ClusterState::default(), (None, StoredMembership::default())),
        };
        Ok(StateMachine { state: Arc::new(RwLock::new(state)), applied: Arc::new(Mutex::new(applied)), path, space })
    }

    /// Writes the snapshot file (waiting for space on a full disk); returns the snapshot data
    /// (the state alone) sent to followers.
    async fn persist(&self, stored: &StoredSnapshot) -> std::io::Result<Vec<u8>> {
        let file = serde_json::to_vec(stored).map_err(std::io::Error::other)?;
        // Written here, not on a blocking thread that could outlive a shutdown and race the
        // next start's snapshot for the same temporary file.
        let attempt = || std::future::ready(durable_file::replace(&self.path, &file));
        durable_file::write_when_space("snapshot", &self.space, attempt).await?;
        serde_json::to_vec(&stored.state).map_err(std::io::Error::other)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StoreError> {
        // Both under the state lock (apply holds it while it moves both), so the snapshot's
        // state is exactly the state at its last log id.
        let (state, (last_log_id, last_membership)) = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner()).clone();
            (state.clone(), applied)
        };
        let snapshot_id =
            last_log_id.map_or_else(|| "empty".to_string(), |id| format!("{}-{}", id.leader_id, id.index));
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), state };
        let data = self.persist(&stored).await.map_err(snapshot_err)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StoreError> {
        Ok(self.applied.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StoreError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                applied.0 = Some(entry.log_id);
                results.push(match entry.payload {
                    EntryPayload::Normal(command) => state.apply(command),
                    EntryPayload::Membership(membership) => {
                        applied.1 = StoredMembership::new(Some(entry.log_id), membership);
                        CommandResult::Committed
                    }
                    EntryPayload::Blank => CommandResult::Committed,
                });
            }
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StoreError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StoreError> {
        let state: ClusterState = serde_json::from_slice(snapshot.get_ref()).map_err(sm_err)?;
        self.persist(&StoredSnapshot { meta: meta.clone(), state: state.clone() }).await.map_err(snapshot_err)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = (meta.last_log_id, meta.last_membership.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StoreError> {
        let Some(bytes) = durable_file::read(&self.path).map_err(snapshot_err)? else { return Ok(None) };
        let stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(snapshot_err)?;
        let data = serde_json::to_vec(&stored.state).map_err(snapshot_err)?;
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
