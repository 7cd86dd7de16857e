//! Tokens revoked before their expiry (SPEC §13), kept in the replicated state so every broker
//! refuses them without asking another.
//!
//! Invariants: at most [`MAX_REVOKED_TOKENS`] entries; an entry whose token has expired is
//! dropped at the next revocation (an expired token is refused anyway); every broker prunes at
//! the same log entry with the same clock (the proposer's, carried in the command), so all hold
//! the same list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Revocations kept at most. A constant, not a setting: every broker must refuse the same
/// revocation when the list is full, or their states would differ. About 150 bytes each.
pub const MAX_REVOKED_TOKENS: usize = 10_000;

/// Token id (`jti`) → until when (seconds since the Unix epoch) it must be refused: the
/// token's `exp`, or `u64::MAX` when the revoker did not know it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations(BTreeMap<String, u64>);

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Revoked {
    /// The token is refused from now on (also when it already was).
    Yes,
    /// The list is full of unexpired revocations: nothing changed.
    ListFull,
}

impl Revocations {
    /// Revokes `id` until `until`, first dropping revocations expired at `now` (seconds).
    pub fn revoke(&mut self, id: String, until: u64, now: u64) -> Revoked {
        self.0.retain(|_, until| *until >= now);
        if let Some(kept) = self.0.get_mut(&id) {
            *kept = (*kept).max(until);
            return Revoked::Yes;
        }
        if self.0.len() >= MAX_REVOKED_TOKENS {
            return Revoked::ListFull;
        }
        self.0.insert(id, until);
        Revoked::Yes
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_revocations_make_room_and_a_full_list_refuses_the_next() {
        let mut list = Revocations::default();
        for i in 0..MAX_REVOKED_TOKENS {
            assert_eq!(list.revoke(format!("t{i}"), 100 + i as u64, 0), Revoked::Yes);
        }
        assert_eq!(list.revoke("late".into(), 1000, 0), Revoked::ListFull);
        assert!(!list.contains("late"));
        assert_eq!(list.revoke("t5".into(), 5000, 0), Revoked::Yes, "an id already there is kept, longer");
        // At 110, t0..t9 have expired (t5 was extended): nine places are free.
        assert_eq!(list.revoke("late".into(), 1000, 110), Revoked::Yes);
        assert_eq!(list.len(), MAX_REVOKED_TOKENS - 9 + 1);
        assert!(list.contains("t5") && list.contains("late") && !list.contains("t0"));
    }
}
