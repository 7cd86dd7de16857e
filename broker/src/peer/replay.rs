//! The nonces of accepted peer requests, so a captured request is refused when sent again.
//! A nonce only has to be remembered while its timestamp would still pass the skew check
//! ([`MAX_SKEW`] after it), so entries are forgotten in time order and the set stays small.

use std::collections::{HashSet, VecDeque};

use super::MAX_SKEW;

/// At most this many nonces are remembered (about 33 MiB at the bound: 2^20 slots of 17 bytes
/// in the set, 32 bytes an entry in the queue). An entry lives at most 2 × [`MAX_SKEW`] (a request
/// stamped 30 s ahead is remembered until 30 s after its stamp), so the bound is reached only
/// above ~8,700 peer requests a second into one broker, several times what replication,
/// forwarded produces and Raft send at full load. Beyond it, requests are refused (503, the
/// sender retries) rather than remembered without bound or accepted unchecked.
pub const MAX_NONCES: usize = 1 << 19;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The nonce was accepted before: a replay.
    Replayed,
    /// [`MAX_NONCES`] are remembered and none can be forgotten yet.
    Full,
}

#[derive(Default)]
pub struct NonceCache {
    seen: HashSet<u128>,
    /// (when the entry may be forgotten, ms; nonce), in the order of acceptance.
    order: VecDeque<(u64, u128)>,
}

impl NonceCache {
    /// Accepts `nonce` of a request stamped `time_ms` (already checked to be within the skew
    /// of `now_ms`) unless it was accepted before.
    pub fn admit(&mut self, nonce: u128, time_ms: u64, now_ms: u64) -> Result<(), Refusal> {
        self.forget_until(now_ms);
        if self.seen.contains(&nonce) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= MAX_NONCES {
            return Err(Refusal::Full);
        }
        self.seen.insert(nonce);
        self.order.push_back((time_ms + MAX_SKEW.as_millis() as u64, nonce));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Drops the entries, oldest accepted first, whose timestamps no longer pass the skew check.
    /// An entry stamped later than one accepted after it waits for that one: every entry is
    /// still gone 2 × MAX_SKEW after its acceptance.
    fn forget_until(&mut self, now_ms: u64) {
        while let Some(&(forget_at, nonce)) = self.order.front() {
            if forget_at >= now_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&nonce);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_nonce_is_refused_again_until_its_timestamp_is_stale() {
        let mut cache = NonceCache::default();
        assert_eq!(cache.admit(1, NOW, NOW), Ok(()));
        assert_eq!(cache.admit(2, NOW, NOW), Ok(()));
        assert_eq!(cache.admit(1, NOW, NOW + 1000), Err(Refusal::Replayed));
        let stale = NOW + MAX_SKEW.as_millis() as u64 + 1;
        // By then a request stamped NOW fails the skew check, so its nonce can be forgotten.
        assert_eq!(cache.admit(3, stale, stale), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_set_is_bounded() {
        let mut cache = NonceCache::default();
        for nonce in 0..MAX_NONCES as u128 {
            assert_eq!(cache.admit(nonce, NOW, NOW), Ok(()));
        }
        assert_eq!(cache.admit(u128::MAX, NOW, NOW), Err(Refusal::Full));
        let later = NOW + 2 * MAX_SKEW.as_millis() as u64;
        assert_eq!(cache.admit(u128::MAX, later, later), Ok(()));
        assert_eq!(cache.len(), 1);
    }
}
