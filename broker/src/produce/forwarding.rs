//! Sending a produce to the broker that leads its partition, wherever it arrived. While
//! leadership moves (a failover or a hand-over), the write is retried against the new leader
//! for up to [`crate::timing::LEADER_WAIT`], so producers see a slower answer instead of an
//! error; when a resize opens a new generation meanwhile, it goes to the new generation's
//! partition of its key instead.

use std::time::Duration;

use bytes::Bytes;

use super::peer_api::{forward, Retry};
use super::ProduceService;
use super::Stored;
use crate::error::ApiError;
use crate::store::Conditions;
use crate::timing::LEADER_WAIT;

const RETRY_PAUSE: Duration = Duration::from_millis(100);

impl ProduceService {
    /// Appends `records` on the leader of `key`'s partition (this broker or another) and
    /// returns where they are once a majority of its copies hold them. Retried, an idempotent
    /// request is checked again by whichever broker leads then: stored at most once.
    pub(super) async fn produce_to_leader(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        records: Vec<Bytes>,
        conditions: Conditions,
    ) -> Result<Stored, ApiError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut partition = self.partition_for(key)?;
        loop {
            if !self.replication.leadership().layout(|l| l.is_current(partition)) {
                partition = self.partition_for(key)?;
            }
            let leader = self.replication.leadership().current(partition).broker;
            let forwarded = leader != self.peers.ordinal();
            let attempt = if !forwarded {
                match self.replication.append(topic, partition, records.clone(), conditions.clone()).await {
                    Err(ApiError::NotLeader(_)) => {
                        Err(Retry(format!("this broker is not serving partition {partition} yet")))
                    }
                    other => Ok(other),
                }
            } else {
                // A leader that is cut off may never answer; once Raft names another, that one
                // is asked instead (the old one is fenced and can no longer acknowledge anything).
                tokio::select! {
                    answer = forward(&self.peers, leader, (topic, partition), &records, &conditions) => answer,
                    _ = self.replication.leadership().moved_from(partition, leader) => {
                        Err(Retry(format!("leadership moved away from broker {leader}")))
                    }
                }
            };
            match attempt {
                Ok(result) => return result.map(|appended| Stored { partition, appended, forwarded }),
                Err(Retry(reason)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%topic, partition, leader, "produce waits for the partition's leader: {reason}");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(Retry(reason)) => {
                    return Err(ApiError::Unavailable(format!(
                        "partition {partition} has no reachable leader ({reason})"
                    )))
                }
            }
        }
    }
}
