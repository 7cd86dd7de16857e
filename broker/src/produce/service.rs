//! The produce service: partition choice and the leader's append (the bodies' memory is
//! [`crate::memory`]'s produce budget, reserved by the producer port as they arrive).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::Peers;
use crate::error::ApiError;
use crate::replication::Replication;
use crate::store::{Appended, Conditions};
use crate::topics::TopicService;

pub struct ProduceService {
    pub(super) replication: Arc<Replication>,
    pub(super) peers: Peers,
    topics: Arc<TopicService>,
    /// Rotates the partition of requests without a key.
    turn: AtomicUsize,
}

/// Where a produce was stored.
pub struct Stored {
    pub partition: u32,
    pub appended: Appended,
    /// Another broker led the partition and stored them.
    pub forwarded: bool,
}

impl ProduceService {
    pub fn new(replication: Arc<Replication>, peers: Peers, topics: Arc<TopicService>) -> ProduceService {
        ProduceService { replication, peers, topics, turn: AtomicUsize::new(0) }
    }

    /// Stores `records` (one request's, never empty) in the current generation's partition of
    /// `key`, or, without a key, in the next of the partitions this broker owns in it
    /// (round-robin; any of the generation's partitions on a broker outside the ring), and
    /// returns once a majority of the partition's copies hold them. An idempotent request
    /// without a key goes to the partition of its `Producer-Id`, so its retries, through any
    /// broker, meet the state they are checked against; a conditional one needs a key or an id
    /// (a partition chosen round-robin could not be the one its offset was read from). The
    /// key's token is stored with the records (the id's is not: they stay keyless). The topic
    /// must exist (or is created now, with auto-creation) and not be being deleted.
    pub async fn produce(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        records: Vec<Bytes>,
        mut conditions: Conditions,
    ) -> Result<Stored, ApiError> {
        self.topics.writable(topic).await?;
        conditions.key_token = key.map(runnel_discovery::token);
        let id = conditions.producer.as_ref().map(|p| p.id.clone());
        let key = key.or(id.as_deref().map(str::as_bytes));
        if key.is_none() && conditions.expected_offset.is_some() {
            return Err(ApiError::BadRequest(
                "Expected-Offset needs a partitionKey (or a Producer-Id) to name the partition it is about".into(),
            ));
        }
        self.produce_to_leader(topic, key, records, conditions).await
    }

    /// The partition of `key` (or the next one without a key) in the current generation.
    pub(super) fn partition_for(&self, key: Option<&[u8]>) -> Result<u32, ApiError> {
        let chosen = self.replication.leadership().layout(|layout| match key {
            Some(key) => layout.partition_of_key(key),
            None => {
                let own = layout.partitions_of_broker(self.peers.ordinal());
                let choices = if own.is_empty() { layout.current_partitions() } else { own };
                let turn = self.turn.fetch_add(1, Ordering::Relaxed) as u32;
                (!choices.is_empty()).then(|| choices.start + turn % choices.len() as u32)
            }
        });
        chosen.ok_or_else(|| ApiError::Unavailable("the cluster has not agreed on its ring yet".into()))
    }
}
