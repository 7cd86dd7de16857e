//! Where a read by position starts, and how that is resolved against a partition's records.

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// This offset: 410 before the retained start, 416 past the end (the end itself waits
    /// for the next record).
    Offset(u64),
    /// The first retained record (the default).
    Earliest,
    /// The end: only records appended from now on.
    Latest,
    /// The first record appended at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

impl Start {
    /// From the query's `offset` (`N`, `earliest`, `latest`) and `timestamp` values; at most one.
    pub fn parse(offset: Option<&str>, timestamp: Option<&str>) -> Result<Start, String> {
        match (offset, timestamp) {
            (Some(_), Some(_)) => Err("give offset or timestamp, not both".into()),
            (None, None) | (Some("earliest"), None) => Ok(Start::Earliest),
            (Some("latest"), None) => Ok(Start::Latest),
            (Some(n), None) => n
                .parse()
                .map(Start::Offset)
                .map_err(|_| format!("invalid offset '{n}': a non-negative whole number, earliest or latest")),
            (None, Some(ms)) => ms
                .parse::<i64>()
                .ok()
                .filter(|ms| *ms >= 0)
                .map(Start::Timestamp)
                .ok_or_else(|| format!("invalid timestamp '{ms}': milliseconds since the Unix epoch")),
        }
    }

    /// The query parameter that [`Start::parse`] reads back.
    pub fn to_query(self) -> String {
        match self {
            Start::Offset(n) => format!("offset={n}"),
            Start::Earliest => "offset=earliest".into(),
            Start::Latest => "offset=latest".into(),
            Start::Timestamp(ms) => format!("timestamp={ms}"),
        }
    }

    /// The offset to read from, given the partition's retained `start`, readable `end`, the
    /// end of the leader's log `held` (records up to it may be waiting for a majority: right
    /// after a failover, records readers saw already may be among them) and, for a time, the
    /// first offset at or after it (`at_time`, clamped into the bounds).
    pub fn resolve(self, start: u64, end: u64, held: u64, at_time: Option<u64>) -> Result<u64, ApiError> {
        match self {
            Start::Offset(offset) if offset > end.max(held) || offset < start => {
                Err(ApiError::OutOfRange { offset, start, end })
            }
            Start::Offset(offset) => Ok(offset),
            Start::Earliest => Ok(start),
            Start::Latest => Ok(end),
            Start::Timestamp(_) => Ok(at_time.unwrap_or(end).clamp(start, end)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_back_from_its_query() {
        for start in [Start::Offset(7), Start::Earliest, Start::Latest, Start::Timestamp(1_700_000_000_000)] {
            let query = start.to_query();
            let (name, value) = query.split_once('=').expect("name=value");
            let parsed =
                if name == "offset" { Start::parse(Some(value), None) } else { Start::parse(None, Some(value)) };
            assert_eq!(parsed, Ok(start));
        }
        assert_eq!(Start::parse(None, None), Ok(Start::Earliest));
        for (offset, timestamp) in [(Some("-1"), None), (Some("x"), None), (None, Some("-5")), (Some("1"), Some("2"))] {
            assert!(Start::parse(offset, timestamp).is_err(), "{offset:?} {timestamp:?}");
        }
    }

    #[test]
    fn offsets_outside_the_records_are_gone_or_not_yet_there() {
        let (start, end) = (10, 20);
        assert_eq!(Start::Offset(10).resolve(start, end, end, None).ok(), Some(10));
        assert_eq!(
            Start::Offset(20).resolve(start, end, end, None).ok(),
            Some(20),
            "the end waits for the next record"
        );
        let gone = Start::Offset(9).resolve(start, end, end, None).expect_err("before start");
        assert_eq!(gone.status(), axum::http::StatusCode::GONE);
        let ahead = Start::Offset(21).resolve(start, end, end, None).expect_err("past end");
        assert_eq!(ahead.status(), axum::http::StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(Start::Offset(22).resolve(start, end, 25, None).ok(), Some(22), "held, not yet readable: it waits");
        assert_eq!(Start::Earliest.resolve(start, end, end, None).ok(), Some(10));
        assert_eq!(Start::Latest.resolve(start, end, end, None).ok(), Some(20));
        assert_eq!(Start::Timestamp(5).resolve(start, end, end, Some(14)).ok(), Some(14));
        assert_eq!(Start::Timestamp(5).resolve(start, end, end, Some(3)).ok(), Some(10), "clamped to what is retained");
        assert_eq!(Start::Timestamp(5).resolve(start, end, end, Some(25)).ok(), Some(20), "and to what is readable");
    }
}
