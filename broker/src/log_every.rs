//! Logging a repeating condition (refused connections, refused peer requests, memory or open
//! files running out) at
//! most once per interval, with how many occurrences were not logged, so a flood of
//! requests cannot flood the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogEvery {
    every: Duration,
    /// When it was last logged, and how many occurrences since were not.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogEvery {
    pub const fn new(every: Duration) -> LogEvery {
        LogEvery { every, state: Mutex::new((None, 0)) }
    }

    /// Calls `log` with the number of occurrences not logged since the last call, if the
    /// interval has passed; otherwise only counts this one.
    pub fn note(&self, log: impl FnOnce(u64)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0.is_some_and(|at| at.elapsed() < self.every) {
            state.1 += 1;
            return;
        }
        let unlogged = std::mem::take(&mut state.1);
        state.0 = Some(Instant::now());
        drop(state);
        log(unlogged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_counts_the_rest() {
        let log = LogEvery::new(Duration::from_secs(3600));
        let mut logged = Vec::new();
        for _ in 0..5 {
            log.note(|unlogged| logged.push(unlogged));
        }
        assert_eq!(logged, vec![0]);
        let now = LogEvery::new(Duration::ZERO);
        now.note(|_| {});
        now.note(|unlogged| logged.push(unlogged));
        assert_eq!(logged, vec![0, 0]);
    }
}
