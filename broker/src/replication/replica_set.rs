//! How many copies make a majority. Which brokers hold copies of a partition is the cluster
//! state's [`crate::consensus::cluster_state::ClusterState::replicas`]; which of them leads is
//! agreed through Raft.

/// How many of the other copies must hold a record besides the leader for a majority.
pub fn others_needed(others: usize) -> usize {
    others.div_ceil(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_of_copies_counts_the_leader() {
        assert_eq!(others_needed(0), 0, "one copy: the leader alone");
        assert_eq!(others_needed(1), 1, "two copies: both");
        assert_eq!(others_needed(2), 1, "three copies: leader and one other");
    }
}
