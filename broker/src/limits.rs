//! Size limits that follow from the storage format and bind several modules, and the client
//! ports' limits on a request's head.

use crate::store::MAX_BATCH_BODY;

/// The largest `RUNNEL_MAX_REQUEST_SIZE`: a body of one-byte NDJSON lines (2 bytes a record)
/// becomes 5 bytes a record once framed for the leader and stored as a batch, and a batch
/// body may be at most [`MAX_BATCH_BODY`] bytes, so 2/5 of that is the most a request may be.
pub const MAX_REQUEST_SIZE_LIMIT: usize = MAX_BATCH_BODY / 5 * 2;

/// The one body limit of every peer route. The largest peer bodies are framed records (a
/// forwarded produce, or replication of one batch), which are laid out as a batch body, so
/// at most [`MAX_BATCH_BODY`]; Raft's entries and snapshot chunks are far smaller.
pub const PEER_BODY_LIMIT: usize = MAX_BATCH_BODY + 64 * 1024;

/// Most records one queue `next` leases and one ack, nack or extend names (SPEC §14).
pub const QUEUE_MAX_BATCH: usize = 1_000;

/// The longest request target (path and query) a client port takes; a longer one is answered
/// a JSON 414. Far below hyper's own limit (65,534 bytes, answered 414 with no body), so ours
/// is the one clients meet. SPEC's URLs (a topic of at most 249 characters, a consumer id, a
/// group, a few topics) fit many times over.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most header bytes (names, values and 4 bytes of separators each) a client port takes;
/// more is answered a JSON 431. Far below hyper's own limit on a request head (about 408 KiB,
/// answered 431 with no body). Hyper also refuses more than 100 headers, whatever their size,
/// before any of our code runs: that 431 stays bodiless.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

// The largest request of one-byte lines, framed (4 bytes of length a record), fits one batch.
const _: () = assert!((MAX_REQUEST_SIZE_LIMIT / 2) * (4 + 1) <= MAX_BATCH_BODY);
