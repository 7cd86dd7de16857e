//! A byte budget: one class of buffers (produce bodies, reads, …) reserves from it before it
//! holds memory, and waits a bounded time when it is spent (back-pressure, not growth).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::log_every::LogEvery;

/// A class's bytes were all reserved for longer than the caller may wait: answer 503 with
/// `Retry-After`, the client tries again when memory is free.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the broker's {class} memory ({size} bytes) is in use: retry shortly")]
pub struct MemoryBusy {
    pub class: &'static str,
    pub size: usize,
}

/// Invariant: `in_use() <= size()`; every reserved byte is released when its
/// [`Reservation`] drops.
#[derive(Clone)]
pub struct Budget {
    class: &'static str,
    size: usize,
    free: Arc<Semaphore>,
    /// When a request was last refused (for readiness).
    last_refused: Arc<Mutex<Option<Instant>>>,
    refusals: Arc<LogEvery>,
}

/// Refusals of one class are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Bytes held from a [`Budget`] until dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Budget {
    /// A budget of `size` bytes (at least 1), named `class` in errors and metrics.
    pub fn new(class: &'static str, size: usize) -> Budget {
        let size = size.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Budget {
            class,
            size,
            free: Arc::new(Semaphore::new(size)),
            last_refused: Arc::default(),
            refusals: Arc::new(LogEvery::new(LOG_EVERY)),
        }
    }

    pub fn class(&self) -> &'static str {
        self.class
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn in_use(&self) -> usize {
        self.size - self.free.available_permits()
    }

    /// Reserves `bytes` (more than the whole budget reserves all of it), first come first
    /// served, waiting at most `wait`.
    pub async fn reserve(&self, bytes: usize, wait: Duration) -> Result<Reservation, MemoryBusy> {
        if bytes == 0 {
            return Ok(Reservation::none());
        }
        let wanted = self.permits(bytes);
        match tokio::time::timeout(wait, self.free.clone().acquire_many_owned(wanted)).await {
            Ok(Ok(permit)) => Ok(Reservation { permit: Some(permit) }),
            // The semaphore is never closed; a timeout is the only way here.
            Ok(Err(_)) | Err(_) => {
                *self.last_refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                self.refusals.note(|unlogged| {
                    tracing::warn!(class = self.class, size = self.size, refused_since_last_log = unlogged,
                        "memory budget in use: requests wait, then get 503 (raise RUNNEL_MEMORY_LIMIT if this persists)")
                });
                Err(self.busy())
            }
        }
    }

    /// A request was refused within `window`.
    pub fn refused_within(&self, window: Duration) -> bool {
        self.last_refused.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|at| at.elapsed() < window)
    }

    /// Reserves `bytes` only if they are free now.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        if bytes == 0 {
            return Some(Reservation::none());
        }
        self.free.clone().try_acquire_many_owned(self.permits(bytes)).ok().map(|p| Reservation { permit: Some(p) })
    }

    fn permits(&self, bytes: usize) -> u32 {
        bytes.min(self.size) as u32
    }

    fn busy(&self) -> MemoryBusy {
        MemoryBusy { class: self.class, size: self.size }
    }
}

impl Reservation {
    /// Holds nothing.
    pub fn none() -> Reservation {
        Reservation { permit: None }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Keeps `bytes` of this reservation and gives the rest back (a poll's response turned
    /// out smaller than what was reserved to build it).
    pub fn shrink_to(&mut self, bytes: usize) {
        if let Some(permit) = self.permit.as_mut() {
            let extra = permit.num_permits().saturating_sub(bytes);
            if extra > 0 {
                drop(permit.split(extra));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_makes_callers_wait_then_refuses_them() {
        let budget = Budget::new("produce", 100);
        let held = budget.reserve(80, Duration::from_secs(1)).await.expect("free");
        assert_eq!(budget.in_use(), 80);
        assert!(budget.try_reserve(30).is_none());
        assert!(!budget.refused_within(Duration::from_secs(5)));
        let refused = budget.reserve(30, Duration::from_secs(2)).await.expect_err("spent");
        assert_eq!(refused.class, "produce");
        assert!(budget.refused_within(Duration::from_secs(5)));

        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(30, Duration::from_secs(2)).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(held);
        let got = waiter.await.expect("task").expect("freed in time");
        assert_eq!((got.bytes(), budget.in_use()), (30, 30));
    }

    #[tokio::test]
    async fn more_than_the_budget_takes_all_of_it_and_shrinking_gives_back() {
        let budget = Budget::new("reads", 100);
        let mut all = budget.reserve(1000, Duration::from_secs(1)).await.expect("free");
        assert_eq!((all.bytes(), budget.in_use()), (100, 100));
        all.shrink_to(10);
        assert_eq!((all.bytes(), budget.in_use()), (10, 10));
        drop(all);
        assert_eq!(budget.in_use(), 0);
    }
}
