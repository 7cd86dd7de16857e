//! Small files that must be replaced atomically and durably (vote, purge mark, snapshot), and
//! how Raft's writes wait out a full disk.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::is_out_of_space;

/// How often a Raft write that found the disk full tries again.
const SPACE_RETRY: Duration = Duration::from_secs(1);
/// How often a wait for space that goes on is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

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
pub async fn write_when_space<T, F, A>(
    what: &'static str,
    stop: &watch::Receiver<bool>,
    attempt: A,
) -> std::io::Result<T>
where
    A: Fn() -> F,
    F: std::future::Future<Output = std::io::Result<T>>,
{
    let mut waiting: Option<(Instant, Instant)> = None;
    loop {
        match attempt().await {
            Err(e) if is_out_of_space(&e) && !*stop.borrow() => {
                let now = Instant::now();
                match &mut waiting {
                    None => {
                        tracing::warn!("the disk is full: Raft waits for space to write its {what} ({e})");
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
                let mut stop = stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(SPACE_RETRY) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            }
            result => {
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
