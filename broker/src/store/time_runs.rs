//! Append times as they travel with copied records: runs of (records, time), since a batch's
//! records share one time. On the wire (a peer header) `count@ms,count@ms…`.

use super::StoredRecord;

/// `count` consecutive records appended at `timestamp_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRun {
    pub count: u32,
    pub timestamp_ms: i64,
}

impl TimeRun {
    /// The runs of `records` (in offset order).
    pub fn of(records: &[StoredRecord]) -> Vec<TimeRun> {
        let mut runs: Vec<TimeRun> = Vec::new();
        for record in records {
            match runs.last_mut() {
                Some(run) if run.timestamp_ms == record.timestamp_ms => run.count += 1,
                _ => runs.push(TimeRun { count: 1, timestamp_ms: record.timestamp_ms }),
            }
        }
        runs
    }

    pub fn format(runs: &[TimeRun]) -> String {
        runs.iter().map(|r| format!("{}@{}", r.count, r.timestamp_ms)).collect::<Vec<_>>().join(",")
    }

    /// Runs that cover exactly `records` records, or why not.
    pub fn parse(text: &str, records: usize) -> Result<Vec<TimeRun>, String> {
        let runs = text
            .split(',')
            .filter(|r| !r.is_empty())
            .map(|run| {
                let (count, time) = run.split_once('@').ok_or_else(|| format!("bad time run '{run}'"))?;
                let count = count.parse::<u32>().ok().filter(|c| *c > 0);
                match (count, time.parse::<i64>()) {
                    (Some(count), Ok(timestamp_ms)) => Ok(TimeRun { count, timestamp_ms }),
                    _ => Err(format!("bad time run '{run}'")),
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn runs_round_trip_and_must_cover_the_records() {
        let record = |offset, timestamp_ms| StoredRecord { offset, timestamp_ms, value: Bytes::new() };
        let runs = TimeRun::of(&[record(0, 5), record(1, 5), record(2, 9), record(3, 9), record(4, 12)]);
        assert_eq!(runs.iter().map(|r| (r.count, r.timestamp_ms)).collect::<Vec<_>>(), vec![(2, 5), (2, 9), (1, 12)]);
        let text = TimeRun::format(&runs);
        assert_eq!(text, "2@5,2@9,1@12");
        assert_eq!(TimeRun::parse(&text, 5), Ok(runs));
        for (bad, records) in [("2@5", 3), ("x@5", 1), ("0@5", 0), ("1@y", 1), ("15", 1)] {
            assert!(TimeRun::parse(bad, records).is_err(), "{bad}");
        }
    }
}
