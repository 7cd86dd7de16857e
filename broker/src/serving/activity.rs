//! Whether a connection is idle: requests in flight, and when the last one ended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::Instant;

pub(super) struct Activity {
    in_flight: AtomicUsize,
    /// When the connection was opened or its last request ended.
    last_end: Mutex<Instant>,
    changed: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Activity { in_flight: AtomicUsize::new(0), last_end: Mutex::new(Instant::now()), changed: Notify::new() }
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
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// When the connection will have been idle long enough to close, if no request is in flight.
    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.last_end.lock().unwrap_or_else(|p| p.into_inner()) + idle)
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
        let idle = Duration::from_secs(10);
        let opened = Instant::now();
        assert_eq!(activity.idle_deadline(idle), Some(opened + idle));
        let request = activity.begin();
        assert_eq!(activity.idle_deadline(idle), None);
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(request);
        assert_eq!(activity.idle_deadline(idle), Some(opened + Duration::from_secs(30) + idle));
    }
}
