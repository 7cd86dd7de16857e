//! Append times and producer stamps as they travel with copied records: runs of (records,
//! time), since a batch's records share one time, each run that ends an idempotent request
//! closed by its stamp (a copy writes each run as one batch). On the wire (a peer header)
//! `count@ms,count@ms@id:epoch:seq:first,…`.

use std::sync::Arc;

use super::producers::ProducerWrite;
use super::StoredRecord;

/// `count` consecutive records appended at `timestamp_ms`, the last of them ending the
/// idempotent request `producer`, if set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeRun {
    pub count: u32,
    pub timestamp_ms: i64,
    pub producer: Option<Arc<ProducerWrite>>,
}

/// Most bytes the runs of one peer request take as text, so its head stays well within the
/// peer port's limit whatever the producers' ids.
pub const MAX_RUNS_TEXT: usize = 16 * 1024;

impl TimeRun {
    pub fn new(count: u32, timestamp_ms: i64) -> TimeRun {
        TimeRun { count, timestamp_ms, producer: None }
    }

    /// The runs of `records` (in offset order).
    pub fn of(records: &[StoredRecord]) -> Vec<TimeRun> {
        let mut runs = Runs::unbounded();
        for record in records {
            runs.add(1, record.timestamp_ms, record.producer.clone());
        }
        runs.into_runs()
    }

    /// The most text a run takes (with its comma), with `producer` as its stamp: counts and
    /// times at their longest, so a run's text never outgrows it when the run grows.
    fn room(producer: Option<&ProducerWrite>) -> usize {
        const LONGEST_RUN: usize = "4294967295@-9223372036854775808,".len();
        LONGEST_RUN + producer.map_or(0, |p| 1 + p.format().len())
    }

    fn text(&self) -> String {
        match &self.producer {
            Some(producer) => format!("{}@{}@{}", self.count, self.timestamp_ms, producer.format()),
            None => format!("{}@{}", self.count, self.timestamp_ms),
        }
    }

    pub fn format(runs: &[TimeRun]) -> String {
        runs.iter().map(TimeRun::text).collect::<Vec<_>>().join(",")
    }

    /// Runs that cover exactly `records` records, or why not.
    pub fn parse(text: &str, records: usize) -> Result<Vec<TimeRun>, String> {
        let runs = text
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|run| {
                let bad = || format!("bad time run '{run}'");
                let mut parts = run.splitn(3, '@');
                let (Some(count), Some(time)) = (parts.next(), parts.next()) else { return Err(bad()) };
                let producer = parts.next().map(|p| ProducerWrite::parse(p).map(Arc::new)).transpose()?;
                let count = count.parse::<u32>().ok().filter(|c| *c > 0);
                match (count, time.parse::<i64>()) {
                    (Some(count), Ok(timestamp_ms)) => Ok(TimeRun { count, timestamp_ms, producer }),
                    _ => Err(bad()),
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        let covered: u64 = runs.iter().map(|r| u64::from(r.count)).sum();
        if covered != records as u64 {
            return Err(format!("the time runs cover {covered} records, not {records}"));
        }
        Ok(runs)
    }
}

/// Runs built up record by record or batch by batch (a batch's records share one time), within
/// a number of runs and [`MAX_RUNS_TEXT`] bytes of text: what one peer request can carry.
pub struct Runs {
    runs: Vec<TimeRun>,
    /// The most text the runs take as they are ([`TimeRun::room`] each).
    text: usize,
    max_runs: usize,
    max_text: usize,
}

impl Runs {
    /// Runs for one peer request: at most `max_runs`, and [`MAX_RUNS_TEXT`] of text.
    pub fn bounded(max_runs: usize) -> Runs {
        Runs { runs: Vec::new(), text: 0, max_runs, max_text: MAX_RUNS_TEXT }
    }

    fn unbounded() -> Runs {
        Runs { runs: Vec::new(), text: 0, max_runs: usize::MAX, max_text: usize::MAX }
    }

    /// Adds `count` records appended at `timestamp_ms`, the last of them ending `producer`'s
    /// request, if set: to the last run when it has the time and no stamp yet, else as a new
    /// run. False, with nothing added, when that would go past the bounds (never for the first).
    pub fn add(&mut self, count: u32, timestamp_ms: i64, producer: Option<Arc<ProducerWrite>>) -> bool {
        let room = TimeRun::room(producer.as_deref());
        let stamp_room = room - TimeRun::room(None);
        let full = !self.runs.is_empty() && (self.runs.len() >= self.max_runs || self.text + room > self.max_text);
        match self.runs.last_mut() {
            Some(run) if run.producer.is_none() && run.timestamp_ms == timestamp_ms => {
                if self.text + stamp_room > self.max_text {
                    return false;
                }
                run.count += count;
                run.producer = producer;
                self.text += stamp_room;
            }
            _ if full => return false,
            _ => {
                self.runs.push(TimeRun { count, timestamp_ms, producer });
                self.text += room;
            }
        }
        true
    }

    /// The records the runs cover.
    pub fn covered(&self) -> usize {
        self.runs.iter().map(|r| r.count as usize).sum()
    }

    pub fn into_runs(self) -> Vec<TimeRun> {
        self.runs
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn runs_round_trip_and_must_cover_the_records() {
        let record = |offset, timestamp_ms| StoredRecord { offset, timestamp_ms, value: Bytes::new(), producer: None };
        let runs = TimeRun::of(&[record(0, 5), record(1, 5), record(2, 9), record(3, 9), record(4, 12)]);
        assert_eq!(runs.iter().map(|r| (r.count, r.timestamp_ms)).collect::<Vec<_>>(), vec![(2, 5), (2, 9), (1, 12)]);
        let text = TimeRun::format(&runs);
        assert_eq!(text, "2@5,2@9,1@12");
        assert_eq!(TimeRun::parse(&text, 5), Ok(runs));
        for (bad, records) in [("2@5", 3), ("x@5", 1), ("0@5", 0), ("1@y", 1), ("15", 1), ("1@5@p:1", 1)] {
            assert!(TimeRun::parse(bad, records).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stamp_closes_its_run() {
        let stamp = Arc::new(ProducerWrite::parse("p:1:2:0").expect("stamp"));
        let mut records: Vec<StoredRecord> = (0..4)
            .map(|offset| StoredRecord { offset, timestamp_ms: 5, value: Bytes::new(), producer: None })
            .collect();
        records[1].producer = Some(stamp.clone());
        let runs = TimeRun::of(&records);
        assert_eq!(
            runs,
            vec![TimeRun { count: 2, timestamp_ms: 5, producer: Some(stamp.clone()) }, TimeRun::new(2, 5)]
        );
        let text = TimeRun::format(&runs);
        assert_eq!(text, "2@5@p:1:2:0,2@5");
        assert_eq!(TimeRun::parse(&text, 4), Ok(runs.clone()));
        let long = Arc::new(ProducerWrite::parse(&format!("{}:1:2:0", "p".repeat(64))).expect("stamp"));
        let mut bounded = Runs::bounded(512);
        let mut time = i64::MIN;
        while bounded.add(u32::MAX, time, Some(long.clone())) {
            time += 1;
        }
        let fit = bounded.into_runs();
        assert!(!fit.is_empty() && TimeRun::format(&fit).len() <= MAX_RUNS_TEXT, "{}", fit.len());
        let mut one = Runs::bounded(1);
        assert!(one.add(2, 5, Some(stamp)) && !one.add(2, 5, None), "a stamped run is closed; one run at most");
        assert_eq!(one.covered(), 2);
    }
}
