//! The produce service: partition choice, the byte budget and the leader's append.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::cluster::Peers;
use crate::error::ApiError;
use crate::partitioning::Ring;
use crate::replication::Replication;
use crate::store::Appended;

pub struct ProduceService {
    pub(super) replication: Arc<Replication>,
    pub(super) peers: Peers,
    pub(super) ring: Ring,
    max_request_size: usize,
    /// Produce bytes that may be in flight at once; requests beyond wait (back-pressure).
    budget: Semaphore,
    /// Rotates the partition of requests without a key.
    turn: AtomicUsize,
}

/// Where a produce was stored.
pub struct Stored {
    pub partition: u32,
    pub appended: Appended,
}

impl ProduceService {
    /// `buffer` bytes of produce bodies may be in flight at once (at least one whole request).
    pub fn new(
        replication: Arc<Replication>,
        peers: Peers,
        ring: Ring,
        max_request_size: usize,
        buffer: usize,
    ) -> ProduceService {
        ProduceService {
            replication,
            peers,
            ring,
            max_request_size,
            budget: Semaphore::new(buffer.max(max_request_size)),
            turn: AtomicUsize::new(0),
        }
    }

    /// The largest body a produce may have.
    pub fn max_request_size(&self) -> usize {
        self.max_request_size
    }

    /// Reserves a body's size (its declared length, else the request limit) before it is read:
    /// when the broker is saturated, requests wait here with their bodies still in the socket,
    /// so memory stays bounded. Held until the request is answered.
    pub async fn reserve(&self, declared: Option<usize>) -> Result<SemaphorePermit<'_>, ApiError> {
        let limit = self.max_request_size;
        let reserve = declared.unwrap_or(limit).clamp(1, limit) as u32;
        self.budget.acquire_many(reserve).await.map_err(|_| ApiError::Unavailable("the broker is shutting down".into()))
    }

    /// Stores `records` (one request's, never empty) in the partition of `key`, or, without
    /// a key, in the next of the partitions this broker leads (round-robin), and returns once
    /// a majority of the partition's copies hold them.
    pub async fn produce(&self, topic: &str, key: Option<&[u8]>, records: Vec<Bytes>) -> Result<Stored, ApiError> {
        let partition = self.partition_for(key);
        let appended = self.produce_to_leader(topic, partition, records).await?;
        Ok(Stored { partition, appended })
    }

    fn partition_for(&self, key: Option<&[u8]>) -> u32 {
        match key {
            Some(key) => self.ring.partition_of_key(key),
            None => {
                let local = self.ring.partitions_of_broker(self.peers.ordinal());
                let turn = self.turn.fetch_add(1, Ordering::Relaxed) as u32;
                local.start + turn % (local.end - local.start)
            }
        }
    }
}
