//! The replication protocol's decisions, over [`CopyLog`]s and the two conversations a copy
//! has with another (a leader with a follower: [`FollowerLink`]; a new leader with the copy it
//! takes records from: [`CopySource`]). The broker runs them over HTTP; the tests below run the
//! same functions over in-memory logs.
//!
//! - Agreement (Kafka's leader-epoch rule): a follower whose newest record is of epoch `e`
//!   keeps its log up to where epoch `e` ends in the leader's history, and drops the rest.
//! - Fencing: a copy refuses records and cuts from any leader older than the newest epoch it
//!   knows (applied from Raft, or announced by a new leader's fence).
//! - Takeover: a new leader takes the most advanced fenced copy (highest last epoch, then
//!   longest) as its source, cuts where they part and copies the rest.

use std::future::Future;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::copy_log::{CopyLog, CopyState};
use crate::consensus::cluster_state::PartitionLeader;
use crate::store::{EpochStart, StorageError, TimeRun};

/// Most record bytes one replication or catch-up request carries.
pub const SEND_BYTES: usize = 1024 * 1024;
/// Most append-time runs one request carries: they travel in a header, which the peer port
/// reads within its head buffer. Plain runs fit at their longest (a test checks it); runs
/// with key tokens or stamps are held to `MAX_RUNS_TEXT` by `Runs`. Records of more runs go in
/// the next request.
pub const MAX_TIME_RUNS: usize = 512;

/// Where a follower's copy stands against the leader's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// The follower's copy is a prefix of the leader's, ending here.
    InStep(u64),
    /// The follower holds records the leader lacks from here on: they must go.
    Cut(u64),
}

/// The leader-epoch rule. `tail_end` is where the leader's accepted (possibly not yet
/// fsync'd) records of `leader_epoch` end: they may have reached the follower first.
pub fn agreement(
    leader: &impl CopyLog,
    leader_epoch: u64,
    tail_end: Option<u64>,
    follower: CopyState,
) -> Result<Agreement, String> {
    if follower.last_epoch > leader_epoch {
        return Err(format!("the copy has records of epoch {}, newer than {leader_epoch}", follower.last_epoch));
    }
    let mut agreed = leader.end_of_epoch(follower.last_epoch);
    if follower.last_epoch == leader_epoch {
        agreed = agreed.max(tail_end.unwrap_or(0));
    }
    Ok(if agreed >= follower.end { Agreement::InStep(follower.end) } else { Agreement::Cut(agreed) })
}

/// Why a follower did not store a copy.
#[derive(Debug)]
pub enum SendError {
    /// The follower's copy ends elsewhere (its state says where).
    Mismatch,
    /// The follower knows a later leader epoch: this broker no longer leads.
    Fenced,
    Unreachable(String),
}

/// The leader's side of its conversation with one follower.
pub trait FollowerLink: Send + Sync {
    fn state(&self) -> impl Future<Output = Result<CopyState, String>> + Send;
    /// Has the follower drop its records from `to` on, on behalf of the leader of `epoch`.
    fn truncate(&self, to: u64, epoch: u64) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends `records`, appended at `times`, to be stored at `base` by the leader of `epoch`;
    /// answers the follower's new end.
    fn replicate(
        &self,
        base: u64,
        epoch: u64,
        epochs: &[EpochStart],
        records: &[Bytes],
        times: &[TimeRun],
    ) -> impl Future<Output = Result<u64, SendError>> + Send;
}

/// Finds where the follower's copy agrees with the leader's log, cutting the follower back as
/// often as needed; answers the follower's end, from which the leader sends.
pub async fn agree_on_end(
    leader: &impl CopyLog,
    epoch: u64,
    tail_end: impl Fn() -> Option<u64>,
    follower: &impl FollowerLink,
) -> Result<u64, String> {
    loop {
        let state = follower.state().await?;
        match agreement(leader, epoch, tail_end(), state)? {
            Agreement::InStep(end) => return Ok(end),
            Agreement::Cut(to) => {
                tracing::info!(from = to, to = state.end, "replica has a tail this leader lacks; cutting it");
                follower.truncate(to, epoch).await?;
            }
        }
    }
}

/// What a copy knows about its partition's leadership, to judge a request from a leader.
#[derive(Debug, Clone, Copy)]
pub struct FollowerView {
    /// The leader as this broker applied it from Raft.
    pub current: PartitionLeader,
    /// The newest epoch a new leader announced here (fence), 0 if none.
    pub fenced: u64,
    /// This broker's ordinal.
    pub me: u32,
    /// This broker's Raft state is current (else its idea of `current` may be old).
    pub caught_up: bool,
}

impl FollowerView {
    /// Whether records or a cut from the leader of `epoch` may be applied here.
    pub fn accepts_copy(&self, epoch: u64) -> bool {
        let i_lead_it = self.current.broker == self.me && self.current.epoch >= epoch;
        self.caught_up && epoch >= self.current.epoch.max(self.fenced) && !i_lead_it
    }

    /// Whether a new leader of `epoch` may fence this copy (not if a later epoch is known).
    pub fn may_fence(&self, epoch: u64) -> bool {
        self.caught_up && epoch >= self.current.epoch.max(self.fenced)
    }
}

/// Why a copy refused a leader's request.
#[derive(Debug)]
pub enum CopyRefusal {
    /// The leader is older than one this copy knows: it must step back.
    Stale(CopyState),
    /// The copy does not end where the leader assumed.
    Mismatch(CopyState),
    Storage(StorageError),
}

/// The follower's side of a replication request.
pub async fn store_copy(
    log: &impl CopyLog,
    view: FollowerView,
    (base, epoch): (u64, u64),
    epochs: Vec<EpochStart>,
    (records, times): (Vec<Bytes>, Vec<TimeRun>),
) -> Result<CopyState, CopyRefusal> {
    if !view.accepts_copy(epoch) {
        return Err(CopyRefusal::Stale(log.state()));
    }
    match log.append_at(base, records, epochs, times).await {
        Ok(()) => Ok(log.state()),
        Err(StorageError::OffsetMismatch { .. }) => Err(CopyRefusal::Mismatch(log.state())),
        Err(e) => Err(CopyRefusal::Storage(e)),
    }
}

/// The follower's side of a cut asked for by the leader of `epoch`.
pub async fn cut_copy(log: &impl CopyLog, view: FollowerView, to: u64, epoch: u64) -> Result<CopyState, CopyRefusal> {
    if !view.accepts_copy(epoch) {
        return Err(CopyRefusal::Stale(log.state()));
    }
    log.truncate(to).await.map_err(CopyRefusal::Storage)?;
    Ok(log.state())
}

/// Where records of an epoch end in a copy, and where the copy ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEnd {
    pub epoch_end: u64,
    pub end: u64,
}

/// Records read from a copy to be stored in another: their values, epoch labels and append times.
#[derive(Debug, Clone, Default)]
pub struct Copied {
    pub records: Vec<Bytes>,
    pub epochs: Vec<EpochStart>,
    pub times: Vec<TimeRun>,
}

/// What a new leader asks of the copy it takes records from.
pub trait CopySource: Send + Sync {
    fn epoch_end(&self, epoch: u64) -> impl Future<Output = Result<EpochEnd, String>> + Send;
    /// Records from `from` on (at most [`SEND_BYTES`]), with their epoch labels and append times.
    fn read_from(&self, from: u64) -> impl Future<Output = Result<Copied, String>> + Send;
}

impl<T: CopyLog> CopySource for T {
    async fn epoch_end(&self, epoch: u64) -> Result<EpochEnd, String> {
        Ok(EpochEnd { epoch_end: self.end_of_epoch(epoch), end: self.end() })
    }

    async fn read_from(&self, from: u64) -> Result<Copied, String> {
        let (records, times) = self.read(from, SEND_BYTES).await.map_err(|e| e.to_string())?;
        let epochs = self.epochs_covering(from, from + records.len() as u64);
        Ok(Copied { records, epochs, times })
    }
}

/// The copy a new leader takes what it lacks from: the most advanced of the fenced copies
/// (highest last epoch, then longest), if it is ahead of this one.
pub fn best_source(mine: CopyState, fenced: impl IntoIterator<Item = (u32, CopyState)>) -> Option<(u32, CopyState)> {
    fenced
        .into_iter()
        .max_by_key(|(_, state)| (state.last_epoch, state.end))
        .filter(|(_, state)| (state.last_epoch, state.end) > (mine.last_epoch, mine.end))
}

/// Makes `mine` equal to `source`'s copy: cuts where the two part (the leader-epoch rule, with
/// `source` as the leader), then appends what `source` has beyond.
pub async fn catch_up_from(mine: &impl CopyLog, source: &impl CopySource) -> Result<(), String> {
    loop {
        let end = mine.end();
        let theirs = source.epoch_end(mine.last_epoch()).await?;
        if theirs.epoch_end < end {
            mine.truncate(theirs.epoch_end).await.map_err(|e| e.to_string())?;
            continue;
        }
        if end >= theirs.end {
            return Ok(());
        }
        let Copied { records, epochs, times } = source.read_from(end).await?;
        if records.is_empty() {
            return Err(format!("the source no longer has records from offset {end}"));
        }
        mine.append_at(end, records, epochs, times).await.map_err(|e| e.to_string())?;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::replication::copy_log::MemoryLog;

    /// A follower held in memory, answering the leader through the same follower-side
    /// functions as the peer routes do.
    struct MemoryFollower {
        log: MemoryLog,
        view: Mutex<FollowerView>,
    }

    impl MemoryFollower {
        fn new(log: MemoryLog, leader: PartitionLeader) -> MemoryFollower {
            let view = FollowerView { current: leader, fenced: 0, me: 1, caught_up: true };
            MemoryFollower { log, view: Mutex::new(view) }
        }

        fn view(&self) -> FollowerView {
            *self.view.lock().expect("view")
        }
    }

    impl FollowerLink for MemoryFollower {
        async fn state(&self) -> Result<CopyState, String> {
            Ok(self.log.state())
        }

        async fn truncate(&self, to: u64, epoch: u64) -> Result<(), String> {
            cut_copy(&self.log, self.view(), to, epoch).await.map(drop).map_err(|e| format!("{e:?}"))
        }

        async fn replicate(
            &self,
            base: u64,
            epoch: u64,
            epochs: &[EpochStart],
            records: &[Bytes],
            times: &[TimeRun],
        ) -> Result<u64, SendError> {
            let copied = (records.to_vec(), times.to_vec());
            match store_copy(&self.log, self.view(), (base, epoch), epochs.to_vec(), copied).await {
                Ok(state) => Ok(state.end),
                Err(CopyRefusal::Mismatch(_)) => Err(SendError::Mismatch),
                Err(CopyRefusal::Stale(_)) => Err(SendError::Fenced),
                Err(CopyRefusal::Storage(e)) => Err(SendError::Unreachable(e.to_string())),
            }
        }
    }

    /// What the leader's replicator does for one follower: agree on where the copies match,
    /// then send from the leader's log until the follower holds all of it.
    async fn replicate_all(leader: &MemoryLog, epoch: u64, follower: &MemoryFollower) -> Result<u64, String> {
        let mut end = agree_on_end(leader, epoch, || None, follower).await?;
        while end < leader.end() {
            let copied = leader.read_from(end).await?;
            end = follower
                .replicate(end, epoch, &copied.epochs, &copied.records, &copied.times)
                .await
                .map_err(|e| format!("{e:?}"))?;
        }
        Ok(end)
    }

    fn leader_of(epoch: u64) -> PartitionLeader {
        PartitionLeader { broker: 0, epoch }
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_with_a_tail_of_an_older_epoch_is_cut_to_where_that_epoch_ends_here_then_caught_up() {
        // Epoch 1's leader wrote x5..x8 to this follower only, then lost the partition; the
        // leader of epoch 2 wrote b5..b7 from offset 5.
        let leader = MemoryLog::with(&["a0", "a1", "a2", "a3", "a4", "b5", "b6", "b7"], &[(0, 0), (2, 5)]);
        let log = MemoryLog::with(&["a0", "a1", "a2", "a3", "a4", "x5", "x6", "x7", "x8"], &[(0, 0), (1, 5)]);
        let follower = MemoryFollower::new(log, leader_of(2));
        assert_eq!(agreement(&leader, 2, None, follower.log.state()), Ok(Agreement::Cut(5)));

        assert_eq!(replicate_all(&leader, 2, &follower).await, Ok(8));
        assert_eq!(follower.log.records(), leader.records(), "x5..x8 are gone, b5..b7 copied");
        assert_eq!(follower.log.epochs(), leader.epochs());
        assert_eq!(agreement(&leader, 2, None, follower.log.state()), Ok(Agreement::InStep(8)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_of_the_same_epoch_ahead_of_the_leaders_fsync_is_in_step() {
        let leader = MemoryLog::with(&["a0", "a1"], &[(3, 0)]);
        let follower = CopyState { end: 4, last_epoch: 3 };
        assert_eq!(agreement(&leader, 3, Some(4), follower), Ok(Agreement::InStep(4)), "the tail reached it first");
        assert_eq!(agreement(&leader, 3, None, follower), Ok(Agreement::Cut(2)));
        assert!(agreement(&leader, 3, None, CopyState { end: 1, last_epoch: 4 }).is_err(), "a newer epoch");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_follower_refuses_records_and_cuts_from_an_older_leader_and_takes_the_new_ones() {
        let leader = MemoryLog::with(&["a0", "a1", "a2"], &[(2, 0)]);
        let follower = MemoryFollower::new(MemoryLog::with(&["a0"], &[(2, 0)]), leader_of(2));
        // The leader of epoch 3 fenced this copy before Raft's change reached it.
        follower.view.lock().expect("view").fenced = 3;
        let Copied { records, epochs, .. } = leader.read_from(1).await.expect("read");
        assert!(matches!(follower.replicate(1, 2, &epochs, &records, &[]).await, Err(SendError::Fenced)));
        assert!(follower.truncate(0, 2).await.is_err(), "no cut on an old leader's word");
        assert_eq!(follower.log.records().len(), 1, "nothing changed");

        let new_leader = MemoryLog::with(&["a0", "a1", "a2", "c3"], &[(2, 0), (3, 3)]);
        assert_eq!(replicate_all(&new_leader, 3, &follower).await, Ok(4));
        assert_eq!(follower.log.records(), new_leader.records());
        assert!(
            matches!(follower.replicate(0, 3, &[], &records, &[]).await, Err(SendError::Mismatch)),
            "not at its end"
        );
    }

    #[test]
    fn fencing_admits_only_a_leader_at_least_as_new_as_any_known() {
        let view = FollowerView { current: leader_of(4), fenced: 5, me: 1, caught_up: true };
        assert!(!view.may_fence(4) && view.may_fence(5) && view.may_fence(6));
        assert!(!view.accepts_copy(4) && view.accepts_copy(5));
        assert!(!FollowerView { caught_up: false, ..view }.may_fence(6), "an old Raft view cannot judge");
        let leading =
            FollowerView { current: PartitionLeader { broker: 1, epoch: 5 }, fenced: 0, me: 1, caught_up: true };
        assert!(!leading.accepts_copy(5), "a broker never takes copies for a partition it leads");
        assert!(leading.accepts_copy(6), "but yields to a newer leader");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leader_takes_over_from_the_most_advanced_copy_and_drops_what_only_it_held() {
        // This broker led epoch 1 briefly (y5, y6 never reached a majority). The leader of
        // epoch 2 wrote z5..z9 to copy B; copy C only has epoch 0's records.
        let mine = MemoryLog::with(&["a0", "a1", "a2", "a3", "a4", "y5", "y6"], &[(0, 0), (1, 5)]);
        let b = MemoryLog::with(&["a0", "a1", "a2", "a3", "a4", "z5", "z6", "z7", "z8", "z9"], &[(0, 0), (2, 5)]);
        let c = MemoryLog::with(&["a0", "a1", "a2", "a3", "a4", "a5", "a6"], &[(0, 0)]);
        let fenced = [(1, b.state()), (2, c.state())];
        assert_eq!(best_source(mine.state(), fenced), Some((1, b.state())), "highest last epoch wins, not length");

        catch_up_from(&mine, &b).await.expect("catch up");
        assert_eq!(mine.records(), b.records());
        assert_eq!(mine.epochs(), b.epochs());
        assert_eq!(best_source(mine.state(), [(1, b.state()), (2, c.state())]), None, "nothing left to take");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leader_takes_a_longer_copy_of_the_same_epoch() {
        let mine = MemoryLog::with(&["a0", "a1"], &[(1, 0)]);
        let longer = MemoryLog::with(&["a0", "a1", "a2", "a3"], &[(1, 0)]);
        assert_eq!(best_source(mine.state(), [(2, longer.state())]).map(|(b, _)| b), Some(2));
        catch_up_from(&mine, &longer).await.expect("catch up");
        assert_eq!(mine.records(), longer.records());
    }
}
