//! Append times, key tokens and producer stamps as they travel with copied records: runs of
//! (records, time, key token), since a batch's records share them, each run that ends an
//! idempotent request closed by its stamp (a copy writes each run as one batch). On the wire (a
//! peer header) `count@ms,count@ms#token,count@ms@id:epoch:seq:first,…`.

use std::sync::Arc;

use super::producers::ProducerWrite;
use super::StoredRecord;

/// `count` consecutive records appended at `timestamp_ms` by requests of key token
/// `key_token`, the last of them ending the idempotent request `producer`, if set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeRun {
    pub count: u32,
    pub timestamp_ms: i64,
    pub key_token: Option<i64>,
    pub producer: Option<Arc<ProducerWrite>>,
}

/// Most bytes the runs of one peer request take as text, so its head stays well within the
/// peer port's limit whatever the producers' ids.
pub const MAX_RUNS_TEXT: usize = 16 * 1024;

impl TimeRun {
    pub fn new(count: u32, timestamp_ms: i64) -> TimeRun {
        TimeRun { count, timestamp_ms, key_token: None, producer: None }
    }

    /// The runs of `records` (in offset order).
    pub fn of(records: &[StoredRecord]) -> Vec<TimeRun> {
        let mut runs = Runs::unbounded();
        for record in records {
            runs.add(1, (record.timestamp_ms, record.key_token), record.producer.clone());
        }
        runs.into_runs()
    }

    /// The most text a run takes (with its comma), with a key token or not and `producer` as
    /// its stamp: counts, times and tokens at their longest, so a run's text never outgrows it
    /// when the run grows.
    fn room(keyed: bool, producer: Option<&ProducerWrite>) -> usize {
        const LONGEST_RUN: usize = "4294967295@-9223372036854775808,".len();
        const LONGEST_TOKEN: usize = "#-9223372036854775808".len();
        LONGEST_RUN + if keyed { LONGEST_TOKEN } else { 0 } + producer.map_or(0, |p| 1 + p.format().len())
    }

    fn text(&self) -> String {
        let mut text = format!("{}@{}", self.count, self.timestamp_ms);
        if let Some(token) = self.key_token {
            text.push_str(&format!("#{token}"));
        }
        if let Some(producer) = &self.producer {
            text.push_str(&format!("@{}", producer.format()));
        }
        text
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
                let (time, key_token) = match time.split_once('#') {
                    Some((time, token)) => (time, Some(token.parse::<i64>().map_err(|_| bad())?)),
                    None => (time, None),
                };
                match (count, time.parse::<i64>()) {
                    (Some(count), Ok(timestamp_ms)) => Ok(TimeRun { count, timestamp_ms, key_token, producer }),
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

    /// Adds `count` records appended at `timestamp_ms` by requests of key token `key_token`, the
    /// last of them ending `producer`'s request, if set: to the last run when it has the time
    /// and token and no stamp yet, else as a new run. False, with nothing added, when that would
    /// go past the bounds (never for the first).
    pub fn add(
        &mut self,
        count: u32,
        (timestamp_ms, key_token): (i64, Option<i64>),
        producer: Option<Arc<ProducerWrite>>,
    ) -> bool {
        let room = TimeRun::room(key_token.is_some(), producer.as_deref());
        let stamp_room = room - TimeRun::room(key_token.is_some(), None);
        let full = !self.runs.is_empty() && (self.runs.len() >= self.max_runs || self.text + room > self.max_text);
        match self.runs.last_mut() {
            Some(run) if run.producer.is_none() && (run.timestamp_ms, run.key_token) == (timestamp_ms, key_token) => {
                if self.text + stamp_room > self.max_text {
                    return false;
                }
                run.count += count;
                run.producer = producer;
                self.text += stamp_room;
            }
            _ if full => return false,
            _ => {
                self.runs.push(TimeRun { count, timestamp_ms, key_token, producer });
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
        let record = |offset, timestamp_ms, key_token| StoredRecord {
            offset,
            timestamp_ms,
            value: Bytes::new(),
            key_token,
            producer: None,
        };
        let records = [
            record(0, 5, None),
            record(1, 5, None),
            record(2, 9, Some(-3)),
            record(3, 9, Some(-3)),
            record(4, 9, Some(4)),
            record(5, 12, None),
        ];
        let runs = TimeRun::of(&records);
        assert_eq!(
            runs.iter().map(|r| (r.count, r.timestamp_ms, r.key_token)).collect::<Vec<_>>(),
            vec![(2, 5, None), (2, 9, Some(-3)), (1, 9, Some(4)), (1, 12, None)]
        );
        let text = TimeRun::format(&runs);
        assert_eq!(text, "2@5,2@9#-3,1@9#4,1@12");
        assert_eq!(TimeRun::parse(&text, 6), Ok(runs));
        let stamped = TimeRun::parse("2@9#7@p:1:2:0", 2).expect("token and stamp");
        assert_eq!((stamped[0].key_token, stamped[0].producer.is_some()), (Some(7), true));
        for (bad, records) in
            [("2@5", 3), ("x@5", 1), ("0@5", 0), ("1@y", 1), ("15", 1), ("1@5@p:1", 1), ("1@5#", 1), ("1@5#x", 1)]
        {
            assert!(TimeRun::parse(bad, records).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stamp_closes_its_run() {
        let stamp = Arc::new(ProducerWrite::parse("p:1:2:0").expect("stamp"));
        let mut records: Vec<StoredRecord> = (0..4)
            .map(|offset| StoredRecord {
                offset,
                timestamp_ms: 5,
                value: Bytes::new(),
                key_token: None,
                producer: None,
            })
            .collect();
        records[1].producer = Some(stamp.clone());
        let runs = TimeRun::of(&records);
        assert_eq!(
            runs,
            vec![
                TimeRun { count: 2, timestamp_ms: 5, key_token: None, producer: Some(stamp.clone()) },
                TimeRun::new(2, 5)
            ]
        );
        let text = TimeRun::format(&runs);
        assert_eq!(text, "2@5@p:1:2:0,2@5");
        assert_eq!(TimeRun::parse(&text, 4), Ok(runs.clone()));
        let long = Arc::new(ProducerWrite::parse(&format!("{}:1:2:0", "p".repeat(64))).expect("stamp"));
        let mut bounded = Runs::bounded(512);
        let mut time = i64::MIN;
        while bounded.add(u32::MAX, (time, Some(i64::MIN)), Some(long.clone())) {
            time += 1;
        }
        let fit = bounded.into_runs();
        assert!(!fit.is_empty() && TimeRun::format(&fit).len() <= MAX_RUNS_TEXT, "{}", fit.len());
        let mut one = Runs::bounded(1);
        assert!(
            one.add(2, (5, None), Some(stamp)) && !one.add(2, (5, None), None),
            "a stamped run is closed; one run at most"
        );
        assert_eq!(one.covered(), 2);
    }
}
