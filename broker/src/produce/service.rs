//! The produce service: partition choice and the leader's append (the bodies' memory is
//! [`crate::memory`]'s produce budget, reserved by the producer port as they arrive).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::Peers;
use crate::error::ApiError;
use crate::partitioning::Ring;
use crate::replication::Replication;
use crate::store::Appended;

pub struct ProduceService {
    pub(super) replication: Arc<Replication>,
    pub(super) peers: Peers,
    pub(super) ring: Ring,
    /// Rotates the partition of requests without a key.
    turn: AtomicUsize,
}

/// Where a produce was stored.
pub struct Stored {
    pub partition: u32,
    pub appended: Appended,
}

impl ProduceService {
    pub fn new(replication: Arc<Replication>, peers: Peers, ring: Ring) -> ProduceService {
        ProduceService { replication, peers, ring, turn: AtomicUsize::new(0) }
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
