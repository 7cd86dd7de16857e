//! Which followers of a partition keep up with its leader, the way Kafka's in-sync replicas
//! are judged: a follower is in sync while it last held everything the leader had (when the
//! leader sent to it) less than [`UNDER_REPLICATED_AFTER`] ago. A follower that is down, cut
//! off or slower than the produce rate stops catching up and, after that long, makes the
//! partition under-replicated. A follower merely a few batches behind under load keeps
//! catching up with what each send started from, so it stays in sync.

use tokio::time::Instant;

use crate::timing::UNDER_REPLICATED_AFTER;

/// Invariant: one entry per follower of the partition, in the order of its `followers`.
pub(super) struct InSync {
    caught_up_at: Vec<Instant>,
}

impl InSync {
    /// Every follower counts as caught up now: a new leader gives each the full grace period.
    pub fn new(followers: usize) -> InSync {
        InSync { caught_up_at: vec![Instant::now(); followers] }
    }

    /// Follower `index` holds everything the leader had when this was checked.
    pub fn caught_up(&mut self, index: usize) {
        if let Some(at) = self.caught_up_at.get_mut(index) {
            *at = Instant::now();
        }
    }

    /// Some follower has not caught up for [`UNDER_REPLICATED_AFTER`].
    pub fn under_replicated(&self) -> bool {
        self.caught_up_at.iter().any(|at| at.elapsed() >= UNDER_REPLICATED_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_follower_that_stops_catching_up_makes_the_partition_under_replicated_until_it_catches_up_again() {
        let mut sync = InSync::new(2);
        assert!(!sync.under_replicated(), "a new leader's followers get the grace period");
        tokio::time::advance(UNDER_REPLICATED_AFTER - Duration::from_millis(1)).await;
        sync.caught_up(0);
        assert!(!sync.under_replicated(), "follower 1 is still inside the grace period");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(sync.under_replicated(), "follower 1 has not caught up for the whole period");
        sync.caught_up(1);
        assert!(!sync.under_replicated());
        tokio::time::advance(UNDER_REPLICATED_AFTER).await;
        assert!(sync.under_replicated(), "neither caught up since");
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_without_followers_is_never_under_replicated() {
        let mut sync = InSync::new(0);
        sync.caught_up(3);
        tokio::time::advance(UNDER_REPLICATED_AFTER * 10).await;
        assert!(!sync.under_replicated());
    }
}
