//! Small files that must be replaced atomically and durably (vote, purge mark, snapshot), and
//! how Raft's writes wait out a full disk.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::is_out_of_space;

/// How often a Raft write that found the disk full tries again.
const SPACE_RETRY: Duration = Duration::from_secs(1);
/// How often a wait for space that goes on is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What Raft's writes on a full disk share: the shutdown that ends their wait, and how many
/// are waiting (for readiness: openraft's own metrics freeze while its core waits in a write).
#[derive(Clone)]
pub struct SpaceWait {
    pub stop: watch::Receiver<bool>,
    waiting: Arc<AtomicUsize>,
}

impl SpaceWait {
    pub fn new(stop: watch::Receiver<bool>) -> SpaceWait {
        SpaceWait { stop, waiting: Arc::default() }
    }

    /// A Raft write is waiting for disk space now.
    pub fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }
}

/// Writes `bytes` to `path` so that after a crash the file holds either the old or the new
/// content: temp file, fsync, rename, fsync the directory.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written {
        // Gives back the space a partial write took.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// The file's content, or None when it does not exist.
pub fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `attempt` until it succeeds or fails for another reason than a full disk. openraft
/// stops for good on any storage error, so a write that found no room waits for space
/// instead (Raft stalls, then resumes), trying again every [`SPACE_RETRY`]; an attempt must
/// leave things as they were when it fails. Once `stop` is set (shutdown) the last error is
/// returned.
pub async fn write_when_space<T, F, A>(what: &'static str, wait: &SpaceWait, attempt: A) -> std::io::Result<T>
where
    A: Fn() -> F,
    F: std::future::Future<Output = std::io::Result<T>>,
{
    let mut waiting: Option<(Instant, Instant)> = None;
    loop {
        match attempt().await {
            Err(e) if is_out_of_space(&e) && !*wait.stop.borrow() => {
                let now = Instant::now();
                match &mut waiting {
                    None => {
                        tracing::warn!("the disk is full: Raft waits for space to write its {what} ({e})");
                        wait.waiting.fetch_add(1, Ordering::Relaxed);
                        waiting = Some((now, now));
                    }
                    Some((since, logged)) if logged.elapsed() >= LOG_EVERY => {
                        tracing::warn!(
                            waited_s = since.elapsed().as_secs(),
                            "the disk is still full: Raft waits to write its {what}"
                        );
                        *logged = now;
                    }
                    Some(_) => {}
                }
                let mut stop = wait.stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(SPACE_RETRY) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
            result => {
                if waiting.is_some() {
                    wait.waiting.fetch_sub(1, Ordering::Relaxed);
                }
                if let (Some((since, _)), Ok(_)) = (waiting, &result) {
                    tracing::info!(
                        waited_ms = since.elapsed().as_millis() as u64,
                        "Raft wrote its {what} once space was freed"
                    );
                }
                return result;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_on_a_full_disk_waits_is_counted_and_resumes() {
        let stop = watch::channel(false);
        let wait = SpaceWait::new(stop.1.clone());
        let tries = Arc::new(AtomicU32::new(0));
        let attempt = {
            let tries = tries.clone();
            move || {
                let tries = tries.clone();
                async move {
                    match tries.fetch_add(1, Ordering::Relaxed) {
                        0 | 1 => Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
                        _ => Ok("written"),
                    }
                }
            }
        };
        let writer = {
            let wait = wait.clone();
            tokio::spawn(async move { write_when_space("test", &wait, attempt).await })
        };
        tokio::time::sleep(SPACE_RETRY / 2).await;
        assert!(wait.is_waiting(), "the wait is visible while the disk is full");
        assert_eq!(writer.await.expect("task").expect("written once space came back"), "written");
        assert!(!wait.is_waiting());
        assert_eq!(tries.load(Ordering::Relaxed), 3);
    }
}
