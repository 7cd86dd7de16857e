//! The consumer API's behaviour (SPEC §4): register, poll, commit, goodbye and the
//! inactivity timeout, on top of the Raft-replicated [`ClusterState`] and local storage.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::activity::Activity;
use super::assignment::{assigned_to, TopicPartition};
use super::cursors::{take_uncommitted, Cursor, Cursors, GroupCursors};
use super::peer_api::{notify_registration, positions_elsewhere, report_activity, RegistrationNotice};
use super::pending_commits::PendingCommits;
use super::poll_tokens::{self, Ack, PollTokens};
use crate::cluster::Peers;
use crate::consensus::cluster_state::{ClusterState, Command, CommandResult, Consumer, OffsetCommit, StartPolicy};
use crate::consensus::RaftNode;
use crate::error::ApiError;
use crate::memory::{Budget, Reservation};
use crate::peer::now_ms;
use crate::replication::Replication;
use crate::store::{Storage, StoredRecord};
use crate::timing::MEMORY_WAIT;

/// Where a new group's unread partitions start.
#[derive(Debug, Clone, Copy)]
enum StartAt {
    End,
    /// The first record appended at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// What a registration did.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration {
    Registered,
    AlreadyRegistered,
}

/// Records of one partition returned by a poll.
pub struct Chunk {
    pub topic: String,
    pub partition: u32,
    pub records: Vec<StoredRecord>,
}

pub enum PollOutcome {
    /// The records, the memory they and their response hold until it is sent, and the
    /// response's `Poll-Token`.
    Records(Vec<Chunk>, Reservation, String),
    /// Assigned partitions here, but nothing new in them.
    NoData,
    /// This broker leads none of the consumer's partitions.
    NothingAssignedHere,
}

/// Sizes of the consumer state on this broker.
pub struct ConsumerCounts {
    /// Consumers registered (replicated state).
    pub registered: usize,
    /// Groups with at least one member.
    pub groups: usize,
    /// Consumers whose last request this broker remembers.
    pub tracked: usize,
    /// Groups this broker keeps read cursors for.
    pub cursor_groups: usize,
    /// Groups with committed offsets (replicated state), members or not.
    pub offset_groups: usize,
}

/// The consumer settings of the broker's configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    /// Most record bytes one poll returns.
    pub poll_max_bytes: usize,
    /// A consumer idle this long is unregistered.
    pub timeout: Duration,
    /// How long a group without members and commits keeps its offsets; `None` is forever.
    pub group_retention: Option<Duration>,
    /// Longest wait a poll may ask for.
    pub poll_wait_max: Duration,
}

pub struct ConsumerService {
    raft: RaftNode,
    storage: Storage,
    replication: Arc<Replication>,
    peers: Peers,
    settings: ConsumerSettings,
    /// What polls hold while they read and answer.
    reads: Budget,
    cursors: Cursors,
    activity: Activity,
    pending: PendingCommits,
    tokens: PollTokens,
    /// Rotates which partition a poll reads first, so one busy partition cannot starve the rest.
    poll_turn: AtomicUsize,
}

impl ConsumerService {
    pub fn new(
        raft: RaftNode,
        storage: Storage,
        replication: Arc<Replication>,
        peers: Peers,
        settings: ConsumerSettings,
        reads: Budget,
    ) -> Self {
        ConsumerService {
            raft,
            storage,
            replication,
            peers,
            settings,
            reads,
            cursors: Cursors::default(),
            activity: Activity::default(),
            pending: PendingCommits::default(),
            tokens: PollTokens::default(),
            poll_turn: AtomicUsize::new(0),
        }
    }

    /// Registers `consumer`. The answer comes once the registration is applied here and on
    /// every broker that answers within a few seconds (SPEC §4: it then holds on every
    /// broker), so no broker still deals the group's partitions to the members it had before:
    /// a poll right after a join never gets records another member is about to read too.
    ///
    /// A broker that does not answer in time (down, or cut off) is left out: it catches up by
    /// itself, and until then it may deal partitions by the older membership, so a few records
    /// may come twice; none go missing. A broker that missed a new group's start reads that
    /// group's partitions from the earliest offset instead.
    pub async fn register(&self, consumer: Consumer) -> Result<Registration, ApiError> {
        let id = consumer.id.clone();
        let (group, topics, policy) = (consumer.group.clone(), consumer.topics.clone(), consumer.policy);
        let registration = match self.raft.propose(Command::Register(consumer)).await? {
            CommandResult::Registered { .. } => Registration::Registered,
            CommandResult::AlreadyRegistered => Registration::AlreadyRegistered,
            CommandResult::Conflict => return Err(ApiError::ConsumerConflict(id)),
            other => return Err(ApiError::Internal(format!("unexpected registration result {other:?}"))),
        };
        self.activity.touch(&id);
        if registration == Registration::Registered {
            tracing::info!(consumer = %id, %group, ?topics, "consumer registered");
        }
        // A new group's start is set once, by the registration that created the consumer.
        let created = registration == Registration::Registered;
        let start_latest = created && policy == StartPolicy::Latest;
        let start_timestamp = match policy {
            StartPolicy::Timestamp(ms) if created => Some(ms),
            _ => None,
        };
        let notice = RegistrationNotice { group, topics, start_latest, start_timestamp };
        self.apply_registration(&notice).await?;
        notify_registration(&self.peers, &notice).await;
        Ok(registration)
    }

    /// Applies everything Raft committed so far (the registration included), so this broker
    /// deals the group's partitions by the new membership; for a new `startFromLatest` or
    /// `startFromTimestamp` group, also sets the start of the partitions it leads. Run by the
    /// registering broker and, for its notice, by every other one.
    pub async fn apply_registration(&self, notice: &RegistrationNotice) -> Result<(), ApiError> {
        self.raft.catch_up_with_leader().await?;
        let start = match notice.start_timestamp {
            Some(ms) => Some(StartAt::Timestamp(ms)),
            None => notice.start_latest.then_some(StartAt::End),
        };
        if let Some(start) = start {
            self.start_unread_partitions(&notice.group, &notice.topics, start).await?;
        }
        Ok(())
    }

    /// `startFromLatest` and `startFromTimestamp` are resolved when the consumer registers,
    /// not when it first polls, so records produced between the two are delivered; each
    /// partition's leader resolves its own, from its log. Only partitions the group has never
    /// read are moved; a returning group keeps its committed offsets. A partition with no
    /// records yet is left alone: the group reads it from its first record either way.
    async fn start_unread_partitions(&self, group: &str, topics: &[String], at: StartAt) -> Result<(), ApiError> {
        let cursors = self.cursors.group(group);
        let cursors = cursors.lock().await;
        let local: Vec<u32> = self.local_partitions().collect();
        let unread: Vec<(String, u32, u64)> = self.raft.read(|state| {
            topics
                .iter()
                .flat_map(|topic| local.iter().map(move |p| (topic, *p, state.reset_count(group, topic, *p))))
                .filter(|(topic, p, _)| state.committed(group, topic, *p).is_none())
                .filter(|(topic, p, reset)| self.pending.get(group, topic, *p, *reset).is_none())
                .filter(|(topic, p, _)| {
                    !cursors.contains_key(&TopicPartition { topic: topic.to_string(), partition: *p })
                })
                .filter(|(topic, p, _)| self.storage.end(topic, *p) > 0)
                .map(|(topic, p, reset)| (topic.clone(), p, reset))
                .collect()
        });
        let mut offsets = Vec::with_capacity(unread.len());
        for (topic, partition, reset) in unread {
            let offset = match at {
                StartAt::End => self.storage.end(&topic, partition),
                StartAt::Timestamp(ms) => self.storage.offset_for_timestamp(&topic, partition, ms).await?,
            };
            offsets.push(OffsetCommit { group: group.into(), topic, partition, offset, reset });
        }
        if !offsets.is_empty() {
            self.raft.propose(Command::Commit(offsets)).await?;
        }
        Ok(())
    }

    /// Requests that another broker saw, reported so the Raft leader can time consumers out.
    pub fn note_activity(&self, consumers: &[String]) {
        consumers.iter().for_each(|id| self.activity.seen(id));
    }

    /// Sends the consumers seen here to the Raft leader, which alone decides timeouts.
    async fn report_activity(&self) {
        let consumers = self.activity.take_unreported();
        if consumers.is_empty() || self.raft.is_leader() {
            return;
        }
        let Some(leader) = self.raft.leader_addr() else { return };
        report_activity(&self.peers, &leader, consumers).await;
    }

    /// Partitions this broker leads and serves.
    fn local_partitions(&self) -> impl Iterator<Item = u32> {
        self.replication.leadership().served().into_iter().map(|(p, _)| p)
    }

    /// What `consumer_id` registered with, without its partitions (an access check needs no
    /// assignment).
    pub async fn registration(&self, consumer_id: &str) -> Result<Consumer, ApiError> {
        self.look_up(consumer_id, |_, consumer| consumer.clone()).await
    }

    /// The consumer and its partitions.
    async fn registered(&self, consumer_id: &str) -> Result<(Consumer, Vec<TopicPartition>), ApiError> {
        self.look_up(consumer_id, |state, consumer| (consumer.clone(), assigned_to(state, consumer_id))).await
    }

    /// `read` of the registered consumer. A consumer unknown here may have registered through
    /// another broker a moment ago: it is looked up again after catching up with Raft.
    async fn look_up<T>(&self, consumer_id: &str, read: impl Fn(&ClusterState, &Consumer) -> T) -> Result<T, ApiError> {
        let lookup = || self.raft.read(|state| state.consumers.get(consumer_id).map(|consumer| read(state, consumer)));
        if let Some(found) = lookup() {
            return Ok(found);
        }
        self.raft.catch_up_with_leader().await?;
        lookup().ok_or_else(|| ApiError::ConsumerNotRegistered(consumer_id.to_string()))
    }

    /// A poll that, finding nothing to read (or no partition of the consumer's served here),
    /// waits up to `wait` for records to become readable in a partition this broker serves for
    /// the consumer, and then reads them. While it waits it holds no memory and no lock; it reads
    /// again at once when the group's membership, its offsets or this broker's partitions change
    /// (what it may read moved), answers at once when the broker starts shutting down, and the
    /// consumer counts as active when it answers. `ack` is the `Poll-Token` of the last
    /// response the consumer processed (see [`PollTokens`]); without one, the poll commits what
    /// the previous poll here returned (v1).
    pub async fn poll(&self, consumer_id: &str, wait: Duration, ack: Option<&str>) -> Result<PollOutcome, ApiError> {
        if wait > self.settings.poll_wait_max {
            return Err(ApiError::WaitTooLong { max_ms: self.settings.poll_wait_max.as_millis() as u64 });
        }
        let deadline = tokio::time::Instant::now() + wait;
        // What decides what this poll may read here: the group's members (a rebalance), resets
        // of its offsets (backwards, say), and the partitions this broker serves (a takeover).
        // A change of any of them reads again at once.
        // Partitions moving away come with a Raft change (a leader's epoch); partitions this
        // broker starts serving bump its serving version (and notify readers).
        let shape = |s: &ClusterState| {
            let leaders: u64 = s.leaders.values().map(|l| l.epoch).sum();
            (s.membership_version, leaders, s.consumers.get(consumer_id).map(|c| s.group_resets(&c.group)))
        };
        let serving = || self.replication.leadership().serving_version();
        let mut changes = self.raft.changes();
        loop {
            let readable = self.replication.readable().notified();
            tokio::pin!(readable);
            readable.as_mut().enable();
            let seen = (self.raft.read(shape), serving());
            let outcome = self.poll_once(consumer_id, ack).await?;
            let nothing_here = matches!(outcome, PollOutcome::NothingAssignedHere);
            let waits = nothing_here || matches!(outcome, PollOutcome::NoData);
            if !waits || tokio::time::Instant::now() >= deadline {
                return Ok(outcome);
            }
            loop {
                tokio::select! {
                    _ = &mut readable => {
                        // Records of partitions that are not the consumer's change nothing for
                        // a poll with none here; a partition served anew may.
                        if !nothing_here || serving() != seen.1 {
                            break;
                        }
                        readable.set(self.replication.readable().notified());
                        readable.as_mut().enable();
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = self.replication.drain_started() => return Ok(outcome),
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return Ok(outcome);
                        }
                        if (self.raft.read(shape), serving()) != seen {
                            break;
                        }
                    }
                }
            }
            self.activity.touch(consumer_id);
        }
    }

    async fn poll_once(&self, consumer_id: &str, ack: Option<&str>) -> Result<PollOutcome, ApiError> {
        let (consumer, assigned) = self.registered(consumer_id).await?;
        self.activity.touch(consumer_id);
        let group_cursors = self.cursors.group(&consumer.group);
        let mut cursors = group_cursors.lock().await;
        let (ack, acknowledged) = self.tokens.judge(consumer_id, ack)?;
        let mut turn = None;
        match ack {
            Ack::Last => {}
            Ack::Repeat { starts, turn: repeated } => {
                for (tp, start) in starts {
                    if let Some(cursor) = cursors.get_mut(&tp).filter(|c| c.owner == consumer_id) {
                        cursor.next = cursor.next.min(start);
                    }
                }
                turn = Some(repeated);
            }
            // Positions this consumer's cursors hold here may be past what it processed.
            Ack::Unknown => cursors.retain(|_, c| c.owner != consumer_id),
        }
        for reached in take_uncommitted(&mut cursors, consumer_id, &[]) {
            self.pending.add(&consumer.group, &reached.tp.topic, reached.tp.partition, reached.offset, reached.reset);
        }
        let leadership = self.replication.leadership();
        let mut local: Vec<(TopicPartition, u64)> = assigned
            .into_iter()
            .filter_map(|tp| leadership.serving_epoch(tp.partition).map(|epoch| (tp, epoch)))
            .collect();
        if local.is_empty() {
            return Ok(PollOutcome::NothingAssignedHere);
        }
        let turn = turn.unwrap_or_else(|| self.poll_turn.fetch_add(1, Ordering::Relaxed)) % local.len();
        local.rotate_left(turn);
        // The records read and the response they become, reserved at the first read: a poll
        // with nothing to read takes nothing.
        let mut held: Option<Reservation> = None;

        let mut budget = self.settings.poll_max_bytes;
        let mut chunks = Vec::new();
        // Cursors move only once the response is complete (no await after that): a poll cut
        // off half way (its client went away) leaves them where the last response left them.
        let mut reached_all = Vec::new();
        for (tp, epoch) in local {
            if budget == 0 {
                break;
            }
            // Only what a majority of the partition's copies hold is delivered. Where that is
            // nothing (a topic this broker does not hold among them: a registration may name
            // topics that do not exist yet), the partition gets no cursor either.
            let readable = self.replication.readable_end(&tp.topic, tp.partition);
            if readable == 0 {
                continue;
            }
            let next = self.cursor_position(&mut cursors, &consumer, &tp, epoch);
            if next >= readable {
                continue;
            }
            if held.is_none() {
                held = Some(self.reads.reserve(2 * self.settings.poll_max_bytes, MEMORY_WAIT).await?);
            }
            let mut read = self.storage.read(&tp.topic, tp.partition, next, budget).await?;
            read.records.retain(|r| r.offset < readable);
            let reached = read.records.last().map_or(next.max(read.next_offset.min(readable)), |r| r.offset + 1);
            reached_all.push((tp.clone(), reached));
            if read.records.is_empty() {
                continue;
            }
            let bytes: usize = read.records.iter().map(|r| r.value.len()).sum();
            budget = budget.saturating_sub(bytes);
            chunks.push(Chunk { topic: tp.topic, partition: tp.partition, records: read.records });
        }
        for (tp, reached) in reached_all {
            if let Some(cursor) = cursors.get_mut(&tp) {
                cursor.next = cursor.next.max(reached);
            }
        }
        match held {
            Some(mut held) if !chunks.is_empty() => {
                held.shrink_to(2 * (self.settings.poll_max_bytes - budget));
                let starts = chunks
                    .iter()
                    .map(|c| {
                        let tp = TopicPartition { topic: c.topic.clone(), partition: c.partition };
                        (tp, c.records.first().map_or(0, |r| r.offset))
                    })
                    .collect();
                let token = self.tokens.issue(consumer_id, acknowledged, starts, turn);
                Ok(PollOutcome::Records(chunks, held, token))
            }
            _ => Ok(PollOutcome::NoData),
        }
    }

    /// Where `consumer` reads `tp` next: its own cursor, or, when it takes the partition over
    /// or the partition's offset was reset since its cursor started, the group's committed
    /// offset (earliest retained when the group never committed one).
    fn cursor_position(&self, cursors: &mut GroupCursors, consumer: &Consumer, tp: &TopicPartition, epoch: u64) -> u64 {
        let (committed, reset) = self.raft.read(|s: &ClusterState| {
            (
                s.committed(&consumer.group, &tp.topic, tp.partition),
                s.reset_count(&consumer.group, &tp.topic, tp.partition),
            )
        });
        if let Some(cursor) = cursors.get(tp).filter(|c| c.owner == consumer.id && c.epoch == epoch && c.reset == reset)
        {
            return cursor.next;
        }
        let pending = self.pending.get(&consumer.group, &tp.topic, tp.partition, reset);
        let start = committed
            .max(pending)
            .unwrap_or_else(|| self.storage.bounds(&tp.topic, tp.partition).map(|(start, _)| start).unwrap_or(0));
        match cursors.get(tp) {
            Some(previous) if previous.reset != reset => {
                tracing::info!(group = %consumer.group, topic = %tp.topic, partition = tp.partition,
                    from = previous.next, to = start, "cursor moved to the reset offset");
            }
            Some(previous) => {
                tracing::info!(group = %consumer.group, topic = %tp.topic, partition = tp.partition,
                    from = %previous.owner, to = %consumer.id, offset = start, "partition handed over");
            }
            None => {}
        }
        let cursor = Cursor { owner: consumer.id.clone(), next: start, committed: start, epoch, reset };
        cursors.insert(tp.clone(), cursor);
        start
    }

    /// Commits the positions this consumer reached (with `acks`, only what the responses they
    /// name reached), and waits for the Raft commit.
    pub async fn commit(&self, consumer_id: &str, acks: &[String]) -> Result<(), ApiError> {
        poll_tokens::check(acks)?;
        let (consumer, _) = self.registered(consumer_id).await?;
        self.activity.touch(consumer_id);
        let offsets = self.cluster_positions(&consumer, acks).await;
        if !offsets.is_empty() {
            self.raft.propose(Command::Commit(offsets)).await?;
        }
        Ok(())
    }

    /// Positions the consumer named reached on this broker since they were last committed
    /// (none for a consumer unknown here).
    pub async fn positions_here(&self, consumer_id: &str, acks: &[String]) -> Vec<OffsetCommit> {
        match self.raft.read(|s| s.consumers.get(consumer_id).cloned()) {
            Some(consumer) => self.local_positions(&consumer, acks).await,
            None => Vec::new(),
        }
    }

    /// Positions this consumer reached on this broker since they were last committed.
    async fn local_positions(&self, consumer: &Consumer, acks: &[String]) -> Vec<OffsetCommit> {
        let group_cursors = self.cursors.group(&consumer.group);
        let mut cursors = group_cursors.lock().await;
        let caps = self.tokens.caps(&consumer.id, acks).unwrap_or_default();
        take_uncommitted(&mut cursors, &consumer.id, &caps)
            .into_iter()
            .map(|reached| OffsetCommit {
                group: consumer.group.clone(),
                topic: reached.tp.topic,
                partition: reached.tp.partition,
                offset: reached.offset,
                reset: reached.reset,
            })
            .collect()
    }

    /// The consumer's positions on every broker (each serves other partitions), so a commit
    /// or goodbye on any broker covers everything it read. A broker that does not answer
    /// keeps its positions uncommitted: those records may come again, none are skipped.
    async fn cluster_positions(&self, consumer: &Consumer, acks: &[String]) -> Vec<OffsetCommit> {
        let elsewhere = positions_elsewhere(&self.peers, &consumer.id, acks).await;
        let mut offsets = self.local_positions(consumer, acks).await;
        offsets.extend(elsewhere);
        offsets
    }

    /// Commits (unless `commit` is false; with `acks` as [`ConsumerService::commit`]) and unregisters.
    pub async fn goodbye(&self, consumer_id: &str, commit: bool, acks: &[String]) -> Result<(), ApiError> {
        poll_tokens::check(acks)?;
        let (consumer, _) = self.registered(consumer_id).await?;
        let offsets = if commit { self.cluster_positions(&consumer, acks).await } else { Vec::new() };
        let result = self.raft.propose(Command::Goodbye { consumer_id: consumer_id.to_string(), offsets }).await?;
        self.activity.forget(consumer_id);
        match result {
            CommandResult::GoodbyeDone { found: true } => {
                tracing::info!(consumer = %consumer_id, group = %consumer.group, commit, "consumer said goodbye");
                Ok(())
            }
            _ => Err(ApiError::ConsumerNotRegistered(consumer_id.to_string())),
        }
    }

    /// Writes the auto-commits gathered since the last flush as one Raft entry.
    pub async fn flush_auto_commits(&self) {
        let batch = self.pending.take();
        if batch.is_empty() {
            return;
        }
        let count = batch.len();
        if let Err(e) = self.raft.propose(Command::Commit(batch.clone())).await {
            tracing::warn!(offsets = count, "auto-commit failed, will retry: {e}");
            self.pending.restore(batch);
        }
    }

    /// Forgets consumers and groups the replicated state no longer has (on every broker, so a
    /// follower's memory does not grow with every consumer it ever saw), and unregisters
    /// consumers idle past the timeout (the Raft leader decides, so it happens once).
    pub async fn expire_idle(&self) {
        let expired =
            self.raft.read(|s| self.activity.expired(s.consumers.keys().map(String::as_str), self.settings.timeout));
        self.cursors.retain_groups(|group| self.raft.read(|s| s.consumers.values().any(|c| c.group == group)));
        self.tokens.retain(|consumer| self.raft.read(|s| s.consumers.contains_key(consumer)));
        if self.raft.is_leader() && !expired.is_empty() {
            match self.raft.propose(Command::Expire { consumer_ids: expired }).await {
                Ok(CommandResult::Expired { removed }) if !removed.is_empty() => {
                    tracing::info!(consumers = ?removed, "consumers timed out and were unregistered")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("could not expire idle consumers: {e}"),
            }
        }
    }

    /// Removes the offsets of groups with no member and no commit for the group retention.
    /// The Raft leader proposes the sweep with its clock and retention, so every broker
    /// removes the same groups at the same log entry whatever its own clock or settings.
    pub async fn expire_groups(&self) {
        let Some(retention) = self.settings.group_retention else { return };
        if !self.raft.is_leader() {
            return;
        }
        let (now_ms, retention_ms) = (now_ms(), u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        if !self.raft.read(|s| s.groups_to_sweep(now_ms, retention_ms)) {
            return;
        }
        match self.raft.propose(Command::SweepGroups { now_ms, retention_ms }).await {
            Ok(CommandResult::GroupsSwept { removed, .. }) if !removed.is_empty() => {
                tracing::info!(groups = ?removed, ?retention, "removed the offsets of groups idle past the group retention")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not sweep idle groups: {e}"),
        }
    }

    /// What the consumer state holds here, for metrics.
    pub fn counts(&self) -> ConsumerCounts {
        let (registered, groups, offset_groups) = self.raft.read(|s| {
            let groups: std::collections::BTreeSet<&str> = s.consumers.values().map(|c| c.group.as_str()).collect();
            (s.consumers.len(), groups.len(), s.offsets.len())
        });
        ConsumerCounts {
            registered,
            groups,
            tracked: self.activity.len(),
            cursor_groups: self.cursors.len(),
            offset_groups,
        }
    }

    /// Runs auto-commit flushes and the inactivity sweep until `stop` fires, then flushes once more.
    pub async fn run_background(
        self: Arc<Self>,
        auto_commit_every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let sweep_every = (self.settings.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut flush = tokio::time::interval(auto_commit_every);
        let mut sweep = tokio::time::interval(sweep_every);
        let mut report = tokio::time::interval(sweep_every);
        loop {
            tokio::select! {
                _ = flush.tick() => self.flush_auto_commits().await,
                _ = sweep.tick() => {
                    self.expire_idle().await;
                    self.expire_groups().await;
                }
                _ = report.tick() => self.report_activity().await,
                _ = stop.changed() => break,
            }
        }
        self.flush_auto_commits().await;
    }
}
