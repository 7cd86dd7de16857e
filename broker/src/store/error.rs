use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store's open-file bound or the process's descriptors ran out for this one operation;
    /// nothing was changed, and files close as other operations finish.
    #[error("{op} {path}: too many open files")]
    TooManyOpenFiles { op: &'static str, path: PathBuf },
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt { path: PathBuf, position: u64, reason: String },
    #[error("partition {topic}/{partition} stopped accepting writes after a failed write; restart the broker")]
    Poisoned { topic: String, partition: u32 },
    /// A write found the disk full. The partition keeps the records it had promised offsets
    /// to and writes them, at those offsets, before it takes anything else.
    #[error("partition {topic}/{partition}: the disk is full; the write is finished once space is freed (the records may then be stored: a retry may duplicate them)")]
    DiskFull { topic: String, partition: u32 },
    /// Refused before anything was stored: free space is below the reserve kept for Raft and metadata.
    #[error("only {free} bytes are free on the data disk, below the reserve of {reserve} bytes: nothing was stored")]
    BelowReserve { free: u64, reserve: u64 },
    #[error("a batch must hold between 1 and {max} bytes of records")]
    BatchSize { max: usize },
    #[error("invalid storage setting: {0}")]
    InvalidConfig(String),
    #[error("storage is closed")]
    Closed,
    #[error("topic '{0}' is being deleted: nothing was stored")]
    TopicDeleting(String),
    #[error("the partition ends at offset {end}, not where this append expected")]
    OffsetMismatch { end: u64 },
    #[error("leader epoch {epoch} is older than the partition's epoch {current}: another broker leads it now")]
    StaleEpoch { epoch: u64, current: u64 },
    /// An idempotent request out of sequence: nothing was stored.
    #[error("the producer's next sequence number here is {expected}: nothing was stored")]
    SequenceGap { expected: u64 },
    /// An idempotent request of an older producer epoch (a fenced producer): nothing was stored.
    #[error("the producer's epoch here is {current}, later than the request's: this producer was replaced; nothing was stored")]
    ProducerFenced { current: u64 },
    /// A conditional append whose expected offset is not the partition's end: nothing was stored.
    #[error("the partition's next offset is {end}, not the expected one: nothing was stored")]
    UnexpectedOffset { end: u64 },
}

impl StorageError {
    /// A write that failed only because the disk (or the quota) has no room left.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if super::disk::is_out_of_space(source))
    }
}

pub(super) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, StorageError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T, StorageError> {
        self.map_err(|source| {
            if is_out_of_files(&source) {
                StorageError::TooManyOpenFiles { op, path: path.to_path_buf() }
            } else {
                StorageError::Io { op, path: path.to_path_buf(), source }
            }
        })
    }
}

/// EMFILE (this process) or ENFILE (the whole system).
pub(super) fn is_out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}
