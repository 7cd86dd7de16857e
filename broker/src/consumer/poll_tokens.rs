//! Retry-safe polls (SPEC §10). Every poll response with records carries a token. A poll that
//! acknowledges the token of the consumer's last response here commits what that response
//! reached, as a v1 poll does; one that acknowledges the token before it (the last response
//! was lost on its way) reads the last response's records again, from the same starts in the
//! same partition order, and commits nothing past them. So a lost response is never committed
//! unread.
//!
//! A client that has processed nothing from this broker yet acknowledges `none`: its last
//! response here, if there was one, was lost too, and is read again (a v1 poll, with no `ack`,
//! would commit it).
//!
//! Tokens name this broker's incarnation: after a restart (the cursors are gone) an older token
//! is unknown, and so is any token but the last two, whatever the reason: the consumer's
//! positions here then restart from the group's committed offsets (at least once, never a skip).
//!
//! State: one entry per consumer that polled here with records, of the partitions its last
//! response read; entries of consumers no longer registered are dropped as they poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::assignment::TopicPartition;
use crate::error::ApiError;

/// The `ack` of a client that uses tokens and has processed no response of this broker yet.
pub const NONE: &str = "none";

/// A token's incarnation and number, `none` as None, or 400 for what no poll answered (a
/// commit or goodbye refuses such an `ack` too, rather than commit less than the client meant).
pub fn parse(token: &str) -> Result<Option<(u64, u64)>, ApiError> {
    if token == NONE {
        return Ok(None);
    }
    let malformed =
        || ApiError::BadRequest(format!("invalid ack '{token}': send the Poll-Token header of a poll response"));
    // Lowercase hex digits only, as issued: the split below falls between two of them, and a
    // commit's acks compare as text.
    if token.len() != 32 || !token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(malformed());
    }
    let (incarnation, number) = token.split_at(16);
    let hex = |digits: &str| u64::from_str_radix(digits, 16).map_err(|_| malformed());
    Ok(Some((hex(incarnation)?, hex(number)?)))
}

/// Refuses a commit's or goodbye's `ack`s unless each is one [`parse`] takes.
pub fn check(acks: &[String]) -> Result<(), ApiError> {
    acks.iter().try_for_each(|ack| parse(ack).map(drop))
}

/// What a poll's `ack` asks of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Commit what the consumer's last response here reached, and read on (the v1 auto-commit,
    /// and an acknowledgement of the last response).
    Last,
    /// The last response was lost: read it again, from these starts, in this partition turn.
    Repeat { starts: Vec<(TopicPartition, u64)>, turn: usize },
    /// A token this broker does not know (any more): commit nothing, restart from the
    /// group's committed offsets.
    Unknown,
}

/// The consumer's last response here, and the token before it.
struct LastResponse {
    token: u64,
    previous: Option<u64>,
    /// Where each partition of the response started.
    starts: Vec<(TopicPartition, u64)>,
    turn: usize,
}

pub struct PollTokens {
    incarnation: u64,
    issued: AtomicU64,
    last: Mutex<HashMap<String, LastResponse>>,
}

impl Default for PollTokens {
    fn default() -> Self {
        // Only uniqueness across restarts matters: the clock does when the OS source fails.
        let incarnation = getrandom::u64().unwrap_or_else(|_| crate::peer::now_ms() ^ u64::from(std::process::id()));
        PollTokens { incarnation, issued: AtomicU64::new(0), last: Mutex::default() }
    }
}

impl PollTokens {
    fn last(&self) -> std::sync::MutexGuard<'_, HashMap<String, LastResponse>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `token` (None: a v1 poll) asks of `consumer`'s positions, and the token it
    /// acknowledges, to be the next response's previous one.
    pub fn judge(&self, consumer: &str, token: Option<&str>) -> Result<(Ack, Option<u64>), ApiError> {
        let last = self.last();
        let Some(token) = token else { return Ok((Ack::Last, last.get(consumer).map(|l| l.token))) };
        let Some((incarnation, seq)) = parse(token)? else {
            return Ok(match last.get(consumer) {
                Some(l) => (Ack::Repeat { starts: l.starts.clone(), turn: l.turn }, None),
                None => (Ack::Last, None),
            });
        };
        if incarnation != self.incarnation {
            return Ok((Ack::Unknown, None));
        }
        Ok(match last.get(consumer) {
            Some(l) if l.token == seq => (Ack::Last, Some(seq)),
            Some(l) if l.previous == Some(seq) => (Ack::Repeat { starts: l.starts.clone(), turn: l.turn }, Some(seq)),
            _ => (Ack::Unknown, None),
        })
    }

    /// What a commit or goodbye carrying `acks` (the tokens of the responses the consumer
    /// processed, any broker's) may commit of `consumer`'s positions here: everything (None)
    /// for a v1 consumer (no acks) and when this broker's last response is acknowledged;
    /// otherwise that response was not processed, and its partitions only up to where it started.
    pub fn caps(&self, consumer: &str, acks: &[String]) -> Option<Vec<(TopicPartition, u64)>> {
        if acks.is_empty() {
            return None;
        }
        let last = self.last();
        let last = last.get(consumer)?;
        let mine = format!("{:016x}{:016x}", self.incarnation, last.token);
        (!acks.contains(&mine)).then(|| last.starts.clone())
    }

    /// Records a response of `consumer` that read `starts` in `turn` and answers its token.
    pub fn issue(
        &self,
        consumer: &str,
        previous: Option<u64>,
        starts: Vec<(TopicPartition, u64)>,
        turn: usize,
    ) -> String {
        let token = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        self.last().insert(consumer.to_string(), LastResponse { token, previous, starts, turn });
        format!("{:016x}{token:016x}", self.incarnation)
    }

    /// Drops the entries of consumers `keep` says are gone.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.last().retain(|consumer, _| keep(consumer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: u32) -> TopicPartition {
        TopicPartition { topic: "t".into(), partition: p }
    }

    #[test]
    fn the_last_token_commits_the_one_before_repeats_and_others_are_unknown() {
        let tokens = PollTokens::default();
        assert_eq!(tokens.judge("c", None).expect("v1"), (Ack::Last, None));
        assert_eq!(tokens.judge("c", Some(NONE)).expect("none"), (Ack::Last, None), "nothing sent yet");
        let first = tokens.issue("c", None, vec![(tp(0), 0)], 0);
        // The first response was lost: a client that processed nothing reads it again.
        let (ack, acked) = tokens.judge("c", Some(NONE)).expect("none");
        assert_eq!((ack, acked), (Ack::Repeat { starts: vec![(tp(0), 0)], turn: 0 }, None));
        let (ack, acked) = tokens.judge("c", Some(&first)).expect("known");
        assert_eq!(ack, Ack::Last);
        let second = tokens.issue("c", acked, vec![(tp(0), 5), (tp(1), 2)], 3);
        // The second response was lost: acknowledging the first reads it again.
        let (ack, acked) = tokens.judge("c", Some(&first)).expect("known");
        assert_eq!(ack, Ack::Repeat { starts: vec![(tp(0), 5), (tp(1), 2)], turn: 3 });
        let again = tokens.issue("c", acked, vec![(tp(0), 5), (tp(1), 2)], 3);
        assert_ne!(again, second);
        assert!(matches!(tokens.judge("c", Some(&first)).expect("known").0, Ack::Repeat { .. }), "lost twice");
        assert_eq!(tokens.judge("c", Some(&second)).expect("known").0, Ack::Unknown, "superseded");
        assert_eq!(tokens.judge("other", Some(&again)).expect("known").0, Ack::Unknown, "another consumer's");
        let restarted = PollTokens::default();
        assert_eq!(restarted.judge("c", Some(&again)).expect("known").0, Ack::Unknown, "an earlier incarnation's");
        let multibyte = format!("a{}b", "é".repeat(15));
        for bad in [
            "",
            "xyz",
            &again[..31],
            &format!("{}g", &again[..31]),
            &multibyte,
            &format!("+{}", &again[1..]),
            "ABCDEF0123456789ABCDEF0123456789",
        ] {
            assert!(tokens.judge("c", Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(tokens.caps("c", &[]), None, "a v1 commit takes every position");
        assert_eq!(tokens.caps("c", &[first.clone(), again.clone()]), None, "the last response was processed");
        assert_eq!(tokens.caps("c", std::slice::from_ref(&first)), Some(vec![(tp(0), 5), (tp(1), 2)]), "it was not");
        assert_eq!(
            tokens.caps("new", std::slice::from_ref(&first)),
            None,
            "no response here: nothing read past the commit"
        );
        assert_eq!(tokens.caps("c", &[NONE.to_string()]), Some(vec![(tp(0), 5), (tp(1), 2)]), "nothing processed");
        tokens.retain(|c| c != "c");
        assert_eq!(tokens.judge("c", Some(&again)).expect("known").0, Ack::Unknown, "forgotten");
    }
}
