//! Following a partition for a live stream (SSE or WebSocket): reads from a position in a loop,
//! each waiting up to [`HEARTBEAT_EVERY`] for records, so the stream learns of new records as
//! they become readable and has something to send (a heartbeat) at least that often.
//!
//! The stream ends, for its client to resume from the next offset on any broker, when the
//! partition's leadership moves (its readable end is the new leader's to say) or the broker
//! starts shutting down. It reads only when its last records were taken by the transport, so a
//! slow reader slows its own stream and nothing piles up in the broker.

use std::sync::Arc;
use std::time::Duration;

use super::{PositionReads, ReadRequest, RecordsRead, Start};
use crate::consensus::cluster_state::PartitionLeader;
use crate::error::ApiError;
use crate::memory::Reservation;

/// Longest a stream goes without sending anything (records or a heartbeat): under the 15 s
/// SPEC §10 promises, with room for a slow read.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// How much longer than its wait a stream's read may take before the stream sends a heartbeat
/// instead (and reads again): with [`HEARTBEAT_EVERY`] under the 15 s SPEC §10 promises.
const READ_GRACE: Duration = Duration::from_secs(3);

/// Most record bytes one read of a stream takes: what a stalled reader leaves in the
/// transport's buffer beside the kernel's (see docs/design.md, resource bounds).
pub const STREAM_READ_BYTES: usize = 256 * 1024;

/// What the stream sends next.
pub enum Step {
    /// Records, with the memory they hold until they are sent.
    Records(RecordsRead, Reservation),
    /// Nothing new within [`HEARTBEAT_EVERY`].
    Quiet,
    /// The stream is over (why), and resumes at [`Follow::next_offset`].
    End(&'static str),
}

pub struct Follow {
    reads: Arc<PositionReads>,
    request: ReadRequest,
    leader: PartitionLeader,
    /// Where the stream reads next, once known.
    next: Option<u64>,
}

impl Follow {
    /// Checks `request` and reads its first records without waiting, so a bad start is an
    /// error status of the request rather than a stream that ends at once.
    pub async fn start(reads: Arc<PositionReads>, request: ReadRequest) -> Result<(Follow, Step), ApiError> {
        reads.check(&request)?;
        let leader = reads.leader(request.partition);
        let request =
            ReadRequest { wait: Duration::ZERO, max_bytes: request.max_bytes.min(STREAM_READ_BYTES), ..request };
        let mut follow = Follow { reads, request, leader, next: None };
        let first = follow.step().await?;
        follow.request.wait = HEARTBEAT_EVERY;
        Ok((follow, first))
    }

    pub fn partition(&self) -> u32 {
        self.request.partition
    }

    /// Where a client resumes once the stream ended.
    pub fn next_offset(&self) -> Option<u64> {
        self.next
    }

    /// The next records, a heartbeat's turn, or the end.
    pub async fn step(&mut self) -> Result<Step, ApiError> {
        if self.reads.draining() {
            return Ok(Step::End("the broker is shutting down"));
        }
        if self.reads.leader(self.request.partition) != self.leader {
            return Ok(Step::End("the partition's leadership moved"));
        }
        let moved = self.reads.moved_from(self.request.partition, self.leader.broker);
        // A leader that does not answer (cut off, and Raft has not moved the partition yet)
        // must not silence the stream past its heartbeat: the read is given up and asked again.
        let (read, held) = tokio::select! {
            read = self.reads.read_on_leader(&self.request) => read?,
            () = moved => return Ok(Step::End("the partition's leadership moved")),
            () = tokio::time::sleep(HEARTBEAT_EVERY + READ_GRACE) => return Ok(Step::Quiet),
        };
        self.next = Some(read.next_offset);
        self.request.start = Start::Offset(read.next_offset);
        Ok(if read.records.is_empty() { Step::Quiet } else { Step::Records(read, held) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_sends_something_within_the_15_s_it_promises() {
        assert!(HEARTBEAT_EVERY + READ_GRACE < Duration::from_secs(15));
    }
}
