//! Memory: one limit (`RUNNEL_MEMORY_LIMIT`) cut into the budgets every class of buffer draws
//! from or is sized from, and the body reader that client and peer ports share.
//!
//! | class | share | what draws from it |
//! |---|---|---|
//! | connections | 3/8 | each open connection is allowed [`CONNECTION_BYTES`] (its HTTP buffers and the first [`BODY_LOOKAHEAD`] bytes of a body): this share sets the connection limit |
//! | produce | 1/4 | produce bodies larger than the lookahead, from when they pass it until answered |
//! | reads | 3/16 | poll responses, while built and sent |
//! | replication | 1/8 | records a leader keeps in memory for its followers, and what its replicators read and send |
//! | peer bodies | 1/16 | bodies received on the peer port (forwarded produces, replicated records, Raft) |

mod body;
mod budget;
mod held_response;

pub use body::{declared_length, read_body, BodyError, BodyRules, HeldBody};
pub use budget::{Budget, MemoryBusy, Reservation};
pub use held_response::hold_until_sent;

/// What one connection may hold: HTTP/1.1 reads at most 32 KiB of a request head or body at a
/// time and a request body's first [`BODY_LOOKAHEAD`] bytes are read before any budget is asked;
/// h2 gets a 32 KiB connection window and two streams (each with its lookahead).
pub const CONNECTION_BYTES: usize = 64 * 1024;
/// The part of a body read before it reserves from a budget.
pub const BODY_LOOKAHEAD: usize = 16 * 1024;
/// HTTP/1.1's read buffer (request heads up to the client ports' 24 KiB limits fit).
pub const HTTP1_BUFFER: usize = 32 * 1024;
/// h2's flow-control windows and concurrent streams, so an h2 connection stays within
/// [`CONNECTION_BYTES`] (a client wanting more streams opens more connections).
pub const H2_CONNECTION_WINDOW: u32 = 32 * 1024;
pub const H2_STREAM_WINDOW: u32 = 16 * 1024;
pub const H2_STREAMS: u32 = 2;
/// Most connections of the peer port: a quarter of the connections' share, at most this many
/// (clients cannot take them). Each other broker keeps at most 32 requests in flight to a
/// broker beside Raft's few (`peer::IN_FLIGHT_PER_BROKER`), so 256 hold a cluster of up to 7
/// brokers, and the smallest limit's 96 a cluster of 3.
pub const MAX_PEER_CONNECTIONS: usize = 256;

// What a connection may hold fits what it is allowed, for either protocol.
const _: () = assert!(BODY_LOOKAHEAD + HTTP1_BUFFER <= CONNECTION_BYTES);
const _: () = assert!(H2_CONNECTION_WINDOW as usize + H2_STREAMS as usize * BODY_LOOKAHEAD <= CONNECTION_BYTES);

/// The budgets of one broker, cut from its memory limit.
#[derive(Clone)]
pub struct MemoryPlan {
    pub limit: usize,
    /// Connections the client ports take at once (all four together).
    pub client_connections: usize,
    /// Connections the peer port takes at once.
    pub peer_connections: usize,
    pub produce: Budget,
    pub reads: Budget,
    pub replication: Budget,
    pub peer_bodies: Budget,
}

impl MemoryPlan {
    /// `connections` overrides the limit the connections' share allows (it may only be lower).
    pub fn new(limit: usize, connections: Option<usize>) -> MemoryPlan {
        MemoryPlan {
            limit,
            client_connections: connections.unwrap_or_else(|| Self::connections_allowed(limit)),
            peer_connections: Self::peer_connections(limit),
            produce: Budget::new("produce", limit / 4),
            reads: Budget::new("reads", limit / 16 * 3),
            replication: Budget::new("replication", limit / 8),
            peer_bodies: Budget::new("peer bodies", limit / 16),
        }
    }

    /// Client connections the connections' share pays for.
    pub fn connections_allowed(limit: usize) -> usize {
        Self::connections_paid(limit) - Self::peer_connections(limit)
    }

    fn peer_connections(limit: usize) -> usize {
        (Self::connections_paid(limit) / 4).min(MAX_PEER_CONNECTIONS)
    }

    fn connections_paid(limit: usize) -> usize {
        limit / 8 * 3 / CONNECTION_BYTES
    }

    /// The budgets, for metrics.
    pub fn budgets(&self) -> [&Budget; 4] {
        [&self.produce, &self.reads, &self.replication, &self.peer_bodies]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_add_up_to_the_limit() {
        let limit = 256 << 20;
        let plan = MemoryPlan::new(limit, None);
        let budgets: usize = plan.budgets().iter().map(|b| b.size()).sum();
        let connections = (plan.client_connections + plan.peer_connections) * CONNECTION_BYTES;
        assert!(budgets + connections <= limit, "{budgets} + {connections} > {limit}");
        assert_eq!((plan.client_connections, plan.peer_connections), (1280, 256));
        let smallest = MemoryPlan::new(64 << 20, None);
        assert_eq!((smallest.client_connections, smallest.peer_connections), (288, 96));
    }
}
