//! Idempotent producers (SPEC §12): what a partition knows of each producer that wrote to it,
//! so a retried request is stored at most once.
//!
//! The state is part of the log. A request's `Producer-Id`, epoch and sequence (a
//! [`ProducerStamp`]) are written into the batch that holds its last record, with the request's
//! first offset (a [`ProducerWrite`]); copies get them with the records and write them the same
//! way, so every copy holds the state its log implies and a new leader enforces it without
//! asking anyone. It is rebuilt from the log: at start, after a cut, from the newest
//! snapshot (`{base:020}.producers`, written when a segment starts: the state of everything
//! before it) and the batches after it.
//!
//! Per producer the table keeps its epoch and its last [`RECENT`] requests (sequence and
//! offsets), so a retry of any of them answers the offsets it was given; at most `cap`
//! producers per partition, the one that wrote least recently evicted first.
//!
//! Invariants: within an epoch, a producer's stored sequences are consecutive from the one it
//! started at here (`first_seq`) and grow with the offsets, so a lower sequence was never
//! stored; a producer's entry only ever moves to a later epoch.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Appended;

/// Requests per producer whose offsets a retry is answered with (Kafka keeps five).
pub const RECENT: usize = 5;
/// Longest `Producer-Id` (SPEC §12).
pub const MAX_ID_LEN: usize = 64;

/// What an idempotent request carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProducerStamp {
    pub id: Arc<str>,
    pub epoch: u64,
    pub seq: u64,
}

impl ProducerStamp {
    /// A stamp from the three header values, or why not.
    pub fn parse(id: &str, epoch: &str, seq: &str) -> Result<ProducerStamp, String> {
        validate_id(id)?;
        // Below u64::MAX, so the next one (and a client's next epoch) is a number too.
        let number = |name: &str, v: &str| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n < u64::MAX)
                .ok_or_else(|| format!("invalid {name} '{v}': an integer from 0 to 2^64 - 2"))
        };
        Ok(ProducerStamp { id: id.into(), epoch: number("Producer-Epoch", epoch)?, seq: number("Producer-Seq", seq)? })
    }

    /// `id:epoch:seq`, as it travels between brokers (ids hold no `:`, `,` or `@`).
    pub fn format(&self) -> String {
        format!("{}:{}:{}", self.id, self.epoch, self.seq)
    }

    /// A stamp from its [`ProducerStamp::format`] text.
    pub fn parse_text(text: &str) -> Result<ProducerStamp, String> {
        let mut parts = text.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(epoch), Some(seq), None) => ProducerStamp::parse(id, epoch, seq),
            _ => Err(format!("bad producer stamp '{text}'")),
        }
    }
}

/// 1 to 64 of `[A-Za-z0-9._-]`.
pub fn validate_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.chars().all(allowed) {
        return Err(format!("invalid Producer-Id '{id}': 1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ -"));
    }
    Ok(())
}

/// A stored request's stamp and the offset of its first record (its last record is where the
/// stamp is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerWrite {
    pub stamp: ProducerStamp,
    pub first: u64,
}

impl ProducerWrite {
    /// `id:epoch:seq:first`, as it travels in a peer header.
    pub fn format(&self) -> String {
        format!("{}:{}", self.stamp.format(), self.first)
    }

    pub fn parse(text: &str) -> Result<ProducerWrite, String> {
        let bad = || format!("bad producer stamp '{text}'");
        let (stamp, first) = text.rsplit_once(':').ok_or_else(bad)?;
        let stamp = ProducerStamp::parse_text(stamp).map_err(|_| bad())?;
        Ok(ProducerWrite { stamp, first: first.parse().map_err(|_| bad())? })
    }
}

/// What the partition makes of an idempotent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Next in sequence (or the producer's first request here, or a new epoch's first): store it.
    Append,
    /// Stored before: these are its offsets (None when it is older than the [`RECENT`] kept).
    Duplicate(Option<Appended>),
    /// Not the next in sequence and never stored (ahead of it, or below where the producer
    /// started here): `expected` is next.
    Gap { expected: u64 },
    /// An older epoch than the producer's current one: a fenced (zombie) producer.
    Fenced { current: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Written {
    seq: u64,
    first: u64,
    end: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Producer {
    epoch: u64,
    /// The sequence of its first request stored here in this epoch. Snapshots written before
    /// it was kept read as 0: every lower sequence counts as stored, as they were answered then.
    #[serde(default)]
    first_seq: u64,
    /// The producer's last requests in this epoch, oldest first, at most [`RECENT`].
    recent: VecDeque<Written>,
}

impl Producer {
    fn last_end(&self) -> u64 {
        self.recent.back().map_or(0, |w| w.end)
    }
}

/// Every producer a partition knows of.
#[derive(Debug, Clone)]
pub struct ProducerTable {
    cap: usize,
    producers: HashMap<Arc<str>, Producer>,
    /// The log's records before its start were never read into the table (a copy restarted
    /// at its leader's retained start): a producer first met here may have stored lower
    /// sequences before it, so it counts as started at 0.
    partial: bool,
}

impl ProducerTable {
    pub fn new(cap: usize) -> ProducerTable {
        ProducerTable { cap: cap.max(1), producers: HashMap::new(), partial: false }
    }

    /// The table of a log whose earlier records it never saw.
    pub fn without_history(cap: usize) -> ProducerTable {
        ProducerTable { partial: true, ..ProducerTable::new(cap) }
    }

    /// What `stamp` asks for, given what the partition holds. A producer not known here (new,
    /// or evicted) may start at any sequence: after an eviction, a retry of its older requests
    /// is no longer recognised (the cost of the bound, paid by the least recently active).
    pub fn check(&self, stamp: &ProducerStamp) -> Verdict {
        let Some(producer) = self.producers.get(&stamp.id) else { return Verdict::Append };
        if stamp.epoch < producer.epoch {
            return Verdict::Fenced { current: producer.epoch };
        }
        if stamp.epoch > producer.epoch {
            return if stamp.seq == 0 { Verdict::Append } else { Verdict::Gap { expected: 0 } };
        }
        let Some(last) = producer.recent.back() else { return Verdict::Append };
        if Some(stamp.seq) == last.seq.checked_add(1) {
            return Verdict::Append;
        }
        if stamp.seq > last.seq || stamp.seq < producer.first_seq {
            return Verdict::Gap { expected: last.seq.saturating_add(1) };
        }
        let stored = producer.recent.iter().find(|w| w.seq == stamp.seq);
        Verdict::Duplicate(stored.map(|w| Appended {
            base_offset: w.first,
            count: (w.end - w.first) as u32,
            duplicate: true,
        }))
    }

    /// Records a stored request ending at `end`. Applying what the table already holds (a
    /// snapshot's overlap with the batches read after it) changes nothing.
    pub fn apply(&mut self, write: &ProducerWrite, end: u64) {
        let stamp = &write.stamp;
        if !self.producers.contains_key(&stamp.id) && self.producers.len() >= self.cap {
            let oldest = self.producers.iter().min_by_key(|(_, p)| p.last_end()).map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.producers.remove(&oldest);
            }
        }
        let producer = self.producers.entry(stamp.id.clone()).or_default();
        if stamp.epoch < producer.epoch {
            return;
        }
        if stamp.epoch > producer.epoch {
            *producer = Producer { epoch: stamp.epoch, ..Producer::default() };
        }
        if producer.recent.back().is_some_and(|last| last.seq >= stamp.seq) {
            return;
        }
        if producer.recent.is_empty() {
            producer.first_seq = if self.partial { 0 } else { stamp.seq };
        }
        producer.recent.push_back(Written { seq: stamp.seq, first: write.first, end });
        while producer.recent.len() > RECENT {
            producer.recent.pop_front();
        }
    }

    /// The table as it was for the records before `offset` (requests ending after it are left out).
    fn before(&self, offset: u64) -> HashMap<Arc<str>, Producer> {
        self.producers
            .iter()
            .filter_map(|(id, producer)| {
                let recent: VecDeque<Written> = producer.recent.iter().filter(|w| w.end <= offset).cloned().collect();
                (!recent.is_empty())
                    .then(|| (id.clone(), Producer { epoch: producer.epoch, first_seq: producer.first_seq, recent }))
            })
            .collect()
    }
}

/// The snapshot file of the segment starting at `base`.
pub fn snapshot_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.producers"))
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    /// The state of the records before this offset.
    before: u64,
    producers: Vec<(Arc<str>, Producer)>,
    #[serde(default)]
    partial: bool,
}

/// Writes the state of the records before `base` next to the segment starting there, durably
/// (a temporary file renamed; the caller syncs the directory with the new segment's).
pub fn write_snapshot(dir: &Path, base: u64, table: &ProducerTable) -> std::io::Result<()> {
    let snapshot =
        Snapshot { before: base, producers: table.before(base).into_iter().collect(), partial: table.partial };
    let path = snapshot_path(dir, base);
    let temporary = path.with_extension("producers.tmp");
    std::fs::write(&temporary, serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, &path)
}

/// The snapshot next to the segment at `base`, if there is a readable one.
pub fn read_snapshot(dir: &Path, base: u64, cap: usize) -> Option<ProducerTable> {
    let bytes = std::fs::read(snapshot_path(dir, base)).ok()?;
    let snapshot: Snapshot = serde_json::from_slice(&bytes).ok().filter(|s: &Snapshot| s.before == base)?;
    let mut table = ProducerTable { partial: snapshot.partial, ..ProducerTable::new(cap) };
    table.producers = snapshot.producers.into_iter().collect();
    Some(table)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn stamp(id: &str, epoch: u64, seq: u64) -> ProducerStamp {
        ProducerStamp { id: id.into(), epoch, seq }
    }

    fn write(id: &str, epoch: u64, seq: u64, first: u64) -> ProducerWrite {
        ProducerWrite { stamp: stamp(id, epoch, seq), first }
    }

    #[test]
    fn next_duplicate_gap_fenced_and_new_epoch() {
        let mut table = ProducerTable::new(10);
        assert_eq!(table.check(&stamp("p", 1, 7)), Verdict::Append, "a producer new here starts anywhere");
        table.apply(&write("p", 1, 7, 100), 103);
        assert_eq!(table.check(&stamp("p", 1, 8)), Verdict::Append);
        let original = Appended { base_offset: 100, count: 3, duplicate: true };
        assert_eq!(table.check(&stamp("p", 1, 7)), Verdict::Duplicate(Some(original)));
        assert_eq!(table.check(&stamp("p", 1, 9)), Verdict::Gap { expected: 8 });
        assert_eq!(
            table.check(&stamp("p", 1, 3)),
            Verdict::Gap { expected: 8 },
            "below where it started: never stored"
        );
        assert_eq!(table.check(&stamp("p", 0, 8)), Verdict::Fenced { current: 1 });
        assert_eq!(table.check(&stamp("p", 2, 3)), Verdict::Gap { expected: 0 });
        assert_eq!(table.check(&stamp("p", 2, 0)), Verdict::Append);
        table.apply(&write("p", 2, 0, 103), 104);
        assert_eq!(table.check(&stamp("p", 1, 8)), Verdict::Fenced { current: 2 });
        for seq in 1..=RECENT as u64 + 1 {
            table.apply(&write("p", 2, seq, 103 + seq), 104 + seq);
        }
        assert_eq!(table.check(&stamp("p", 2, 0)), Verdict::Duplicate(None), "older than the kept requests");
        assert!(matches!(table.check(&stamp("p", 2, 2)), Verdict::Duplicate(Some(_))));
    }

    #[test]
    fn the_least_recently_writing_producer_is_evicted_at_the_cap() {
        let mut table = ProducerTable::new(2);
        table.apply(&write("a", 0, 0, 0), 1);
        table.apply(&write("b", 0, 0, 1), 2);
        table.apply(&write("a", 0, 1, 2), 3);
        table.apply(&write("c", 0, 0, 3), 4);
        assert_eq!(table.producers.len(), 2);
        assert_eq!(table.check(&stamp("b", 0, 5)), Verdict::Append, "b was evicted");
        assert_eq!(table.check(&stamp("a", 0, 5)), Verdict::Gap { expected: 2 }, "a was kept");
    }

    #[test]
    fn stamps_and_snapshots_round_trip() {
        let w = write("orders-1.x_y", 3, 9, 12345);
        assert_eq!(ProducerWrite::parse(&w.format()), Ok(w));
        for bad in ["", "a:1:2", "a:1:2:3:4", "a b:1:2:3", "a:-1:2:3", "a:1:2:x", "a:1:18446744073709551615:3"] {
            assert!(ProducerWrite::parse(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut table = ProducerTable::new(10);
        table.apply(&write("a", 0, 0, 0), 5);
        table.apply(&write("a", 0, 1, 5), 9);
        table.apply(&write("b", 0, 0, 9), 12);
        write_snapshot(dir.path(), 9, &table).expect("write");
        let read = read_snapshot(dir.path(), 9, 10).expect("read");
        assert_eq!(read.check(&stamp("a", 0, 2)), Verdict::Append);
        assert_eq!(read.check(&stamp("b", 0, 0)), Verdict::Append, "b's request ends after the snapshot's offset");
        assert!(read_snapshot(dir.path(), 10, 10).is_none());
        table.apply(&write("c", 0, 4, 12), 13);
        write_snapshot(dir.path(), 13, &table).expect("write");
        let read = read_snapshot(dir.path(), 13, 10).expect("read");
        assert_eq!(read.check(&stamp("c", 0, 2)), Verdict::Gap { expected: 5 }, "where c started is kept");

        // A log restarted at 20 without what came before: d's lower sequences may be stored.
        let mut partial = ProducerTable::without_history(10);
        partial.apply(&write("d", 0, 8, 20), 21);
        assert_eq!(partial.check(&stamp("d", 0, 6)), Verdict::Duplicate(None));
        write_snapshot(dir.path(), 21, &partial).expect("write");
        let mut read = read_snapshot(dir.path(), 21, 10).expect("read");
        read.apply(&write("e", 0, 3, 21), 22);
        assert_eq!(read.check(&stamp("e", 0, 1)), Verdict::Duplicate(None), "still without the history");
    }

    proptest! {
        /// However requests are retried, duplicated and reordered, applying what the table
        /// accepts stores each sequence once, in order, and a retry answers the original offsets.
        #[test]
        fn retries_never_store_twice(sends in proptest::collection::vec(0u64..12, 1..80)) {
            let mut table = ProducerTable::new(4);
            let mut end = 0u64;
            let mut stored: Vec<(u64, u64)> = Vec::new();
            for seq in sends {
                match table.check(&stamp("p", 0, seq)) {
                    Verdict::Append => {
                        prop_assert!(stored.last().is_none_or(|(last, _)| seq == last + 1));
                        table.apply(&write("p", 0, seq, end), end + 2);
                        stored.push((seq, end));
                        end += 2;
                    }
                    Verdict::Duplicate(Some(original)) => {
                        let first = stored.iter().find(|(s, _)| *s == seq).map(|(_, first)| *first);
                        prop_assert_eq!(Some(original.base_offset), first);
                    }
                    // Older than the kept requests: stored, with offsets no longer known.
                    Verdict::Duplicate(None) => prop_assert!(stored.iter().any(|(s, _)| *s == seq)),
                    Verdict::Gap { expected } => {
                        prop_assert!(stored.iter().all(|(s, _)| *s != seq), "a stored request is a repeat");
                        prop_assert_eq!(Some(expected), stored.last().map(|(s, _)| s + 1));
                    }
                    Verdict::Fenced { .. } => prop_assert!(false, "one epoch only"),
                }
            }
        }
    }
}
