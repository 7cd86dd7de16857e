//! When each consumer last made a request to this broker, for the inactivity timeout.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Activity {
    last_seen: Mutex<HashMap<String, Instant>>,
    /// Consumers seen since the last report to the Raft leader (which decides timeouts).
    unreported: Mutex<HashSet<String>>,
}

impl Activity {
    pub fn touch(&self, consumer_id: &str) {
        self.unreported.lock().unwrap_or_else(|p| p.into_inner()).insert(consumer_id.to_string());
        self.seen(consumer_id);
    }

    /// Records a request that another broker reported.
    pub fn seen(&self, consumer_id: &str) {
        let mut seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(consumer_id) {
            Some(at) => *at = Instant::now(),
            None => {
                seen.insert(consumer_id.to_string(), Instant::now());
            }
        }
    }

    /// Consumers seen here since the previous call.
    pub fn take_unreported(&self) -> Vec<String> {
        std::mem::take(&mut *self.unreported.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect()
    }

    /// Consumers whose last request is remembered.
    pub fn len(&self) -> usize {
        self.last_seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn forget(&self, consumer_id: &str) {
        self.last_seen.lock().unwrap_or_else(|p| p.into_inner()).remove(consumer_id);
    }

    /// Of `registered`, those idle for longer than `timeout`. A consumer this broker has not
    /// seen yet (it just restarted, or the consumer registered elsewhere) starts its clock now,
    /// so a restart never expires everybody at once.
    pub fn expired<'a>(&self, registered: impl Iterator<Item = &'a str>, timeout: Duration) -> Vec<String> {
        let mut seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut live = HashMap::new();
        let mut expired = Vec::new();
        for id in registered {
            let at = seen.get(id).copied().unwrap_or(now);
            if now.duration_since(at) > timeout {
                expired.push(id.to_string());
            } else {
                live.insert(id.to_string(), at);
            }
        }
        *seen = live;
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_consumers_expire_and_active_ones_stay() {
        let activity = Activity::default();
        activity.touch("idle");
        std::thread::sleep(Duration::from_millis(30));
        activity.touch("busy");
        let expired = activity.expired(["idle", "busy", "new"].into_iter(), Duration::from_millis(20));
        assert_eq!(expired, vec!["idle".to_string()]);
        assert!(activity.expired(["busy", "new"].into_iter(), Duration::from_secs(60)).is_empty());
    }
}
