//! Acknowledging, giving back (nack) and extending leases (SPEC §14), on the leader of each
//! token's partition: this broker for its own, the others' through `peer_api`. An ack counts
//! once Raft holds it; a token that names no current lease is answered per token.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ack_token::AckToken;
use super::service::{now, QueueService, WindowKey};
use super::window::Check;
use crate::consensus::cluster_state::{Command, CommandResult};
use crate::consensus::queue_groups::PartitionAcks;
use crate::error::ApiError;

/// What is done to the leases the tokens name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "op")]
pub enum Settle {
    Ack,
    /// Available again after `delay_ms`.
    Nack {
        #[serde(rename = "delayMs")]
        delay_ms: u64,
    },
    /// The lease runs `ackWaitMs` from now.
    Extend,
}

/// One token's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettleResult {
    Ok,
    /// Not a token of this group's records.
    Unknown,
    /// Its lease ended (`ackWaitMs` passed, the record was leased again, or the partition's
    /// leader changed): the record is or will be leased again.
    Expired,
}

impl From<Check> for SettleResult {
    fn from(check: Check) -> Self {
        match check {
            Check::Current | Check::Acked => SettleResult::Ok,
            Check::Expired => SettleResult::Expired,
            Check::Unknown => SettleResult::Unknown,
        }
    }
}

/// Records being acknowledged, per (topic, partition, leader epoch).
pub(super) type Acking = BTreeMap<(String, u32, u64), Settling>;

/// One partition's records being acknowledged.
pub(super) struct Settling {
    /// Its window's floor when the acknowledgement was made (Raft's floor follows it).
    pub floor: u64,
    /// (token index, offset) of each record; a token named twice appears twice.
    pub entries: Vec<(usize, u64)>,
}

impl QueueService {
    /// Settles `tokens` (each on its partition's leader); one result per token, in order.
    pub async fn settle(
        self: &Arc<Self>,
        group: &str,
        settle: Settle,
        tokens: &[String],
    ) -> Result<Vec<SettleResult>, ApiError> {
        let leadership = self.replication.leadership();
        let mut results = vec![SettleResult::Unknown; tokens.len()];
        let mut here: Vec<(usize, AckToken)> = Vec::new();
        let mut elsewhere: BTreeMap<u32, Vec<(usize, String)>> = BTreeMap::new();
        for (i, text) in tokens.iter().enumerate() {
            let Some(token) = AckToken::decode(text) else { continue };
            if !leadership.layout(|l| l.all_partitions().contains(&token.partition)) {
                continue;
            }
            match leadership.current(token.partition).broker {
                leader if leader == self.peers.ordinal() => here.push((i, token)),
                leader => elsewhere.entry(leader).or_default().push((i, text.clone())),
            }
        }
        let local = async {
            let tokens: Vec<AckToken> = here.iter().map(|(_, t)| t.clone()).collect();
            self.settle_here(group, settle, &tokens).await
        };
        let remote = futures_util::future::join_all(elsewhere.iter().map(|(&leader, tokens)| {
            let texts: Vec<String> = tokens.iter().map(|(_, t)| t.clone()).collect();
            async move { super::peer_api::settle_on(&self.peers, leader, group, settle, texts).await }
        }));
        let (local, remote) = tokio::join!(local, remote);
        for ((i, _), result) in here.iter().zip(local?) {
            results[*i] = result;
        }
        for ((_, tokens), answer) in elsewhere.iter().zip(remote) {
            for ((i, _), result) in tokens.iter().zip(answer?) {
                results[*i] = result;
            }
        }
        Ok(results)
    }

    /// Settles tokens of partitions this broker leads (or led: a token of another epoch
    /// names a lease that ended with it).
    pub(super) async fn settle_here(
        self: &Arc<Self>,
        group: &str,
        settle: Settle,
        tokens: &[AckToken],
    ) -> Result<Vec<SettleResult>, ApiError> {
        let Some(settings) = self.settings(group) else { return Ok(vec![SettleResult::Unknown; tokens.len()]) };
        let ack_wait = Duration::from_millis(settings.ack_wait_ms);
        let leadership = self.replication.leadership();
        let now = now();
        let mut results = vec![SettleResult::Unknown; tokens.len()];
        let mut acking = Acking::new();
        // A token named twice in one call is answered as the first.
        let mut first_of: HashMap<&AckToken, usize> = HashMap::new();
        {
            let mut windows = self.lock_windows();
            for (i, token) in tokens.iter().enumerate() {
                if !settings.topics.contains(&token.topic) {
                    continue;
                }
                let place = (token.topic.clone(), token.partition, token.epoch);
                if let Some(&first) = first_of.get(token) {
                    results[i] = results[first];
                    if let Some(settling) = acking.get_mut(&place) {
                        if settling.entries.iter().any(|&(j, _)| j == first) {
                            settling.entries.push((i, token.offset));
                        }
                    }
                    continue;
                }
                first_of.insert(token, i);
                let key =
                    WindowKey { group: group.to_string(), topic: token.topic.clone(), partition: token.partition };
                let window = windows
                    .get_mut(&key)
                    .filter(|q| q.epoch == token.epoch && leadership.serving_epoch(token.partition) == Some(q.epoch));
                let Some(queue) = window else {
                    results[i] = SettleResult::Expired;
                    continue;
                };
                let (offset, lease) = (token.offset, token.lease);
                let check = match settle {
                    Settle::Ack => queue.window.begin_ack(offset, lease, now),
                    Settle::Nack { delay_ms } => queue.window.nack(offset, lease, now, Duration::from_millis(delay_ms)),
                    Settle::Extend => queue.window.extend(offset, lease, now, ack_wait),
                };
                if check == Check::Current && settle == Settle::Ack {
                    let floor = queue.window.floor();
                    acking
                        .entry(place)
                        .or_insert_with(|| Settling { floor, entries: Vec::new() })
                        .entries
                        .push((i, offset));
                } else {
                    results[i] = check.into();
                }
            }
        }
        if matches!(settle, Settle::Nack { .. }) {
            self.given_back.notify_waiters();
        }
        if settle == Settle::Ack {
            // An expired token of a record Raft holds acknowledged (a repeat after a failover)
            // is answered `ok`: the record will not come again.
            for (i, token) in tokens.iter().enumerate() {
                if results[i] == SettleResult::Expired && self.is_acked(group, token) {
                    results[i] = SettleResult::Ok;
                }
            }
        }
        if acking.is_empty() {
            return Ok(results);
        }
        let (acking, counted) = self.acknowledge_durably(group, acking).await?;
        let mut acked = 0;
        for (settling, &counts) in acking.values().zip(&counted) {
            for &(i, _) in &settling.entries {
                results[i] = if counts { SettleResult::Ok } else { SettleResult::Expired };
            }
            let distinct: BTreeSet<u64> = settling.entries.iter().map(|&(_, o)| o).collect();
            acked += if counts { distinct.len() as u64 } else { 0 };
        }
        self.metrics.acked(group).inc_by(acked);
        Ok(results)
    }

    /// Proposes the acknowledgements and ends their settling, in a task of its own: a caller
    /// that goes away meanwhile (a client that hung up) leaves no record settling for good.
    async fn acknowledge_durably(
        self: &Arc<Self>,
        group: &str,
        acking: Acking,
    ) -> Result<(Acking, Vec<bool>), ApiError> {
        let (this, group) = (Arc::clone(self), group.to_string());
        let task = tokio::spawn(async move {
            match this.acknowledge(&group, &acking).await {
                Ok(counted) => {
                    this.release(&group, &acking, &counted, now());
                    Ok((acking, counted))
                }
                Err(e) => {
                    this.release_unacknowledged(&group, &acking, now());
                    Err(e)
                }
            }
        });
        task.await.map_err(|e| ApiError::Internal(format!("acknowledging stopped: {e}")))?
    }

    /// Proposes the acknowledgements (one Raft entry): per partition, whether it counted.
    pub(super) async fn acknowledge(&self, group: &str, acking: &Acking) -> Result<Vec<bool>, ApiError> {
        let acks = acking
            .iter()
            .map(|((topic, partition, epoch), settling)| PartitionAcks {
                topic: topic.clone(),
                partition: *partition,
                epoch: *epoch,
                floor: settling.floor,
                offsets: settling.entries.iter().map(|&(_, o)| o).collect(),
            })
            .collect();
        match self.raft.propose(Command::QueueAck { group: group.to_string(), acks }).await? {
            CommandResult::QueueAcked(counted) if counted.len() == acking.len() => Ok(counted),
            other => Err(ApiError::Internal(format!("unexpected answer to queue acknowledgements: {other:?}"))),
        }
    }

    /// Ends the settling of `acking`'s records: acknowledged where it counted, else available
    /// again from `again_from` (a failed proposal may still have counted: at worst a record
    /// comes twice).
    pub(super) fn release(&self, group: &str, acking: &Acking, counted: &[bool], again_from: Instant) {
        let mut windows = self.lock_windows();
        for (((topic, partition, epoch), settling), &counts) in acking.iter().zip(counted) {
            let key = WindowKey { group: group.to_string(), topic: topic.clone(), partition: *partition };
            if let Some(queue) = windows.get_mut(&key).filter(|q| q.epoch == *epoch) {
                for &(_, offset) in &settling.entries {
                    queue.window.settle(offset, counts, again_from);
                }
            }
        }
        drop(windows);
        // Given back, a record may be leased again; acknowledged, one may free the window's
        // in-flight bound or, in an ordered group, its key's next record: waiting nexts look
        // (unless what was given back is available only later: a lease end wakes them then).
        if again_from <= now() {
            self.given_back.notify_waiters();
        }
    }

    /// [`QueueService::release`] with nothing acknowledged.
    pub(super) fn release_unacknowledged(&self, group: &str, acking: &Acking, again_from: Instant) {
        self.release(group, acking, &vec![false; acking.len()], again_from);
    }

    /// The floor of `key`'s window in `epoch` (0 without one: Raft keeps its own then).
    pub(super) fn floor_of(&self, key: &WindowKey, epoch: u64) -> u64 {
        self.lock_windows().get(key).filter(|q| q.epoch == epoch).map_or(0, |q| q.window.floor())
    }

    fn is_acked(&self, group: &str, token: &AckToken) -> bool {
        self.raft
            .read(|s| s.queues.acked(group, &token.topic, token.partition).is_some_and(|a| a.contains(token.offset)))
    }
}
