//! Which brokers hold copies of a partition: its ring owner (the leader) and the next
//! brokers along the ring, three copies in all (fewer in smaller clusters).

use crate::partitioning::Ring;

pub const REPLICATION_FACTOR: u32 = 3;

/// Ordinals of the followers of `partition`, in ring order after the leader.
pub fn followers_of(ring: &Ring, brokers: u32, partition: u32) -> Vec<u32> {
    let leader = ring.broker_of(partition);
    (1..REPLICATION_FACTOR.min(brokers)).map(|step| (leader + step) % brokers).collect()
}

/// How many followers must hold a record besides the leader for a majority of copies.
pub fn followers_needed(followers: usize) -> usize {
    followers.div_ceil(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_are_the_next_brokers_on_the_ring() {
        let ring = Ring::new(5, 4);
        assert_eq!(followers_of(&ring, 5, 0), vec![1, 2]);
        assert_eq!(followers_of(&ring, 5, 19), vec![0, 1], "wraps around");
        assert_eq!(followers_of(&Ring::new(2, 4), 2, 5), vec![0]);
        assert!(followers_of(&Ring::new(1, 4), 1, 3).is_empty());
    }

    #[test]
    fn a_majority_of_copies_counts_the_leader() {
        assert_eq!(followers_needed(0), 0, "one copy: the leader alone");
        assert_eq!(followers_needed(1), 1, "two copies: both");
        assert_eq!(followers_needed(2), 1, "three copies: leader and one follower");
    }
}
