//! This broker's view of partition leadership: who leads each partition (the Raft state),
//! which partitions this broker serves (it leads them and finished taking them over), which
//! it is handing to another broker, and the oldest leader epoch it still takes copies from.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::copy_protocol::FollowerView;
use crate::consensus::cluster_state::PartitionLeader;
use crate::consensus::{RaftChanges, RaftNode};
use crate::partitioning::Layout;

pub struct Leadership {
    raft: RaftNode,
    me: u32,
    /// Partitions this broker finished taking over, with the epoch it took them in.
    serving: Mutex<HashMap<u32, u64>>,
    /// Bumped whenever this broker starts serving a partition (see [`Leadership::serving_version`]).
    serving_version: std::sync::atomic::AtomicU64,
    writes: Mutex<Writes>,
    /// Highest epoch a new leader announced here before this broker applied it from Raft.
    fences: Mutex<HashMap<u32, u64>>,
}

/// Local writes per partition, and the partitions being handed over (no new writes): one lock,
/// so a hand-over that saw no write in flight cannot miss one that is just starting.
#[derive(Default)]
struct Writes {
    in_flight: HashMap<u32, usize>,
    handing_off: HashSet<u32>,
}

/// Permission to write to a partition this broker serves, held while the local write runs.
pub struct WritePermit<'a> {
    leadership: &'a Leadership,
    partition: u32,
    pub epoch: u64,
}

impl Drop for WritePermit<'_> {
    fn drop(&mut self) {
        let mut writes = lock(&self.leadership.writes);
        if let Some(count) = writes.in_flight.get_mut(&self.partition) {
            *count = count.saturating_sub(1);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Leadership {
    pub fn new(raft: RaftNode, me: u32) -> Leadership {
        Leadership {
            raft,
            me,
            serving: Mutex::default(),
            serving_version: Default::default(),
            writes: Mutex::default(),
            fences: Mutex::default(),
        }
    }

    pub fn me(&self) -> u32 {
        self.me
    }

    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// The partition's leader as this broker last applied it.
    pub fn current(&self, partition: u32) -> PartitionLeader {
        self.raft.read(|s| s.leader(partition))
    }

    /// Reads the ring generations as this broker last applied them, in place (on the produce
    /// and poll paths: no copy per request).
    pub fn layout<R>(&self, read: impl FnOnce(&Layout) -> R) -> R {
        self.raft.read(|s| read(&s.layout))
    }

    pub fn replicas(&self, partition: u32) -> Vec<u32> {
        self.raft.read(|s| s.replicas(partition))
    }

    /// The other copies of a partition this broker leads.
    pub fn others(&self, partition: u32) -> Vec<u32> {
        self.replicas(partition).into_iter().filter(|b| *b != self.me).collect()
    }

    /// This broker leads `partition` as `current` says, took it over, and is not handing it off.
    fn serves(&self, partition: u32, current: PartitionLeader, writes: &Writes) -> bool {
        current.broker == self.me
            && lock(&self.serving).get(&partition) == Some(&current.epoch)
            && !writes.handing_off.contains(&partition)
    }

    /// The epoch in which this broker may write to and serve `partition`, if it may.
    pub fn serving_epoch(&self, partition: u32) -> Option<u64> {
        let current = self.current(partition);
        self.serves(partition, current, &lock(&self.writes)).then_some(current.epoch)
    }

    /// Permission for one local write, if this broker serves `partition` and it is of the
    /// current generation (an older one's partitions are sealed, or about to be).
    pub fn write_permit(&self, partition: u32) -> Option<WritePermit<'_>> {
        let (current, writable) = self.raft.read(|s| (s.leader(partition), s.layout.is_current(partition)));
        let mut writes = lock(&self.writes);
        if !writable || !self.serves(partition, current, &writes) {
            return None;
        }
        *writes.in_flight.entry(partition).or_insert(0) += 1;
        Some(WritePermit { leadership: self, partition, epoch: current.epoch })
    }

    /// Local writes to `partition` still running.
    pub fn writes_in_flight(&self, partition: u32) -> usize {
        lock(&self.writes).in_flight.get(&partition).copied().unwrap_or(0)
    }

    /// This broker still leads `partition` in `epoch` (also while handing it off).
    pub fn leads(&self, partition: u32, epoch: u64) -> bool {
        self.current(partition) == PartitionLeader { broker: self.me, epoch }
    }

    /// Partitions Raft says this broker leads, each with its epoch, and whether it serves them.
    pub fn led(&self) -> Vec<(u32, u64, bool)> {
        let leaders: Vec<(u32, PartitionLeader)> =
            self.raft.read(|s| s.layout.all_partitions().map(|p| (p, s.leader(p))).collect());
        let serving = lock(&self.serving);
        leaders
            .into_iter()
            .filter(|(_, l)| l.broker == self.me)
            .map(|(p, l)| (p, l.epoch, serving.get(&p) == Some(&l.epoch)))
            .collect()
    }

    /// Changes with every change of Raft's state (an applied entry among them), so a task can
    /// wait for a leadership change instead of polling for one.
    pub fn changes(&self) -> RaftChanges {
        self.raft.changes()
    }

    /// The partitions (of every generation) this broker leads and serves, with their epochs.
    pub fn served(&self) -> Vec<(u32, u64)> {
        self.layout(Layout::all_partitions).filter_map(|p| self.serving_epoch(p).map(|epoch| (p, epoch))).collect()
    }

    /// Resolves once the applied Raft state names a leader of `partition` other than `leader`
    /// (never, once Raft stopped), so a request waiting on a cut-off leader can go to the next.
    pub async fn moved_from(&self, partition: u32, leader: u32) {
        let mut changes = self.changes();
        while self.current(partition).broker == leader {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Changes each time this broker starts serving a partition: what a reader waiting for
    /// records here may read changed (stopping, the other way, comes with a Raft change).
    pub fn serving_version(&self) -> u64 {
        self.serving_version.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn mark_serving(&self, partition: u32, epoch: u64) {
        lock(&self.serving).insert(partition, epoch);
        self.serving_version.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Stops new writes to `partition`; false if a hand-off is already running.
    pub fn begin_hand_off(&self, partition: u32) -> bool {
        lock(&self.writes).handing_off.insert(partition)
    }

    pub fn end_hand_off(&self, partition: u32) {
        lock(&self.writes).handing_off.remove(&partition);
    }

    /// A new leader of `partition` in `epoch` announced itself: copies from older epochs are
    /// refused from now on. False if this broker already knows a later epoch (or is not current).
    pub fn fence(&self, partition: u32, epoch: u64) -> bool {
        let mut fences = lock(&self.fences);
        if !self.view_with(partition, &fences).may_fence(epoch) {
            return false;
        }
        fences.insert(partition, epoch);
        true
    }

    /// What this broker knows of `partition`'s leadership, to judge a leader's request.
    pub fn view(&self, partition: u32) -> FollowerView {
        self.view_with(partition, &lock(&self.fences))
    }

    fn view_with(&self, partition: u32, fences: &HashMap<u32, u64>) -> FollowerView {
        FollowerView {
            current: self.current(partition),
            fenced: fences.get(&partition).copied().unwrap_or(0),
            me: self.me,
            caught_up: self.raft.has_caught_up(),
        }
    }
}
