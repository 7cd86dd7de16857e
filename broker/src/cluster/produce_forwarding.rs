//! Sending a produce to the broker that leads its partition, wherever it arrived. While
//! leadership moves (a failover or a hand-over), the write is retried against the new leader
//! for up to [`crate::timing::LEADER_WAIT`], so producers see a slower answer instead of an error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::record_frames::encode_frames;
use super::Peers;
use crate::error::{ApiError, NOT_LEADER};
use crate::replication::Replication;
use crate::store::Appended;
use crate::timing::{FORWARD_TIMEOUT, LEADER_WAIT};

const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Appends `records` on the partition's leader (this broker or another) and returns once a
/// majority of its copies hold them.
pub async fn produce_to_leader(
    replication: &Arc<Replication>,
    peers: &Peers,
    topic: &str,
    partition: u32,
    records: Vec<Bytes>,
) -> Result<Appended, ApiError> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        let leader = replication.leadership().current(partition).broker;
        let attempt = if leader == peers.ordinal() {
            match replication.append(topic, partition, records.clone()).await {
                Err(ApiError::NotLeader(_)) => {
                    Err(Retry(format!("this broker is not serving partition {partition} yet")))
                }
                other => Ok(other),
            }
        } else {
            // A leader that is cut off may never answer; once Raft names another, that one is
            // asked instead (the old one is fenced and can no longer acknowledge anything).
            tokio::select! {
                answer = forward(peers, leader, topic, partition, &records) => answer,
                _ = leadership_moves(replication, partition, leader) => {
                    Err(Retry(format!("leadership moved away from broker {leader}")))
                }
            }
        };
        match attempt {
            Ok(result) => return result,
            Err(Retry(reason)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%topic, partition, leader, "produce waits for the partition's leader: {reason}");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(Retry(reason)) => {
                return Err(ApiError::Unavailable(format!("partition {partition} has no reachable leader ({reason})")))
            }
        }
    }
}

/// Resolves once the applied Raft state names a leader other than `leader`.
async fn leadership_moves(replication: &Replication, partition: u32, leader: u32) {
    while replication.leadership().current(partition).broker == leader {
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Not acknowledged: the records may be sent again (at worst stored twice, never lost).
struct Retry(String);

async fn forward(
    peers: &Peers,
    leader: u32,
    topic: &str,
    partition: u32,
    records: &[Bytes],
) -> Result<Result<Appended, ApiError>, Retry> {
    let url = peers.url(leader, &format!("/cluster/produce/{topic}/{partition}"));
    let response = match peers.http().post(url).body(encode_frames(records)).timeout(FORWARD_TIMEOUT).send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() => return Err(Retry(format!("broker {leader} is unreachable: {e}"))),
        Err(e) => {
            return Ok(Err(ApiError::Unavailable(format!(
                "the leader of partition {partition} (broker {leader}) failed mid-request: {e}"
            ))))
        }
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response
            .json()
            .await
            .map_err(|e| ApiError::Unavailable(format!("bad answer from broker {leader}: {e}"))));
    }
    let text = response.text().await.unwrap_or_default();
    let code =
        serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["error"].as_str().map(String::from));
    if code.as_deref() == Some(NOT_LEADER) {
        return Err(Retry(format!("broker {leader} does not lead it (yet)")));
    }
    Ok(Err(ApiError::Unavailable(format!("the leader of partition {partition} answered {status}: {text}"))))
}
