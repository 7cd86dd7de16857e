//! One partition's records as one queue group leases them (SPEC §14), on the partition's
//! leader. Pure and clock-free: callers pass `now`, so it is tested with made-up instants.
//!
//! Invariants:
//! - every record below `floor` is acknowledged;
//! - `floor <= cursor <= floor + max_in_flight`: at most `max_in_flight` records are tracked,
//!   and a record at or past `cursor` was never leased by this leader;
//! - a record in `[floor, cursor)` is acknowledged exactly when it is not in `open`;
//! - `floor` is `open`'s first offset, or `cursor` when `open` is empty;
//! - a record is leased to at most one worker at a time, and in an ordered group at most one
//!   record of a key is leased or being acknowledged, the key's earliest open one (keyless
//!   records are ordered with nothing; a record not read yet may have anyone's key).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

/// A lease's number: unique on this broker (the queue service numbers them from a random start).
pub type LeaseId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Times it was leased.
    pub deliveries: u32,
    pub state: SlotState,
    pub key: RecordKey,
}

/// What is known of a record's key, for an ordered group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKey {
    /// Not read yet (a window restored after a failover): it may share anyone's key.
    Unknown,
    /// Produced without a partition key: ordered with no other record.
    Keyless,
    /// The ring token of its partition key (two keys of one token are ordered as one).
    Token(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Available from `from` (now, or after a nack's delay).
    Waiting { from: Instant },
    /// Leased until `until`; available again after it.
    Leased { lease: LeaseId, until: Instant },
    /// Its acknowledgement (or dead letter) is being made durable: not leased meanwhile.
    Settling,
}

/// How a token fared against the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The lease is current: the caller goes on (settle it, give it back, extend it).
    Current,
    /// Acknowledged already (a repeated ack is answered `ok`).
    Acked,
    /// The lease ended (its deadline passed, or the record was leased again).
    Expired,
    /// No such record was leased here.
    Unknown,
}

/// A record read for [`LeaseWindow::lease`]: its offset and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub offset: u64,
    pub key: RecordKey,
}

/// What [`LeaseWindow::lease`] did with the candidates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leased {
    /// (offset, lease, delivery count) leased now.
    pub leased: Vec<(u64, LeaseId, u32)>,
    /// Offsets delivered `max_deliver` times whose last lease ended: to be dead-lettered and
    /// acknowledged (they are settling meanwhile).
    pub dead: Vec<(u64, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRules {
    pub ack_wait: Duration,
    /// Deliveries before a record is dead-lettered (`None`: unlimited).
    pub max_deliver: Option<u32>,
    pub ordered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseWindow {
    floor: u64,
    cursor: u64,
    open: BTreeMap<u64, Slot>,
    max_in_flight: u64,
}

impl LeaseWindow {
    /// The window of a partition whose records below `floor` and those in `acked` are
    /// acknowledged (what Raft holds); every other record up to the last acknowledged one is
    /// available at once: a new leader knows of no lease, so the previous leader's come back.
    pub fn restore(floor: u64, acked: &BTreeSet<u64>, max_in_flight: usize, now: Instant) -> LeaseWindow {
        let cursor = acked.iter().next_back().map_or(floor, |last| (last + 1).max(floor));
        let open = (floor..cursor)
            .filter(|o| !acked.contains(o))
            .map(|o| (o, Slot { deliveries: 0, state: SlotState::Waiting { from: now }, key: RecordKey::Unknown }))
            .collect();
        let mut window = LeaseWindow { floor, cursor, open, max_in_flight: max_in_flight.max(1) as u64 };
        window.advance_floor();
        window
    }

    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Records retention removed (below `start`) are gone: they count as acknowledged.
    pub fn skip_to(&mut self, start: u64) {
        if start > self.floor {
            self.open = self.open.split_off(&start);
            self.cursor = self.cursor.max(start);
            self.floor = start;
            self.advance_floor();
        }
    }

    /// Offsets worth reading for a lease at `now`, in order: open records available now
    /// (restored ones, expired leases, nacks whose delay ended; in an ordered group only those
    /// no earlier record holds back, and those of unknown key, since reading them makes their
    /// key known), then new records from `cursor` up to `end` and the in-flight bound; at most
    /// `limit` in all. So a busy key's waiting records do not crowd out other keys.
    pub fn wanted(&self, now: Instant, end: u64, limit: usize, ordered: bool) -> Vec<u64> {
        let mut held = HeldKeys::default();
        let mut wanted = Vec::new();
        for (&offset, slot) in &self.open {
            if wanted.len() >= limit {
                break;
            }
            let offered = !ordered || slot.key == RecordKey::Unknown || !held.hold(slot.key);
            held.pass(slot.key);
            if offered && available(slot, now) {
                wanted.push(offset);
            }
        }
        let new_end = end.min(self.floor + self.max_in_flight);
        wanted.extend((self.cursor..new_end).take(limit - wanted.len()));
        wanted
    }

    /// Leases the candidates (read at offsets [`LeaseWindow::wanted`] gave) that may be leased
    /// at `now`, at most `limit`, each until `now + ack_wait`. In an ordered group a keyed record
    /// is leased only if no earlier open record has its key, and no record while an earlier one's
    /// key is unknown. Candidates past `cursor` become open (so their keys are known and they
    /// count as in flight) whether leased or not; they must start at `cursor` and follow each
    /// other.
    pub fn lease(
        &mut self,
        now: Instant,
        candidates: &[Candidate],
        limit: usize,
        rules: LeaseRules,
        mut next_lease: impl FnMut() -> LeaseId,
    ) -> Leased {
        for candidate in candidates {
            if candidate.offset == self.cursor && self.cursor < self.floor + self.max_in_flight {
                let slot = Slot { deliveries: 0, state: SlotState::Waiting { from: now }, key: candidate.key };
                self.open.insert(candidate.offset, slot);
                self.cursor += 1;
            } else if let Some(slot) = self.open.get_mut(&candidate.offset).filter(|s| s.key == RecordKey::Unknown) {
                slot.key = candidate.key;
            }
        }
        let offered: HashSet<u64> = candidates.iter().map(|c| c.offset).collect();
        let mut result = Leased::default();
        let mut held = HeldKeys::default();
        for (&offset, slot) in self.open.iter_mut() {
            if result.leased.len() >= limit {
                break;
            }
            let held_back = rules.ordered && held.hold(slot.key);
            let may = offered.contains(&offset) && available(slot, now) && !held_back;
            held.pass(slot.key);
            if !may {
                continue;
            }
            if rules.max_deliver.is_some_and(|max| slot.deliveries >= max) {
                slot.state = SlotState::Settling;
                result.dead.push((offset, slot.deliveries));
                continue;
            }
            let lease = next_lease();
            slot.deliveries += 1;
            slot.state = SlotState::Leased { lease, until: now + rules.ack_wait };
            result.leased.push((offset, lease, slot.deliveries));
        }
        result
    }

    /// How `lease` of `offset` stands at `now`.
    pub fn check(&self, offset: u64, lease: LeaseId, now: Instant) -> Check {
        if offset >= self.cursor {
            return Check::Unknown;
        }
        match self.open.get(&offset) {
            None => Check::Acked,
            Some(Slot { state: SlotState::Leased { lease: l, until }, .. }) if *l == lease && *until > now => {
                Check::Current
            }
            Some(_) => Check::Expired,
        }
    }

    /// Starts making the acknowledgement of a current lease durable: the record is not
    /// leased again meanwhile. Returns the check (only [`Check::Current`] starts anything).
    pub fn begin_ack(&mut self, offset: u64, lease: LeaseId, now: Instant) -> Check {
        let check = self.check(offset, lease, now);
        if check == Check::Current {
            if let Some(slot) = self.open.get_mut(&offset) {
                slot.state = SlotState::Settling;
            }
        }
        check
    }

    /// The settling record at `offset` is acknowledged (durably), or, when `acked` is false,
    /// could not be: it is available again at `now`.
    pub fn settle(&mut self, offset: u64, acked: bool, now: Instant) {
        if acked {
            self.acknowledge(offset);
        } else if let Some(slot) = self.open.get_mut(&offset) {
            if slot.state == SlotState::Settling {
                slot.state = SlotState::Waiting { from: now };
            }
        }
    }

    /// Marks `offset` acknowledged (what Raft applied).
    pub fn acknowledge(&mut self, offset: u64) {
        self.open.remove(&offset);
        self.advance_floor();
    }

    /// Gives a current lease back: available again from `now + delay`.
    pub fn nack(&mut self, offset: u64, lease: LeaseId, now: Instant, delay: Duration) -> Check {
        self.set_current(offset, lease, now, SlotState::Waiting { from: now + delay })
    }

    /// Extends a current lease to `now + ack_wait`.
    pub fn extend(&mut self, offset: u64, lease: LeaseId, now: Instant, ack_wait: Duration) -> Check {
        self.set_current(offset, lease, now, SlotState::Leased { lease, until: now + ack_wait })
    }

    fn set_current(&mut self, offset: u64, lease: LeaseId, now: Instant, state: SlotState) -> Check {
        let check = self.check(offset, lease, now);
        if check == Check::Current {
            if let Some(slot) = self.open.get_mut(&offset) {
                slot.state = state;
            }
        }
        check
    }

    /// When the next lease ends or nack delay runs out after `now` (what a waiting `next`
    /// sleeps until, besides new records).
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        self.open
            .values()
            .filter_map(|slot| match slot.state {
                SlotState::Waiting { from } if from > now => Some(from),
                SlotState::Leased { until, .. } if until > now => Some(until),
                _ => None,
            })
            .min()
    }

    /// (records waiting to be leased among the open ones, records leased) at `now`.
    pub fn counts(&self, now: Instant) -> (u64, u64) {
        let leased = self
            .open
            .values()
            .filter(|s| {
                matches!(s.state, SlotState::Leased { until, .. } if until > now) || s.state == SlotState::Settling
            })
            .count() as u64;
        (self.open.len() as u64 - leased, leased)
    }

    fn advance_floor(&mut self) {
        self.floor = self.open.keys().next().copied().unwrap_or(self.cursor);
    }
}

/// The keys of the open records a pass over the window has met: in an ordered group they hold
/// later records back. A record of unknown key may share anyone's: it holds back all after
/// it, and waits for all before it.
#[derive(Default)]
struct HeldKeys {
    tokens: HashSet<i64>,
    any: bool,
    unknown: bool,
}

impl HeldKeys {
    /// Whether a record of `key` must wait for an earlier one.
    fn hold(&self, key: RecordKey) -> bool {
        self.unknown
            || match key {
                RecordKey::Unknown => self.any,
                RecordKey::Keyless => false,
                RecordKey::Token(token) => self.tokens.contains(&token),
            }
    }

    fn pass(&mut self, key: RecordKey) {
        self.any = true;
        match key {
            RecordKey::Token(token) => {
                self.tokens.insert(token);
            }
            RecordKey::Keyless => {}
            RecordKey::Unknown => self.unknown = true,
        }
    }
}

fn available(slot: &Slot, now: Instant) -> bool {
    match slot.state {
        SlotState::Waiting { from } => from <= now,
        SlotState::Leased { until, .. } => until <= now,
        SlotState::Settling => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(30);

    fn rules() -> LeaseRules {
        LeaseRules { ack_wait: WAIT, max_deliver: None, ordered: false }
    }

    fn new_records(window: &LeaseWindow, now: Instant, end: u64, keys: &[RecordKey]) -> Vec<Candidate> {
        window
            .wanted(now, end, 1000, false)
            .into_iter()
            .map(|offset| Candidate { offset, key: keys.get(offset as usize).copied().unwrap_or(RecordKey::Keyless) })
            .collect()
    }

    fn counter() -> impl FnMut() -> LeaseId {
        let mut next = 0;
        move || {
            next += 1;
            next
        }
    }

    #[test]
    fn a_lease_is_acked_once_and_the_floor_follows_the_first_open_record() {
        let now = Instant::now();
        let mut w = LeaseWindow::restore(0, &BTreeSet::new(), 100, now);
        let got = w.lease(now, &new_records(&w, now, 3, &[]), 10, rules(), counter());
        assert_eq!(got.leased, vec![(0, 1, 1), (1, 2, 1), (2, 3, 1)]);
        assert_eq!(w.begin_ack(1, 2, now), Check::Current);
        w.settle(1, true, now);
        assert_eq!((w.floor(), w.cursor()), (0, 3));
        assert_eq!(w.check(1, 2, now), Check::Acked, "a repeated ack is fine");
        assert_eq!(w.begin_ack(0, 1, now), Check::Current);
        w.settle(0, true, now);
        assert_eq!(w.floor(), 2);
        assert_eq!(w.check(0, 1, now), Check::Acked);
        assert_eq!(w.check(7, 1, now), Check::Unknown);
        assert_eq!(w.check(2, 99, now), Check::Expired, "another lease's token");
    }

    #[test]
    fn an_unacked_lease_comes_back_after_ack_wait_and_its_old_token_is_expired() {
        let t0 = Instant::now();
        let mut w = LeaseWindow::restore(0, &BTreeSet::new(), 100, t0);
        let mut ids = counter();
        w.lease(t0, &new_records(&w, t0, 1, &[]), 10, rules(), &mut ids);
        assert!(w.wanted(t0 + WAIT - Duration::from_millis(1), 1, 10, false).is_empty());
        assert_eq!(w.next_change(t0), Some(t0 + WAIT));
        let later = t0 + WAIT;
        assert_eq!(w.check(0, 1, later), Check::Expired);
        let again = w.lease(later, &[Candidate { offset: 0, key: RecordKey::Keyless }], 10, rules(), &mut ids);
        assert_eq!(again.leased, vec![(0, 2, 2)], "the second delivery");
        assert_eq!(w.begin_ack(0, 1, later), Check::Expired);
        assert_eq!(w.begin_ack(0, 2, later), Check::Current);
    }

    #[test]
    fn nack_gives_back_after_its_delay_and_extend_keeps_the_lease() {
        let t0 = Instant::now();
        let mut w = LeaseWindow::restore(0, &BTreeSet::new(), 100, t0);
        let mut ids = counter();
        w.lease(t0, &new_records(&w, t0, 2, &[]), 10, rules(), &mut ids);
        assert_eq!(w.nack(0, 1, t0, Duration::from_secs(5)), Check::Current);
        assert!(w.wanted(t0 + Duration::from_secs(4), 2, 10, false).is_empty());
        assert_eq!(w.wanted(t0 + Duration::from_secs(5), 2, 10, false), vec![0]);
        assert_eq!(w.extend(1, 2, t0 + WAIT - Duration::from_secs(1), WAIT), Check::Current);
        assert_eq!(w.check(1, 2, t0 + WAIT + Duration::from_secs(1)), Check::Current, "extended");
        assert_eq!(w.nack(0, 1, t0, Duration::ZERO), Check::Expired, "given back already");
    }

    #[test]
    fn at_most_max_in_flight_records_past_the_floor_are_leased() {
        let now = Instant::now();
        let mut w = LeaseWindow::restore(0, &BTreeSet::new(), 3, now);
        let mut ids = counter();
        let got = w.lease(now, &new_records(&w, now, 10, &[]), 10, rules(), &mut ids);
        assert_eq!(got.leased.len(), 3);
        assert!(w.wanted(now, 10, 10, false).is_empty(), "the window is full");
        assert_eq!(w.begin_ack(1, 2, now), Check::Current);
        w.settle(1, true, now);
        assert!(w.wanted(now, 10, 10, false).is_empty(), "offset 0 still holds the floor");
        assert_eq!(w.begin_ack(0, 1, now), Check::Current);
        w.settle(0, true, now);
        assert_eq!(w.wanted(now, 10, 10, false), vec![3, 4], "two places opened");
    }

    #[test]
    fn a_record_over_max_deliver_is_dead_lettered_instead_of_leased() {
        let t0 = Instant::now();
        let mut w = LeaseWindow::restore(0, &BTreeSet::new(), 10, t0);
        let mut ids = counter();
        let twice = LeaseRules { max_deliver: Some(2), ..rules() };
        w.lease(t0, &new_records(&w, t0, 1, &[]), 10, twice, &mut ids);
        w.nack(0, 1, t0, Duration::ZERO);
        assert_eq!(
            w.lease(t0, &[Candidate { offset: 0, key: RecordKey::Keyless }], 10, twice, &mut ids).leased,
            vec![(0, 2, 2)]
        );
        w.nack(0, 2, t0, Duration::ZERO);
        let third = w.lease(t0, &[Candidate { offset: 0, key: RecordKey::Keyless }], 10, twice, &mut ids);
        assert_eq!(third, Leased { leased: vec![], dead: vec![(0, 2)] });
        assert!(w.wanted(t0, 1, 10, false).is_empty(), "settling: not offered again");
        w.settle(0, true, t0);
        assert_eq!(w.floor(), 1);
    }

    #[test]
    fn an_ordered_group_leases_one_record_per_key_in_offset_order() {
        let now = Instant::now();
        let mut w = LeaseWindow::restore(0, &BTreeSet::new(), 100, now);
        let mut ids = counter();
        let ordered = LeaseRules { ordered: true, ..rules() };
        // Keys of offsets 0..7: a b a c b a, then one without a key.
        let keys = [1, 2, 1, 3, 2, 1].map(RecordKey::Token);
        let got = w.lease(now, &new_records(&w, now, 7, &keys), 10, ordered, &mut ids);
        assert_eq!(got.leased.iter().map(|l| l.0).collect::<Vec<_>>(), vec![0, 1, 3, 6], "one per key");
        let retry = w.lease(now, &new_records(&w, now, 7, &keys), 10, ordered, &mut ids);
        assert!(retry.leased.is_empty(), "each key's next waits for its previous");
        assert_eq!(w.begin_ack(0, 1, now), Check::Current);
        assert!(w.lease(now, &new_records(&w, now, 7, &keys), 10, ordered, &mut ids).leased.is_empty(), "settling");
        w.settle(0, true, now);
        let next = w.lease(now, &new_records(&w, now, 7, &keys), 10, ordered, &mut ids);
        assert_eq!(next.leased.iter().map(|l| l.0).collect::<Vec<_>>(), vec![2], "a's second, after a's first");
    }

    #[test]
    fn in_an_ordered_group_a_busy_key_s_waiting_records_do_not_crowd_out_other_keys() {
        let now = Instant::now();
        let mut w = LeaseWindow::restore(0, &BTreeSet::new(), 100, now);
        let mut ids = counter();
        let ordered = LeaseRules { ordered: true, ..rules() };
        // Offsets 0..8 of key a, 8 and 9 of key b, all read once (so open with their keys).
        let keys: Vec<RecordKey> = (0..10).map(|o| RecordKey::Token(if o < 8 { 1 } else { 2 })).collect();
        let got = w.lease(now, &new_records(&w, now, 10, &keys), 1, ordered, &mut ids);
        assert_eq!(got.leased.iter().map(|l| l.0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(w.wanted(now, 10, 3, true), vec![8], "a's next ones wait: b's first is offered");
        assert_eq!(w.wanted(now, 10, 3, false).len(), 3, "unordered, the first ones");
        let unread = LeaseWindow::restore(0, &[5].into(), 100, now);
        assert_eq!(unread.wanted(now, 6, 3, true), vec![0, 1, 2], "unknown keys are read to be known");
    }

    #[test]
    fn in_an_ordered_group_a_record_of_unknown_key_waits_for_all_before_it_and_holds_back_all_after() {
        let now = Instant::now();
        let mut ids = counter();
        let ordered = LeaseRules { ordered: true, ..rules() };
        // A new leader's window: offsets 0..3 open, acked 3; their keys not read yet.
        let mut w = LeaseWindow::restore(0, &[3].into(), 100, now);
        let first = [Candidate { offset: 0, key: RecordKey::Token(1) }];
        let got = w.lease(now, &first, 10, ordered, &mut ids);
        assert_eq!(got.leased.iter().map(|l| l.0).collect::<Vec<_>>(), vec![0]);
        let rest = [1, 2].map(|offset| Candidate { offset, key: RecordKey::Unknown });
        assert!(w.lease(now, &rest, 10, ordered, &mut ids).leased.is_empty(), "offset 0's key may be theirs");
        w.begin_ack(0, 1, now);
        w.settle(0, true, now);
        let got = w.lease(now, &rest, 10, ordered, &mut ids);
        assert_eq!(got.leased.iter().map(|l| l.0).collect::<Vec<_>>(), vec![1], "one at a time while unknown");
    }

    #[test]
    fn a_restored_window_offers_every_unacked_record_and_skips_what_retention_removed() {
        let now = Instant::now();
        let acked: BTreeSet<u64> = [11, 13].into();
        let mut w = LeaseWindow::restore(10, &acked, 100, now);
        assert_eq!((w.floor(), w.cursor()), (10, 14));
        assert_eq!(w.wanted(now, 16, 10, false), vec![10, 12, 14, 15]);
        assert_eq!(w.check(11, 5, now), Check::Acked);
        w.skip_to(13);
        assert_eq!((w.floor(), w.cursor()), (14, 14));
        assert_eq!(w.wanted(now, 16, 10, false), vec![14, 15]);
    }

    mod property {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Op {
            Lease(usize),
            Ack(usize),
            Nack(usize, u64),
            Extend(usize),
            Wait(u64),
            Produce(u64),
            /// A failover: a new leader's window from what is acknowledged.
            Restore,
            /// Retention removed the records below `floor + n`.
            Retain(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (1usize..8).prop_map(Op::Lease),
                any::<usize>().prop_map(Op::Ack),
                (any::<usize>(), 0u64..3).prop_map(|(i, d)| Op::Nack(i, d)),
                any::<usize>().prop_map(Op::Extend),
                (0u64..40).prop_map(Op::Wait),
                (1u64..6).prop_map(Op::Produce),
                Just(Op::Restore),
                (0u64..4).prop_map(Op::Retain),
            ]
        }

        proptest! {
            /// Whatever workers do, a record is leased to one worker at a time, an acknowledged
            /// one is never offered again, the window stays within its bound, and an ordered
            /// group leases only the earliest open record of a key.
            #[test]
            fn leases_stay_exclusive_and_acks_final(ops in proptest::collection::vec(op(), 1..120), ordered: bool) {
                let t0 = Instant::now();
                let mut now = t0;
                let rules = LeaseRules { ack_wait: Duration::from_secs(10), max_deliver: Some(4), ordered };
                let mut w = LeaseWindow::restore(0, &BTreeSet::new(), 6, now);
                let mut end = 0u64;
                // Every fourth record without a key, the others of three keys.
                let key_of = |o: u64| if o % 4 == 3 { RecordKey::Keyless } else { RecordKey::Token((o % 3) as i64) };
                let mut next = 0u64;
                let mut tokens: Vec<(u64, LeaseId)> = Vec::new();
                let mut acked: BTreeSet<u64> = BTreeSet::new();
                for op in ops {
                    match op {
                        Op::Produce(n) => end += n,
                        Op::Restore => {
                            let floor = w.floor();
                            let above: BTreeSet<u64> = acked.range(floor..).copied().collect();
                            w = LeaseWindow::restore(floor, &above, 6, now);
                            tokens.clear();
                        }
                        Op::Retain(n) => {
                            let start = (w.floor() + n).min(end);
                            acked.extend(0..start);
                            w.skip_to(start);
                        }
                        Op::Wait(s) => now += Duration::from_secs(s),
                        Op::Lease(n) => {
                            let candidates: Vec<Candidate> = w.wanted(now, end, n, ordered)
                                .into_iter().map(|offset| Candidate { offset, key: key_of(offset) }).collect();
                            let got = w.lease(now, &candidates, n, rules, || { next += 1; next });
                            for &(offset, lease, _) in &got.leased {
                                prop_assert!(!acked.contains(&offset), "acked record {offset} leased again");
                                tokens.push((offset, lease));
                            }
                            for &(offset, _) in &got.dead {
                                w.settle(offset, true, now);
                                acked.insert(offset);
                            }
                        }
                        Op::Ack(i) if !tokens.is_empty() => {
                            let (offset, lease) = tokens[i % tokens.len()];
                            if w.begin_ack(offset, lease, now) == Check::Current {
                                w.settle(offset, true, now);
                                acked.insert(offset);
                            }
                        }
                        Op::Nack(i, d) if !tokens.is_empty() => {
                            let (offset, lease) = tokens[i % tokens.len()];
                            w.nack(offset, lease, now, Duration::from_secs(d));
                        }
                        Op::Extend(i) if !tokens.is_empty() => {
                            let (offset, lease) = tokens[i % tokens.len()];
                            w.extend(offset, lease, now, rules.ack_wait);
                        }
                        _ => {}
                    }
                    prop_assert!(w.floor() <= w.cursor() && w.cursor() <= w.floor() + 6);
                    prop_assert!(acked.range(w.floor()..).all(|o| !w.open.contains_key(o)));
                    prop_assert!((0..w.floor()).all(|o| acked.contains(&o)), "below the floor all is acked");
                    let current: Vec<u64> = tokens.iter()
                        .filter(|(o, l)| w.check(*o, *l, now) == Check::Current).map(|(o, _)| *o).collect();
                    let distinct: BTreeSet<u64> = current.iter().copied().collect();
                    prop_assert_eq!(distinct.len(), current.len(), "a record leased twice at once");
                    if ordered {
                        for &offset in current.iter().filter(|&&o| key_of(o) != RecordKey::Keyless) {
                            let earlier_same_key = w.open.range(..offset).any(|(&o, _)| key_of(o) == key_of(offset));
                            prop_assert!(!earlier_same_key, "record {} leased before an earlier one of its key", offset);
                        }
                    }
                }
            }
        }
    }
}
