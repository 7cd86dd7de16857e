//! Whether a connection is idle: requests in flight, and when the last one ended.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;

pub(super) struct Activity {
    in_flight: AtomicUsize,
    /// A request has begun on this connection.
    used: AtomicBool,
    /// When the connection was opened or its last request ended.
    last_end: Mutex<Instant>,
    changed: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            used: AtomicBool::new(false),
            last_end: Mutex::new(Instant::now()),
            changed: Notify::new(),
        }
    }
}

/// One request in flight, until dropped.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Activity {
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.used.store(true, Ordering::Release);
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// When the connection will have been idle long enough to close, if no request is in
    /// flight: `idle` after its last request, `first` after its opening if none came yet (a
    /// connection that never sends a request is a head that never arrives).
    pub fn idle_deadline(&self, idle: Duration, first: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let wait = if self.used.load(Ordering::Acquire) { idle } else { first.min(idle) };
        Some(*self.last_end.lock().unwrap_or_else(|p| p.into_inner()) + wait)
    }

    /// Resolves when a request begins or ends (enable it before reading the state).
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_nothing_in_flight() {
        let activity = Arc::new(Activity::default());
        let (idle, first) = (Duration::from_secs(10), Duration::from_secs(2));
        let opened = Instant::now();
        assert_eq!(activity.idle_deadline(idle, first), Some(opened + first), "no request yet: the head's deadline");
        let request = activity.begin();
        assert_eq!(activity.idle_deadline(idle, first), None);
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(request);
        assert_eq!(activity.idle_deadline(idle, first), Some(opened + Duration::from_secs(30) + idle));
    }
}
