//! The ring a cluster serves is agreed in Raft, never taken from one broker's flags or DNS
//! view: the first Raft leader to see none proposes its own, and from then on a broker
//! configured for another one refuses to serve (and a joiner for another one is refused).

use tokio::sync::watch;

use crate::consensus::cluster_state::Command;
use crate::consensus::RaftNode;
use crate::partitioning::Ring;

/// Until the cluster state holds a ring: whenever this broker leads Raft, proposes `own`.
/// Woken by Raft's changes, not a timer.
pub async fn agree_ring(raft: RaftNode, own: Ring, mut stop: watch::Receiver<bool>) {
    let mut changes = raft.changes();
    while raft.read(|s| s.ring).is_none() {
        if raft.is_leader() && raft.has_caught_up() {
            match raft.propose(Command::AgreeRing(own)).await {
                Ok(_) => {
                    tracing::info!(brokers = own.brokers(), ranges = own.ranges(), "the cluster's ring is agreed");
                    continue;
                }
                Err(e) => tracing::debug!("could not propose the ring yet: {e}"),
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Why a broker configured for `own` must not serve a cluster that agreed on `agreed`.
pub fn disagreement(own: Ring, agreed: Option<Ring>) -> Option<String> {
    let agreed = agreed.filter(|agreed| *agreed != own)?;
    Some(format!(
        "this broker is configured for a ring of {} brokers × {} ranges, but the cluster agreed on {} × {}: \
         start it with the cluster's RUNNEL_BROKER_NAMES (or service) and RUNNEL_CONSUMER_RANGES; \
         growing the cluster is a resize, not a longer list",
        own.brokers(),
        own.ranges(),
        agreed.brokers(),
        agreed.ranges()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_agreed_ring_is_a_disagreement() {
        let three = Ring::new(3, 4);
        assert_eq!(disagreement(three, None), None, "nothing agreed yet");
        assert_eq!(disagreement(three, Some(three)), None);
        let why = disagreement(Ring::new(4, 4), Some(three)).expect("a disagreement");
        assert!(why.contains("4 brokers × 4 ranges") && why.contains("3 × 4"), "{why}");
    }
}
