//! Becoming a partition's leader. Raft names the leader and its epoch; before serving, the new
//! leader fences a majority of the copies (they refuse the old leader from then on, so it can
//! acknowledge nothing more) and takes from the most advanced of them whatever it lacks, so
//! every record a majority acknowledged is in its log. Only then does it accept writes.
//!
//! Handing over is the graceful reverse: the leader stops taking writes, waits until the
//! chosen broker holds everything, and then asks Raft to move the leadership.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::copy_log::CopyLog;
use super::copy_protocol::{best_source, catch_up_from};
use super::leader::Replication;
use super::partition_tasks::for_each_due;
use super::peer_api::{FenceAnswer, FenceRequest};
use super::peer_client::RemoteCopy;
use super::replica_set::others_needed;
use crate::consensus::cluster_state::{Command, CommandResult};
use crate::error::ApiError;
use crate::timing::{HAND_OVER_WAIT, SHUTDOWN_HAND_OVER};

const CALL_TIMEOUT: Duration = Duration::from_secs(2);

impl Replication {
    /// Takes over every partition Raft assigns to this broker, until `stop` fires.
    pub async fn run_takeovers(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let due =
            || self.leadership.led().into_iter().filter(|(_, _, serving)| !serving).map(|(p, e, _)| (p, e)).collect();
        let work = |partition, epoch| {
            let this = self.clone();
            async move {
                this.take_over(partition, epoch).await?;
                this.leadership.mark_serving(partition, epoch);
                // Readers waiting here may now read it (a long-poll whose partition moved here).
                this.readable().notify_waiters();
                Ok(())
            }
        };
        for_each_due("take the partition over", self.leadership.changes(), stop, due, work).await;
    }

    async fn take_over(self: &Arc<Self>, partition: u32, epoch: u64) -> Result<(), String> {
        let others = self.leadership.others(partition);
        let calls = others.iter().map(|&broker| {
            let url = self.peers.url(broker, &format!("/cluster/fence/{partition}"));
            let call = self.peers.http().post(url).json(&FenceRequest { epoch }).timeout(CALL_TIMEOUT).send();
            async move {
                let response = call.await.ok().filter(|r| r.status().is_success())?;
                Some((broker, response.json::<FenceAnswer>().await.ok()?))
            }
        });
        let fenced: Vec<(u32, FenceAnswer)> =
            futures_util::future::join_all(calls).await.into_iter().flatten().collect();
        if fenced.len() < others_needed(others.len()) {
            return Err(format!("only {} of the {} other copies answered", fenced.len(), others.len()));
        }
        if !self.leadership.leads(partition, epoch) {
            return Err("leadership moved on meanwhile".into());
        }
        let mut topics: BTreeSet<String> = fenced.iter().flat_map(|(_, a)| a.topics.keys().cloned()).collect();
        topics.extend(self.storage.topics_with(partition));
        // A topic being deleted here is not taken over: its files are going.
        topics.retain(|topic| !self.storage.is_refused(topic));
        for topic in topics {
            let mine = self.local(&topic, partition);
            let states = fenced.iter().filter_map(|(broker, answer)| Some((*broker, *answer.topics.get(&topic)?)));
            if let Some((source, theirs)) = best_source(mine.state(), states) {
                tracing::info!(%topic, partition, epoch, source, mine = ?mine.state(), ?theirs,
                    "new leader takes the records it lacks from another copy");
                let remote = RemoteCopy { replication: self, broker: source, topic: &topic, partition };
                catch_up_from(&mine, &remote).await.map_err(|e| format!("copying from broker {source}: {e}"))?;
            }
        }
        tracing::info!(partition, epoch, "leading the partition");
        Ok(())
    }

    /// Hands `partition` to broker `to` without losing or refusing a write: new writes wait
    /// (the brokers that forward them retry), `to` catches up, then Raft moves the leadership.
    pub async fn hand_over(self: &Arc<Self>, partition: u32, to: u32) -> Result<(), ApiError> {
        let Some(epoch) = self.leadership.serving_epoch(partition) else { return Ok(()) };
        if to == self.leadership.me() || !self.leadership.others(partition).contains(&to) {
            return Err(ApiError::BadRequest(format!("broker {to} holds no copy of partition {partition}")));
        }
        if !self.leadership.begin_hand_off(partition) {
            return Ok(());
        }
        let result = self.hand_over_when_caught_up(partition, epoch, to).await;
        self.leadership.end_hand_off(partition);
        match &result {
            Ok(()) => tracing::info!(partition, to, epoch = epoch + 1, "handed the partition over"),
            Err(e) => tracing::warn!(partition, to, "hand-over abandoned: {e}"),
        }
        result
    }

    async fn hand_over_when_caught_up(self: &Arc<Self>, partition: u32, epoch: u64, to: u32) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + HAND_OVER_WAIT;
        self.wait_for_writes(partition, deadline).await?;
        let topics = self.storage.topics_with(partition);
        loop {
            let behind = topics.iter().any(|topic| {
                let end = self.storage.end(topic, partition);
                self.copies(topic, partition, epoch).end_of(to).is_none_or(|theirs| theirs < end)
            });
            if !behind {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::Unavailable(format!("broker {to} did not catch up on partition {partition}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let command = Command::SetLeader { partition, broker: to, epoch: epoch + 1 };
        match self.leadership.raft().propose(command).await? {
            CommandResult::LeaderSet { applied: true } => Ok(()),
            _ => Err(ApiError::Unavailable(format!("partition {partition}'s leadership changed meanwhile"))),
        }
    }

    /// Hands every partition this broker serves to a live copy (at shutdown).
    pub async fn hand_over_all(self: &Arc<Self>) {
        let moves = self.leadership.led().into_iter().filter(|(_, _, serving)| *serving).map(|(partition, _, _)| {
            let this = self.clone();
            async move {
                for to in this.leadership.others(partition) {
                    if this.hand_over(partition, to).await.is_ok() {
                        return;
                    }
                }
            }
        });
        if tokio::time::timeout(SHUTDOWN_HAND_OVER, futures_util::future::join_all(moves)).await.is_err() {
            tracing::warn!("not every partition was handed over in time; their copies take over by failover");
        }
    }
}
