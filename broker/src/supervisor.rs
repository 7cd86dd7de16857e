//! The broker's long-running tasks. Each is meant to run until the broker stops; one that
//! ends before (it returned, or panicked) leaves the broker half-working while `/status` says
//! 200, so it is reported and the broker fails instead.

use std::future::Future;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub struct Supervisor {
    handles: Vec<JoinHandle<()>>,
    stopped: watch::Receiver<bool>,
    report: mpsc::UnboundedSender<String>,
    failures: mpsc::UnboundedReceiver<String>,
}

impl Supervisor {
    /// Tasks that count as stopping on purpose once `stopped` turns true.
    pub fn new(stopped: watch::Receiver<bool>) -> Supervisor {
        let (report, failures) = mpsc::unbounded_channel();
        Supervisor { handles: Vec::new(), stopped, report, failures }
    }

    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let task = tokio::spawn(task);
        let stopped = self.stopped.clone();
        let report = self.report.clone();
        self.handles.push(tokio::spawn(async move {
            let outcome = task.await;
            if *stopped.borrow() {
                return;
            }
            let what = match outcome {
                Ok(()) => format!("background task '{name}' ended while the broker was running"),
                Err(e) => format!("background task '{name}' failed: {e}"),
            };
            tracing::error!("{what}");
            let _ = report.send(what);
        }));
    }

    /// Resolves with the first task that ended before the broker stopped.
    pub async fn failure(&mut self) -> String {
        self.failures.recv().await.unwrap_or_else(|| "the supervisor closed".into())
    }

    /// Waits for every task (after `stopped` turned true).
    pub async fn join(self) {
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_or_ends_early_is_reported_and_one_stopped_on_purpose_is_not() {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Supervisor::new(stopped.clone());
        tasks.spawn("retention", async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            panic!("interval of zero");
        });
        let failure = tasks.failure().await;
        assert!(failure.contains("'retention' failed"), "{failure}");

        tasks.spawn("controller", async {});
        assert!(tasks.failure().await.contains("'controller' ended"));

        let mut until_stop = stopped.clone();
        tasks.spawn("listener", async move {
            let _ = until_stop.wait_for(|s| *s).await;
        });
        let _ = stop.send(true);
        let quiet = tokio::time::timeout(Duration::from_secs(5), tasks.failure()).await;
        assert!(quiet.is_err(), "a task stopped on purpose is no failure: {quiet:?}");
        tasks.join().await;
    }
}
