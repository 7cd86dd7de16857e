//! Which brokers hold copies of a partition: its ring owner and the next brokers along the
//! ring, three copies in all (fewer in smaller clusters). The set is fixed by the ring; which
//! of them leads is agreed through Raft.

use crate::partitioning::Ring;

pub const REPLICATION_FACTOR: u32 = 3;

/// Ordinals of the brokers holding `partition`, its ring owner first.
pub fn replicas_of(ring: &Ring, brokers: u32, partition: u32) -> Vec<u32> {
    let owner = ring.broker_of(partition);
    (0..REPLICATION_FACTOR.min(brokers)).map(|step| (owner + step) % brokers).collect()
}

/// How many of the other copies must hold a record besides the leader for a majority.
pub fn others_needed(others: usize) -> usize {
    others.div_ceil(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_the_owner_and_the_next_brokers_on_the_ring() {
        let ring = Ring::new(5, 4);
        assert_eq!(replicas_of(&ring, 5, 0), vec![0, 1, 2]);
        assert_eq!(replicas_of(&ring, 5, 19), vec![4, 0, 1], "wraps around");
        assert_eq!(replicas_of(&Ring::new(2, 4), 2, 5), vec![1, 0]);
        assert_eq!(replicas_of(&Ring::new(1, 4), 1, 3), vec![0]);
    }

    #[test]
    fn a_majority_of_copies_counts_the_leader() {
        assert_eq!(others_needed(0), 0, "one copy: the leader alone");
        assert_eq!(others_needed(1), 1, "two copies: both");
        assert_eq!(others_needed(2), 1, "three copies: leader and one other");
    }
}
