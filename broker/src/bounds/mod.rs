//! The bounds of a topic's partitions as their leaders know them: where each starts (its
//! first retained record), where it ends for readers (what a majority of its copies hold,
//! `Replication::readable_end`), and, when asked, the first offset appended at or after a
//! time. Only a partition's leader knows its readable end, and every broker leads some
//! partitions, so a broker answers for the partitions it leads and asks every other broker
//! for theirs (`peer_api.rs`). A broker that does not answer in time leaves its partitions
//! without bounds, named with the leader this broker's Raft state knows: the caller decides
//! whether that is an error (a reset) or a gap in a view (a group's lag).

mod peer_api;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::cluster::Peers;
use crate::replication::Replication;
use crate::store::Storage;

pub use peer_api::router as peer_router;
use peer_api::{ask_others, BoundsRequest, LedBounds};

/// One partition of a topic, with its bounds if its leader answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionBounds {
    pub partition: u32,
    /// The ring generation the partition belongs to.
    pub generation: u32,
    /// The broker that answered for it, or, without an answer, the leader this broker knows.
    pub leader: u32,
    pub epoch: u64,
    /// `None`: its leader did not answer in time, or is still taking the partition over.
    pub offsets: Option<Offsets>,
}

/// What a partition's leader said of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Offsets {
    /// The first retained offset (the end, when retention removed everything).
    pub start: u64,
    /// The readable end: the next offset a majority of the copies will hold.
    pub end: u64,
    /// The first offset appended at or after the time asked for, in `[start, end]`.
    pub at_timestamp: Option<u64>,
    /// Bytes of the leader's copy on its disk.
    pub bytes: u64,
}

/// Gathers partition bounds from this broker and the others.
pub struct Bounds {
    replication: Arc<Replication>,
    storage: Storage,
    peers: Peers,
}

impl Bounds {
    pub fn new(replication: Arc<Replication>, storage: Storage, peers: Peers) -> Arc<Bounds> {
        Arc::new(Bounds { replication, storage, peers })
    }

    /// Every partition of every generation of `topic`, in partition order; with `timestamp`
    /// (ms since the Unix epoch), each with the first offset appended at or after it.
    pub async fn partition_bounds(&self, topic: &str, timestamp: Option<i64>) -> Vec<PartitionBounds> {
        let mut topics = self.topics_bounds(&[topic.to_string()], timestamp).await;
        topics.remove(topic).unwrap_or_default()
    }

    /// [`Bounds::partition_bounds`] of several topics, in one request to each broker.
    pub async fn topics_bounds(
        &self,
        topics: &[String],
        timestamp: Option<i64>,
    ) -> BTreeMap<String, Vec<PartitionBounds>> {
        let request = BoundsRequest { topics: topics.to_vec(), timestamp };
        let (here, elsewhere) = tokio::join!(self.led_here(&request), ask_others(&self.peers, &request));
        let mut answered: HashMap<(String, u32), (u32, LedBounds)> = HashMap::new();
        let me = self.peers.ordinal();
        let all = here.into_iter().map(|led| (me, led)).chain(elsewhere);
        for (broker, led) in all {
            // Two brokers may both say they lead a partition while its leadership moves: the
            // newer epoch is the one that leads now.
            let key = (led.topic.clone(), led.partition);
            if answered.get(&key).is_none_or(|(_, known)| known.epoch < led.epoch) {
                answered.insert(key, (broker, led));
            }
        }
        let partitions: Vec<(u32, u32, u32, u64)> = self.replication.leadership().raft().read(|s| {
            s.layout
                .generations()
                .flat_map(|(generation, g)| g.partitions().map(move |p| (generation, p)))
                .map(|(generation, p)| {
                    let leader = s.leader(p);
                    (p, generation, leader.broker, leader.epoch)
                })
                .collect()
        });
        let mut bounds = BTreeMap::new();
        for topic in topics {
            let rows = partitions
                .iter()
                .map(|&(partition, generation, leader, epoch)| match answered.remove(&(topic.clone(), partition)) {
                    Some((broker, led)) => PartitionBounds {
                        partition,
                        generation,
                        leader: broker,
                        epoch: led.epoch,
                        offsets: Some(Offsets {
                            start: led.start,
                            end: led.end,
                            at_timestamp: led.at_timestamp,
                            bytes: led.bytes,
                        }),
                    },
                    None => PartitionBounds { partition, generation, leader, epoch, offsets: None },
                })
                .collect();
            bounds.insert(topic.clone(), rows);
        }
        bounds
    }

    /// The bounds of the partitions this broker serves as leader, for each topic asked about
    /// (a topic it holds no record of in a partition: empty there, 0 to 0). A partition whose
    /// time lookup fails (its log cannot be read) is left out, as if this broker had not answered.
    async fn led_here(&self, request: &BoundsRequest) -> Vec<LedBounds> {
        let served = self.replication.leadership().served();
        let mut led = Vec::with_capacity(request.topics.len() * served.len());
        for topic in &request.topics {
            for &(partition, epoch) in &served {
                let (start, end) = self.replication.read_bounds(topic, partition).unwrap_or((0, 0));
                let at_timestamp = match request.timestamp {
                    None => None,
                    Some(ms) => match self.storage.offset_for_timestamp(topic, partition, ms).await {
                        Ok(offset) => Some(offset.clamp(start, end)),
                        Err(e) => {
                            tracing::warn!(%topic, partition, "cannot find the offset of a time: {e}");
                            continue;
                        }
                    },
                };
                let bytes = self.storage.bytes_on_disk(topic, partition);
                led.push(LedBounds { topic: topic.clone(), partition, epoch, start, end, at_timestamp, bytes });
            }
        }
        led
    }
}
