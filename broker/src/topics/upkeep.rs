//! What each broker does as topics change in Raft: it gives its store each topic's limits,
//! and removes a deleted topic's files, then says so through Raft (the deletion is over once
//! every broker has). A broker down meanwhile does it when it is back; a topic being deleted
//! stays refused here even where this broker is done, so no copy request writes it again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::settings::limits;
use super::TopicService;
use crate::consensus::cluster_state::Command;
use crate::consensus::topics::TopicState;

/// Pause before a failed removal or report is tried again.
const RETRY: Duration = Duration::from_secs(1);

impl TopicService {
    pub async fn run_upkeep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut changes = self.raft.changes();
        let mut deleting: BTreeSet<String> = BTreeSet::new();
        loop {
            let failed = self.keep_up(&mut deleting).await;
            if self.raft.has_caught_up() {
                self.limits_applied.send_replace(true);
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(RETRY), if failed => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One pass; true if something failed and must be tried again. `deleting`: the topics
    /// whose files this broker removed and whose deletion is not over yet.
    async fn keep_up(&self, deleting: &mut BTreeSet<String>) -> bool {
        let topics = self.list();
        let mut failed = false;
        for (topic, entry) in &topics {
            match &entry.state {
                TopicState::Live => {
                    if deleting.remove(topic) {
                        self.storage.accept_topic(topic);
                    }
                    let wanted = limits(&entry.settings, self.defaults());
                    if self.storage.limits_of(topic) != wanted {
                        self.storage.set_limits(topic, Some(wanted));
                    }
                }
                TopicState::Deleting { pending } => {
                    if !deleting.contains(topic) {
                        if let Err(e) = self.remove_here(topic).await {
                            tracing::warn!(%topic, "cannot remove the deleted topic's files yet: {e}");
                            failed = true;
                            continue;
                        }
                        deleting.insert(topic.clone());
                    }
                    if pending.contains(&self.ordinal) {
                        let done = Command::TopicRemoved { topic: topic.clone(), broker: self.ordinal };
                        if let Err(e) = self.raft.propose(done).await {
                            tracing::warn!(%topic, "cannot report the deleted topic's files removed yet: {e}");
                            failed = true;
                        }
                    }
                }
            }
        }
        // Deletions that are over: the name may be created again.
        let gone: Vec<String> =
            deleting.iter().filter(|t| !topics.iter().any(|(name, _)| name == *t)).cloned().collect();
        for topic in gone {
            // State made for it while it was being deleted (a produce's leader state) goes too.
            for holder in self.holders() {
                holder.forget_topic(&topic);
            }
            self.storage.accept_topic(&topic);
            deleting.remove(&topic);
        }
        failed
    }

    async fn remove_here(&self, topic: &str) -> Result<(), crate::store::StorageError> {
        self.storage.remove_topic(topic).await?;
        self.storage.set_limits(topic, None);
        for holder in self.holders() {
            holder.forget_topic(topic);
        }
        tracing::info!(%topic, "removed the deleted topic's files");
        Ok(())
    }
}
