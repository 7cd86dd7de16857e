//! Tokens revoked before their expiry (SPEC §13), kept in the replicated state so every broker
//! refuses them without asking another.
//!
//! Invariants: at most [`MAX_REVOKED_TOKENS`] entries; an entry whose token has expired is
//! dropped at the next revocation (an expired token is refused anyway); every broker prunes at
//! the same log entry with the same clock (the proposers', carried in the commands, and never
//! going back: a proposer whose clock runs ahead cannot be undone by one behind), so all hold
//! the same list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Revocations kept at most. A constant, not a setting: every broker must refuse the same
/// revocation when the list is full, or their states would differ. About 150 bytes each.
pub const MAX_REVOKED_TOKENS: usize = 10_000;

/// How long a revocation whose token's expiry the revoker did not know is kept: a token meant to
/// live longer must be revoked with its expiry (`runnel token revoke TOKEN` reads it from the
/// token), or its key rotated.
pub const UNKNOWN_EXPIRY_KEPT_SECS: u64 = 366 * 24 * 3600;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// Token id (`jti`) → until when (seconds since the Unix epoch) it must be refused.
    tokens: BTreeMap<String, u64>,
    /// The latest proposer's clock seen (seconds since the Unix epoch).
    clock: u64,
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Revoked {
    /// The token is refused from now on (also when it already was).
    Yes,
    /// The list is full of unexpired revocations: nothing changed.
    ListFull,
}

impl Revocations {
    /// Revokes `id` until `until` (its expiry; `None`: unknown, kept a year), first dropping
    /// revocations expired at `now` (seconds).
    pub fn revoke(&mut self, id: String, until: Option<u64>, now: u64) -> Revoked {
        self.clock = self.clock.max(now);
        let now = self.clock;
        let until = until.unwrap_or(now.saturating_add(UNKNOWN_EXPIRY_KEPT_SECS));
        self.tokens.retain(|_, until| *until >= now);
        if let Some(kept) = self.tokens.get_mut(&id) {
            *kept = (*kept).max(until);
            return Revoked::Yes;
        }
        if self.tokens.len() >= MAX_REVOKED_TOKENS {
            return Revoked::ListFull;
        }
        self.tokens.insert(id, until);
        Revoked::Yes
    }

    pub fn contains(&self, id: &str) -> bool {
        self.tokens.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_revocations_make_room_and_a_full_list_refuses_the_next() {
        let mut list = Revocations::default();
        for i in 0..MAX_REVOKED_TOKENS {
            assert_eq!(list.revoke(format!("t{i}"), Some(100 + i as u64), 0), Revoked::Yes);
        }
        assert_eq!(list.revoke("late".into(), Some(1000), 0), Revoked::ListFull);
        assert!(!list.contains("late"));
        assert_eq!(list.revoke("t5".into(), Some(5000), 0), Revoked::Yes, "an id already there is kept, longer");
        // At 110, t0..t9 have expired (t5 was extended): nine places are free.
        assert_eq!(list.revoke("late".into(), Some(1000), 110), Revoked::Yes);
        assert_eq!(list.len(), MAX_REVOKED_TOKENS - 9 + 1);
        assert!(list.contains("t5") && list.contains("late") && !list.contains("t0"));
    }

    #[test]
    fn a_proposer_clock_behind_prunes_nothing_early_and_an_unknown_expiry_is_kept_a_year() {
        let mut list = Revocations::default();
        list.revoke("ahead".into(), Some(2000), 1000);
        // A proposer 900 s behind: its clock does not move the state's back.
        list.revoke("unknown".into(), None, 100);
        assert!(list.contains("ahead") && list.contains("unknown"));
        list.revoke("x".into(), Some(5000), 1000 + UNKNOWN_EXPIRY_KEPT_SECS);
        assert!(list.contains("unknown"), "kept for a year from the clock it was revoked at");
        list.revoke("y".into(), Some(5000), 1001 + UNKNOWN_EXPIRY_KEPT_SECS);
        assert!(!list.contains("unknown") && !list.contains("ahead"));
    }
}
