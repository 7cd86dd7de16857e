//! The ring a cluster serves is agreed in Raft, never taken from one broker's flags or DNS
//! view: the first Raft leader to see none proposes its own, with its brokers' names, and from
//! then on a broker whose settings contradict it refuses to serve (and a joiner whose settings
//! contradict it is refused). A broker whose list only adds names joins and is grown into the
//! ring by a resize.

use tokio::sync::watch;

use super::Peers;
use crate::consensus::cluster_state::{BrokerState, ClusterState, Command};
use crate::consensus::RaftNode;

/// Until the cluster state holds a ring: whenever this broker leads Raft, proposes its own.
/// Woken by Raft's changes, not a timer.
pub async fn agree_ring(raft: RaftNode, peers: Peers, mut stop: watch::Receiver<bool>) {
    let mut changes = raft.changes();
    let own = peers.configured_ring();
    while !raft.read(|s| s.layout.is_agreed()) {
        if raft.is_leader() && raft.has_caught_up() {
            let names = peers.configured_names().iter().take(own.brokers() as usize).cloned().collect();
            match raft.propose(Command::AgreeRing { ring: own, names }).await {
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

/// Why broker `me`, started with `names` and `ranges`, must not serve the cluster of `state`:
/// other ranges per broker, or another name for another broker the cluster knows. A longer
/// list of names is no disagreement: its new brokers join and the cluster grows to take them
/// in. Its own name is not compared: a single broker restarted on another address is the same
/// broker (and a broker of several is reached through the address Raft knows it at).
pub fn disagreement(names: &[String], ranges: u32, me: u32, state: &ClusterState) -> Option<String> {
    let agreed = state.layout.current_ring()?;
    if agreed.ranges() != ranges {
        return Some(format!(
            "this broker is configured for RUNNEL_CONSUMER_RANGES={ranges}, but the cluster's ring has {} ranges per \
             broker: start it with the cluster's RUNNEL_CONSUMER_RANGES",
            agreed.ranges()
        ));
    }
    names.iter().enumerate().filter(|(ordinal, _)| *ordinal as u32 != me).find_map(|(ordinal, mine)| {
        let known = state.brokers.get(&(ordinal as u32)).filter(|b| b.state != BrokerState::Removable)?;
        (known.name != *mine).then(|| {
            format!(
                "this broker names broker {ordinal} {mine:?}, but the cluster knows it as {:?}: start it with the \
                 cluster's RUNNEL_BROKER_NAMES (the existing names first, in order; new names may follow)",
                known.name
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partitioning::Ring;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn other_ranges_or_another_name_disagree_and_more_names_do_not() {
        let mut state = ClusterState::default();
        assert_eq!(disagreement(&names(&["a", "b"]), 4, 0, &state), None, "nothing agreed yet");
        state.apply(Command::AgreeRing { ring: Ring::new(3, 4), names: names(&["a", "b", "c"]) });
        assert_eq!(disagreement(&names(&["a", "b", "c"]), 4, 2, &state), None);
        assert_eq!(disagreement(&names(&["a", "b", "c", "d"]), 4, 3, &state), None, "a broker joining");
        assert_eq!(disagreement(&names(&["a"]), 4, 0, &state), None, "the roster names the rest");
        assert_eq!(disagreement(&names(&["a", "moved", "c"]), 4, 1, &state), None, "its own address moved");
        let ranges = disagreement(&names(&["a", "b", "c"]), 5, 0, &state).expect("a disagreement");
        assert!(ranges.contains("RUNNEL_CONSUMER_RANGES=5") && ranges.contains("4 ranges"), "{ranges}");
        let renamed = disagreement(&names(&["a", "x", "c", "d"]), 4, 3, &state).expect("a disagreement");
        assert!(renamed.contains("broker 1 \"x\"") && renamed.contains("\"b\""), "{renamed}");
    }
}
