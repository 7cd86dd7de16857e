//! The timing constants that depend on each other, in one table, with a test of their order.
//! Each module uses its constant from here; the reasons for each bound are beside it.
//!
//! | constant | value | must be |
//! |---|---|---|
//! | [`RAFT_HEARTBEAT`] | 100 ms | < election minimum |
//! | [`RAFT_ELECTION_MIN`] / [`RAFT_ELECTION_MAX`] | 300 / 600 ms | max < [`DEAD_AFTER`] |
//! | [`PROBE_EVERY`] | 300 ms | < [`DEAD_AFTER`] / 2, so one lost probe is not a death |
//! | [`DEAD_AFTER`] | 1.5 s | < [`LEADER_WAIT`], so a failover ends inside a forwarder's wait |
//! | [`BACK_FOR`] | 3 s | > [`DEAD_AFTER`], so a flapping broker is not given partitions back |
//! | [`ACK_TIMEOUT`] | 10 s | < [`FORWARD_TIMEOUT`], so an acknowledgement near the limit reaches the forwarder |
//! | [`FORWARD_TIMEOUT`] | 12 s | > [`ACK_TIMEOUT`] and ≥ [`PEER_REQUEST_TIMEOUT`] |
//! | [`LEADER_WAIT`] | 10 s | > [`DEAD_AFTER`] + [`PROPOSE_TIMEOUT`]: a failover and its Raft commit fit |
//! | [`PROPOSE_TIMEOUT`] | 5 s | > [`RAFT_ELECTION_MAX`] several times over: a proposal survives an election |
//! | [`HAND_OVER_WAIT`] | 5 s | < [`SHUTDOWN_HAND_OVER`], so every partition's hand-over fits a SIGTERM |
//! | [`SHUTDOWN_DRAIN`] | 250 ms | ≪ Kubernetes' termination grace period (30 s), with the hand-overs |
//! | [`PEER_REQUEST_TIMEOUT`] | 10 s | the default for peer calls that set no limit of their own |
//! | [`QUORUM_LOST_AFTER`] | 1.5 s | > [`RAFT_HEARTBEAT`] several times over: a leader unanswered this long reports the quorum lost |
//! | [`MEMORY_PRESSURE`] | 5 s | > [`MEMORY_WAIT`]: a budget that refused a request this recently makes its port not ready |
//! | [`MEMORY_WAIT`] | 2 s | < [`ACK_TIMEOUT`] and < [`PEER_REQUEST_TIMEOUT`]: a request short of memory is refused (503) before its sender gives up |
//! | [`PEER_POOL_IDLE`] | 4 s | < [`CLUSTER_MIN_HEADER_TIMEOUT`]: a pooled peer connection is closed by its client before the peer port closes it |
//! | [`CLUSTER_MIN_HEADER_TIMEOUT`] | 5 s | the shortest `RUNNEL_HEADER_TIMEOUT_MS` of a cluster |
//! | [`SHUTDOWN_CLOSE_GRACE`] | 5 s | < [`SHUTDOWN_HAND_OVER`]: responses still being written at shutdown get this long |
//! | [`UNDER_REPLICATED_AFTER`] | 10 s | ≥ [`ACK_TIMEOUT`] > [`DEAD_AFTER`]: a copy counts as under-replicated only once it has not caught up for longer than a produce waits for it |

use std::time::Duration;

/// Raft leader heartbeat.
pub const RAFT_HEARTBEAT: Duration = Duration::from_millis(100);
/// A follower that hears no heartbeat for a random time in this range starts an election.
pub const RAFT_ELECTION_MIN: Duration = Duration::from_millis(300);
pub const RAFT_ELECTION_MAX: Duration = Duration::from_millis(600);

/// The controller asks every broker's health this often.
pub const PROBE_EVERY: Duration = Duration::from_millis(300);
/// No answer for this long and a broker counts as dead: its partitions fail over.
pub const DEAD_AFTER: Duration = Duration::from_millis(1500);
/// A returning owner must have been healthy this long before it gets its partitions back.
pub const BACK_FOR: Duration = Duration::from_secs(3);

/// A produce waits at most this long for a majority of copies before it gets 503.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// A forwarded produce waits this long for the leader's answer: longer than the leader's own
/// [`ACK_TIMEOUT`], so an acknowledgement at the limit is not lost to a racing 503.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(12);
/// A forwarding broker retries against the (possibly new) leader this long.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);

/// How long a Raft proposal may wait for its commit.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A hand-over waits this long for the new leader to catch up before it gives up.
pub const HAND_OVER_WAIT: Duration = Duration::from_secs(5);
/// The whole of a SIGTERM's hand-overs (they run concurrently).
pub const SHUTDOWN_HAND_OVER: Duration = Duration::from_secs(8);

/// After SIGTERM, the listeners stay open at least this long, answering new writes 503.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_millis(250);

/// Broker-to-broker calls that set no limit of their own.
pub const PEER_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A Raft leader whose heartbeats a majority has not answered this long says (in `/status`)
/// that it lost the quorum.
pub const QUORUM_LOST_AFTER: Duration = Duration::from_millis(1500);
/// A memory budget that refused a request within this long makes the ports it serves report
/// not ready.
pub const MEMORY_PRESSURE: Duration = Duration::from_secs(5);

/// A request that needs memory its class has not free waits this long, then gets 503.
pub const MEMORY_WAIT: Duration = Duration::from_secs(2);
/// A broker closes an idle pooled connection to another broker after this long.
pub const PEER_POOL_IDLE: Duration = Duration::from_secs(4);
/// The shortest `RUNNEL_HEADER_TIMEOUT_MS` of a cluster (the peer port waits that long for the
/// next request on a kept-alive connection), so no peer request races the server's close.
pub const CLUSTER_MIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection asked to close (idle, or at shutdown) may finish writing a response this long.
pub const SHUTDOWN_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A partition whose leader has had a follower not caught up for this long is under-replicated
/// (`runnel_partition_under_replicated`): the follower is down, cut off or cannot keep up.
/// Shorter lapses (a busy moment, a failover) do not count.
pub const UNDER_REPLICATED_AFTER: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timings_keep_their_order() {
        assert!(RAFT_HEARTBEAT < RAFT_ELECTION_MIN && RAFT_ELECTION_MIN < RAFT_ELECTION_MAX);
        assert!(RAFT_ELECTION_MAX < DEAD_AFTER, "an election ends before brokers are judged dead");
        assert!(PROBE_EVERY * 2 < DEAD_AFTER, "one lost probe is not a death");
        assert!(DEAD_AFTER < BACK_FOR);
        assert!(DEAD_AFTER + PROPOSE_TIMEOUT <= LEADER_WAIT, "a failover fits in a forwarder's wait");
        assert!(PROPOSE_TIMEOUT > RAFT_ELECTION_MAX * 4, "a proposal survives an election");
        assert!(ACK_TIMEOUT < FORWARD_TIMEOUT, "an acknowledgement at the limit reaches the forwarder");
        assert!(FORWARD_TIMEOUT >= PEER_REQUEST_TIMEOUT, "a forward is not cut by the client's default");
        assert!(HAND_OVER_WAIT < SHUTDOWN_HAND_OVER);
        assert!(SHUTDOWN_DRAIN + SHUTDOWN_HAND_OVER < Duration::from_secs(30), "fits k8s' grace period");
        assert!(MEMORY_WAIT < ACK_TIMEOUT && MEMORY_WAIT < PEER_REQUEST_TIMEOUT, "refused before the sender gives up");
        assert!(SHUTDOWN_CLOSE_GRACE < SHUTDOWN_HAND_OVER);
        assert!(PEER_POOL_IDLE < CLUSTER_MIN_HEADER_TIMEOUT, "the client closes an idle peer connection first");
        assert!(QUORUM_LOST_AFTER >= RAFT_HEARTBEAT * 5 && QUORUM_LOST_AFTER > RAFT_ELECTION_MAX);
        assert!(MEMORY_PRESSURE > MEMORY_WAIT);
        assert!(UNDER_REPLICATED_AFTER >= ACK_TIMEOUT && UNDER_REPLICATED_AFTER > DEAD_AFTER);
    }
}
