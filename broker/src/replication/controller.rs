//! The controller: whichever broker leads Raft watches every broker and moves partition
//! leadership through Raft. A leader that has not answered for [`DEAD_AFTER`] loses its
//! partitions to a live copy (failover); a ring owner that is back and healthy gets its
//! partitions handed back by their current leader (return to balance).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::growth::growth;
use super::leader::Replication;
use super::peer_api::{HandoverRequest, Health};
use crate::consensus::cluster_state::{BrokerState, Command, CommandResult, PartitionLeader};
use crate::partitioning::Layout;
use crate::timing::{BACK_FOR, DEAD_AFTER, PROBE_EVERY};

/// Pause between two hand-back requests for one partition.
const HAND_BACK_EVERY: Duration = Duration::from_secs(5);

/// What the controller heard from one broker.
#[derive(Default, Clone, Copy)]
struct Seen {
    last_answer: Option<Instant>,
    healthy_since: Option<Instant>,
    health: Health,
}

/// What the controller knows, from which it decides each partition's fate: pure, so it is
/// tested with paused time.
struct Observations {
    seen: HashMap<u32, Seen>,
    /// When this broker became the controller: every broker gets a full grace period from then.
    became_leader: Instant,
    /// When each partition was last asked to go back to its owner.
    hand_backs: HashMap<u32, Instant>,
}

/// What the controller does about one partition.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Nothing,
    /// The leader is dead: this live copy takes over in the next epoch.
    FailOver {
        to: u32,
    },
    /// The ring owner is back and healthy: the current leader hands the partition to it.
    HandBack {
        to: u32,
    },
}

impl Observations {
    fn new(now: Instant) -> Observations {
        Observations { seen: HashMap::new(), became_leader: now, hand_backs: HashMap::new() }
    }

    /// Records one probe round's answers (`None`: no answer).
    fn record(&mut self, now: Instant, answers: impl IntoIterator<Item = (u32, Option<Health>)>) {
        for (broker, health) in answers {
            let entry = self.seen.entry(broker).or_default();
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

    fn alive(&self, broker: u32, now: Instant) -> bool {
        let last = self.seen.get(&broker).and_then(|s| s.last_answer).unwrap_or(self.became_leader);
        now.duration_since(last.max(self.became_leader)) < DEAD_AFTER
    }

    fn eligible(&self, broker: u32, now: Instant) -> bool {
        self.seen.get(&broker).is_some_and(|s| s.health.ready && !s.health.draining) && self.alive(broker, now)
    }

    /// Eligible and healthy for [`BACK_FOR`] without a break: a broker that may be given
    /// partitions (its own back, or a new ring's).
    fn settled(&self, broker: u32, now: Instant) -> bool {
        let healthy_for = self.seen.get(&broker).and_then(|s| s.healthy_since).map(|t| now.duration_since(t));
        self.eligible(broker, now) && healthy_for.is_some_and(|d| d >= BACK_FOR)
    }

    /// The fate of `partition`, led by `leader`, with copies `replicas` (its ring owner first),
    /// given back to its owner only if that is `home` (a leaving owner is not).
    fn decide(&mut self, partition: u32, leader: u32, replicas: &[u32], home: Option<u32>, now: Instant) -> Decision {
        if !self.alive(leader, now) {
            return match replicas.iter().copied().find(|b| *b != leader && self.eligible(*b, now)) {
                Some(to) => Decision::FailOver { to },
                None => Decision::Nothing,
            };
        }
        let Some(owner) = home.filter(|h| replicas.first() == Some(h)) else { return Decision::Nothing };
        let due = self.hand_backs.get(&partition).is_none_or(|t| now.duration_since(*t) >= HAND_BACK_EVERY);
        if leader != owner && self.settled(owner, now) && due {
            self.hand_backs.insert(partition, now);
            return Decision::HandBack { to: owner };
        }
        Decision::Nothing
    }
}

impl Replication {
    pub async fn run_controller(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut observed: Option<Observations> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = stop.changed() => return,
            }
            if !self.leadership.raft().is_leader() {
                observed = None;
                continue;
            }
            let observed = observed.get_or_insert_with(|| Observations::new(Instant::now()));
            let answers = self.probe().await;
            observed.record(Instant::now(), answers);
            let now = Instant::now();
            for partition in self.leadership.layout(Layout::all_partitions) {
                let (current, replicas, home) = self.leadership.raft().read(|s| {
                    let replicas = s.replicas(partition);
                    let home = replicas
                        .first()
                        .copied()
                        .filter(|o| s.brokers.get(o).is_none_or(|b| b.state != BrokerState::Leaving));
                    (s.leader(partition), replicas, home)
                });
                match observed.decide(partition, current.broker, &replicas, home, now) {
                    Decision::Nothing => {}
                    Decision::FailOver { to } => self.fail_over(partition, current, to).await,
                    Decision::HandBack { to } => self.ask_hand_back(current.broker, partition, to),
                }
            }
            if let Some(resize) = self.leadership.raft().read(|s| growth(s, |b| observed.settled(b, now))) {
                self.grow(resize).await;
            }
            self.remove_departed().await;
        }
    }

    /// Takes leaving brokers that hold nothing any more out of Raft and marks them removable
    /// (this broker last, should it be one: its Raft leadership passes on).
    async fn remove_departed(&self) {
        let me = self.leadership.me();
        let mut done: Vec<u32> = self
            .leadership
            .raft()
            .read(|s| s.brokers_in(BrokerState::Leaving).filter(|b| s.holds_nothing(*b)).collect());
        done.sort_by_key(|b| *b == me);
        for broker in done {
            let addr = self.peers.peer_addr(broker);
            if let Err(e) = self.leadership.raft().remove_member_at(&addr).await {
                tracing::warn!(broker, "could not take a departed broker out of Raft yet: {e}");
                return;
            }
            match self.leadership.raft().propose(Command::RemoveBroker { ordinal: broker }).await {
                Ok(CommandResult::Applied(true)) => {
                    tracing::info!(broker, "the broker left the cluster: it is removable")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(broker, "could not mark a departed broker removable: {e}"),
            }
        }
    }

    async fn grow(&self, resize: Command) {
        let Command::Resize { generation, brokers } = resize else { return };
        match self.leadership.raft().propose(resize).await {
            Ok(CommandResult::Applied(true)) => {
                tracing::info!(generation = generation + 1, brokers, "the cluster grew: a new generation is open")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(brokers, "could not grow the cluster: {e}"),
        }
    }

    async fn fail_over(&self, partition: u32, current: PartitionLeader, to: u32) {
        let command = Command::SetLeader { partition, broker: to, epoch: current.epoch + 1 };
        match self.leadership.raft().propose(command).await {
            Ok(CommandResult::LeaderSet { applied: true }) => tracing::warn!(
                partition,
                from = current.broker,
                to,
                epoch = current.epoch + 1,
                "partition leader unreachable; moved leadership"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(partition, "could not move leadership: {e}"),
        }
    }

    /// Every broker's health, or `None` for those that did not answer in time.
    async fn probe(&self) -> Vec<(u32, Option<Health>)> {
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
        futures_util::future::join_all(calls).await
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

#[cfg(test)]
mod tests {
    use super::*;

    const READY: Option<Health> = Some(Health { ready: true, draining: false });
    const DRAINING: Option<Health> = Some(Health { ready: true, draining: true });

    /// Probes every `PROBE_EVERY` for `rounds`, with `answers` each round.
    async fn probe_for(observed: &mut Observations, rounds: u32, answers: &[(u32, Option<Health>)]) {
        for _ in 0..rounds {
            tokio::time::advance(PROBE_EVERY).await;
            observed.record(Instant::now(), answers.iter().copied());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_leader_loses_its_partition_to_the_first_live_ready_copy_after_dead_after() {
        let mut observed = Observations::new(Instant::now());
        probe_for(&mut observed, 2, &[(0, READY), (1, DRAINING), (2, READY)]).await;
        assert_eq!(observed.decide(7, 0, &[0, 1, 2], Some(0), Instant::now()), Decision::Nothing, "all answer");
        // Broker 0 stops answering; broker 1 drains (shutting down), so broker 2 takes over.
        let silent = DEAD_AFTER.as_millis() as u32 / PROBE_EVERY.as_millis() as u32;
        probe_for(&mut observed, silent - 1, &[(0, None), (1, DRAINING), (2, READY)]).await;
        assert_eq!(observed.decide(7, 0, &[0, 1, 2], Some(0), Instant::now()), Decision::Nothing, "not dead yet");
        probe_for(&mut observed, 1, &[(0, None), (1, DRAINING), (2, READY)]).await;
        assert_eq!(observed.decide(7, 0, &[0, 1, 2], Some(0), Instant::now()), Decision::FailOver { to: 2 });
        // With no eligible copy left, nothing moves (a write is refused rather than lost).
        probe_for(&mut observed, silent, &[(0, None), (1, DRAINING), (2, None)]).await;
        assert_eq!(observed.decide(7, 0, &[0, 1, 2], Some(0), Instant::now()), Decision::Nothing);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_controller_gives_every_broker_a_full_grace_period() {
        let mut observed = Observations::new(Instant::now());
        tokio::time::advance(DEAD_AFTER - PROBE_EVERY).await;
        observed.record(Instant::now(), [(1, READY)]);
        assert_eq!(
            observed.decide(0, 0, &[0, 1, 2], Some(0), Instant::now()),
            Decision::Nothing,
            "never heard, not yet dead"
        );
        tokio::time::advance(PROBE_EVERY).await;
        observed.record(Instant::now(), [(1, READY)]);
        assert_eq!(observed.decide(0, 0, &[0, 1, 2], Some(0), Instant::now()), Decision::FailOver { to: 1 });
    }

    #[tokio::test(start_paused = true)]
    async fn the_owner_gets_its_partition_back_once_healthy_for_back_for_and_not_asked_twice_at_once() {
        let mut observed = Observations::new(Instant::now());
        let all = [(0, READY), (1, READY), (2, READY)];
        let rounds_back = BACK_FOR.as_millis() as u32 / PROBE_EVERY.as_millis() as u32;
        // Healthy from the first probe on; BACK_FOR later it is back.
        probe_for(&mut observed, rounds_back, &all).await;
        assert_eq!(
            observed.decide(3, 1, &[0, 1, 2], Some(0), Instant::now()),
            Decision::Nothing,
            "not back long enough"
        );
        probe_for(&mut observed, 1, &all).await;
        assert_eq!(observed.decide(3, 1, &[0, 1, 2], Some(0), Instant::now()), Decision::HandBack { to: 0 });
        probe_for(&mut observed, 1, &all).await;
        assert_eq!(observed.decide(3, 1, &[0, 1, 2], Some(0), Instant::now()), Decision::Nothing, "already asked");
        assert_eq!(observed.decide(3, 0, &[0, 1, 2], Some(0), Instant::now()), Decision::Nothing, "the owner leads");
        // A draining owner is not given anything back.
        let mut draining = Observations::new(Instant::now());
        probe_for(&mut draining, rounds_back * 2, &[(0, DRAINING), (1, READY)]).await;
        assert_eq!(draining.decide(3, 1, &[0, 1, 2], Some(0), Instant::now()), Decision::Nothing);
        // A leaving owner (a shrink) gets nothing back either: its partitions are moving off it.
        assert_eq!(observed.decide(9, 1, &[0, 1, 2], None, Instant::now()), Decision::Nothing);
    }

    #[tokio::test(start_paused = true)]
    async fn a_broker_is_settled_for_a_new_ring_only_after_back_for_without_a_break() {
        let mut observed = Observations::new(Instant::now());
        let rounds_back = BACK_FOR.as_millis() as u32 / PROBE_EVERY.as_millis() as u32;
        probe_for(&mut observed, rounds_back, &[(3, READY)]).await;
        assert!(!observed.settled(3, Instant::now()), "healthy for less than BACK_FOR");
        probe_for(&mut observed, 1, &[(3, None)]).await;
        probe_for(&mut observed, rounds_back, &[(3, READY)]).await;
        assert!(!observed.settled(3, Instant::now()), "a missed probe starts the wait again");
        probe_for(&mut observed, 2, &[(3, READY)]).await;
        assert!(observed.settled(3, Instant::now()));
        assert!(!observed.settled(4, Instant::now()), "never heard of");
    }
}
