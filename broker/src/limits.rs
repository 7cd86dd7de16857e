//! Size limits that follow from the storage format and bind several modules.

use crate::store::MAX_BATCH_BODY;

/// The largest `RUNNEL_MAX_REQUEST_SIZE`: a body of one-byte NDJSON lines (2 bytes a record)
/// becomes 5 bytes a record once framed for the leader and stored as a batch, and a batch
/// body may be at most [`MAX_BATCH_BODY`] bytes, so 2/5 of that is the most a request may be.
pub const MAX_REQUEST_SIZE_LIMIT: usize = MAX_BATCH_BODY / 5 * 2;

/// The one body limit of every peer route. The largest peer bodies are framed records (a
/// forwarded produce, or replication of one batch), which are laid out as a batch body, so
/// at most [`MAX_BATCH_BODY`]; Raft's entries and snapshot chunks are far smaller.
pub const PEER_BODY_LIMIT: usize = MAX_BATCH_BODY + 64 * 1024;

// The largest request of one-byte lines, framed (4 bytes of length a record), fits one batch.
const _: () = assert!((MAX_REQUEST_SIZE_LIMIT / 2) * (4 + 1) <= MAX_BATCH_BODY);
