//! The controller: whichever broker leads Raft watches every broker and moves partition
//! leadership through Raft. A leader that has not answered for [`DEAD_AFTER`] loses its
//! partitions to a live copy (failover); a ring owner that is back and healthy gets its
//! partitions handed back by their current leader (return to balance).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::leader::Replication;
use super::peer_api::{HandoverRequest, Health};
use crate::cluster_state::{Command, CommandResult};
use crate::timing::{BACK_FOR, DEAD_AFTER, PROBE_EVERY};

/// Pause between two hand-back requests for one partition.
const HAND_BACK_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Seen {
    last_answer: Option<Instant>,
    healthy_since: Option<Instant>,
    health: Health,
}

impl Replication {
    pub async fn run_controller(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut seen: HashMap<u32, Seen> = HashMap::new();
        let mut hand_backs: HashMap<u32, Instant> = HashMap::new();
        let mut leading_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = stop.changed() => return,
            }
            if !self.leadership.raft().is_leader() {
                leading_since = None;
                continue;
            }
            let became_leader = *leading_since.get_or_insert_with(Instant::now);
            self.probe(&mut seen).await;
            let now = Instant::now();
            // A new controller gives every broker a full grace period before declaring it dead.
            let alive = |b: u32| {
                let last = seen.get(&b).and_then(|s| s.last_answer).unwrap_or(became_leader).max(became_leader);
                now.duration_since(last) < DEAD_AFTER
            };
            let eligible = |b: u32| seen.get(&b).is_some_and(|s| s.health.ready && !s.health.draining) && alive(b);
            for partition in 0..self.leadership.ring().partitions() {
                let current = self.leadership.current(partition);
                if !alive(current.broker) {
                    let Some(next) =
                        self.leadership.replicas(partition).into_iter().find(|b| *b != current.broker && eligible(*b))
                    else {
                        continue;
                    };
                    let command = Command::SetLeader { partition, broker: next, epoch: current.epoch + 1 };
                    match self.leadership.raft().propose(command).await {
                        Ok(CommandResult::LeaderSet { applied: true }) => tracing::warn!(
                            partition,
                            from = current.broker,
                            to = next,
                            epoch = current.epoch + 1,
                            "partition leader unreachable; moved leadership"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(partition, "could not move leadership: {e}"),
                    }
                    continue;
                }
                let owner = self.leadership.ring().broker_of(partition);
                let owner_back =
                    seen.get(&owner).and_then(|s| s.healthy_since).is_some_and(|t| now.duration_since(t) >= BACK_FOR);
                let due = hand_backs.get(&partition).is_none_or(|t| now.duration_since(*t) >= HAND_BACK_EVERY);
                if current.broker != owner && eligible(owner) && owner_back && due {
                    hand_backs.insert(partition, now);
                    self.ask_hand_back(current.broker, partition, owner);
                }
            }
        }
    }

    async fn probe(&self, seen: &mut HashMap<u32, Seen>) {
        let count = self.peers.count();
        let calls = (0..count).map(|broker| {
            let url = self.peers.url(broker, "/cluster/health");
            let call = self.peers.http().get(url).timeout(PROBE_EVERY).send();
            async move {
                let health = match call.await {
                    Ok(r) if r.status().is_success() => r.json::<Health>().await.ok(),
                    _ => None,
                };
                (broker, health)
            }
        });
        let now = Instant::now();
        for (broker, health) in futures_util::future::join_all(calls).await {
            let entry = seen.entry(broker).or_default();
            match health {
                Some(health) => {
                    entry.last_answer = Some(now);
                    let healthy = health.ready && !health.draining;
                    if healthy && entry.healthy_since.is_none() {
                        entry.healthy_since = Some(now);
                    } else if !healthy {
                        entry.healthy_since = None;
                    }
                    entry.health = health;
                }
                None => entry.healthy_since = None,
            }
        }
    }

    /// Asks `leader` to hand `partition` back to its ring owner (in the background: the
    /// hand-over waits for the owner to catch up).
    fn ask_hand_back(&self, leader: u32, partition: u32, owner: u32) {
        let url = self.peers.url(leader, &format!("/cluster/handover/{partition}"));
        let call = self.peers.http().post(url).json(&HandoverRequest { to: owner }).send();
        tokio::spawn(async move {
            match call.await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(partition, from = leader, to = owner, "partition handed back to its owner")
                }
                Ok(r) => tracing::debug!(partition, leader, status = %r.status(), "hand-back not done yet"),
                Err(e) => tracing::debug!(partition, leader, "hand-back request failed: {e}"),
            }
        });
    }
}
