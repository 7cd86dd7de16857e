//! The shape of the background work a partition's leader does when Raft's state changes
//! (taking a partition over, sealing it, moving its copies): for each (partition, epoch) that
//! is due, one task at a time; looked at again on every change of Raft's state (a watch, not
//! a timer) and after a failed attempt's pause.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::consensus::RaftChanges;

/// Pause after a failed attempt before the partition is looked at again.
const RETRY: Duration = Duration::from_millis(200);

/// Runs `work` for every (partition, epoch) `due` lists, until `stop` fires. A failure is
/// logged with `what` and tried again after [`RETRY`].
pub(super) async fn for_each_due<F>(
    what: &'static str,
    mut changes: RaftChanges,
    mut stop: watch::Receiver<bool>,
    due: impl Fn() -> Vec<(u32, u64)>,
    work: impl Fn(u32, u64) -> F,
) where
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let running: Arc<Mutex<BTreeSet<(u32, u64)>>> = Arc::default();
    let retry = Arc::new(Notify::new());
    loop {
        for (partition, epoch) in due() {
            if !running.lock().unwrap_or_else(|p| p.into_inner()).insert((partition, epoch)) {
                continue;
            }
            let attempt = work(partition, epoch);
            let (running, retry) = (running.clone(), retry.clone());
            tokio::spawn(async move {
                let failed = match attempt.await {
                    Ok(()) => false,
                    Err(reason) => {
                        tracing::warn!(partition, epoch, "cannot {what} yet: {reason}");
                        tokio::time::sleep(RETRY).await;
                        true
                    }
                };
                running.lock().unwrap_or_else(|p| p.into_inner()).remove(&(partition, epoch));
                if failed {
                    retry.notify_one();
                }
            });
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = retry.notified() => {}
            _ = stop.changed() => return,
        }
    }
}
