//! Free space on the store's filesystem. A background task measures it once a second
//! (statvfs), so the write path only reads an atomic. Below the reserve, produces and
//! replicated copies are refused early (507), which keeps room for what must still be
//! written: the Raft log (consumer registrations and commits) and metadata. The condition
//! is logged when it starts, once a minute while it lasts (with the writes refused since the
//! last line), and when it ends; never per request.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::size::parse_size;

/// How often free space is measured.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How often a lasting shortage of space is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);
const AUTO_BYTES: u64 = 256 * 1024 * 1024;
const AUTO_PERCENT: u64 = 5;

/// Whether an I/O error means the filesystem (or the user's quota) has no room left: such a
/// write can succeed once space is freed, unlike a failing disk.
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Free space kept back from produces (`RUNNEL_DISK_RESERVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskReserve {
    /// 256 MiB or 5% of the filesystem, whichever is smaller (so a small volume is not all reserve).
    Auto,
    Bytes(u64),
    /// A share of the filesystem's size, 0 to 50.
    Percent(u64),
}

impl DiskReserve {
    /// Reads `auto`, a byte count with an optional `KiB`/`MiB`/`GiB`/`TiB` suffix, or `N%`.
    pub fn parse(value: &str) -> Result<DiskReserve, String> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("auto") {
            return Ok(DiskReserve::Auto);
        }
        if let Some(percent) = value.strip_suffix('%') {
            return match percent.trim().parse::<u64>() {
                Ok(p) if p <= 50 => Ok(DiskReserve::Percent(p)),
                _ => Err(format!("{value}: a share must be between 0% and 50%")),
            };
        }
        parse_size(value).map(DiskReserve::Bytes).map_err(|e| format!("{e}; or auto, 5%, 0"))
    }

    /// The reserve in bytes on a filesystem of `total` bytes.
    pub fn bytes_of(self, total: u64) -> u64 {
        match self {
            DiskReserve::Auto => AUTO_BYTES.min(total / 100 * AUTO_PERCENT),
            DiskReserve::Bytes(bytes) => bytes,
            DiskReserve::Percent(percent) => total / 100 * percent,
        }
    }
}

impl std::str::FromStr for DiskReserve {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        DiskReserve::parse(value)
    }
}

/// What is known about the filesystem's free space; clones share it.
#[derive(Clone)]
pub struct DiskSpace {
    inner: Arc<Space>,
}

struct Space {
    dir: PathBuf,
    reserve: DiskReserve,
    free: AtomicU64,
    reserve_bytes: AtomicU64,
    /// Writes refused for lack of space since the condition was last logged.
    refused: AtomicU64,
    /// Partitions holding records they could not write for lack of space.
    stalled: AtomicU64,
}

/// Bytes available to the broker and the filesystem's size.
fn statvfs(dir: &Path) -> std::io::Result<(u64, u64)> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `path` is a valid C string and `stat` a plain struct statvfs fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = stat.f_frsize as u64;
    // f_bavail, not f_bfree: blocks kept for root are not the broker's to count on.
    Ok((stat.f_bavail as u64 * unit, stat.f_blocks as u64 * unit))
}

impl DiskSpace {
    /// Measures the filesystem holding `dir` now.
    pub fn measure(dir: &Path, reserve: DiskReserve) -> std::io::Result<DiskSpace> {
        let space = DiskSpace {
            inner: Arc::new(Space {
                dir: dir.to_path_buf(),
                reserve,
                free: AtomicU64::new(0),
                reserve_bytes: AtomicU64::new(0),
                refused: AtomicU64::new(0),
                stalled: AtomicU64::new(0),
            }),
        };
        space.refresh()?;
        Ok(space)
    }

    fn refresh(&self) -> std::io::Result<()> {
        let (free, total) = statvfs(&self.inner.dir)?;
        self.inner.free.store(free, Ordering::Relaxed);
        self.inner.reserve_bytes.store(self.inner.reserve.bytes_of(total), Ordering::Relaxed);
        Ok(())
    }

    /// Free bytes at the last measurement (at most [`REFRESH`] old), less what was appended since.
    pub fn free_bytes(&self) -> u64 {
        self.inner.free.load(Ordering::Relaxed)
    }

    pub fn reserve_bytes(&self) -> u64 {
        self.inner.reserve_bytes.load(Ordering::Relaxed)
    }

    /// Free space is below the reserve: produces and replicated copies are refused.
    pub fn below_reserve(&self) -> bool {
        self.free_bytes() < self.reserve_bytes()
    }

    /// The store cannot take writes for lack of space: below the reserve, or a partition
    /// waits to finish a write that found the disk full (readiness reports this).
    pub fn disk_full(&self) -> bool {
        self.below_reserve() || self.inner.stalled.load(Ordering::Relaxed) > 0
    }

    /// Takes `bytes` about to be written off the free space until the next measurement, so a
    /// burst of appends within one [`REFRESH`] cannot run past the reserve.
    pub(super) fn set_aside(&self, bytes: u64) {
        let _ = self.inner.free.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| Some(f.saturating_sub(bytes)));
    }

    /// Counts a write refused for lack of space (reported in the next log line).
    pub(super) fn count_refusal(&self) {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A partition starts (`true`) or stops waiting for space to finish a write.
    pub(super) fn set_stalled(&self, stalled: bool) {
        if stalled {
            self.inner.stalled.fetch_add(1, Ordering::Relaxed);
        } else {
            self.inner.stalled.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Measures every [`REFRESH`] and logs the condition (see the module comment) while
    /// `running()` says so.
    pub(super) async fn watch(self, running: impl Fn() -> bool) {
        let mut logged: Option<Instant> = None;
        while running() {
            tokio::time::sleep(REFRESH).await;
            if let Err(e) = self.refresh() {
                tracing::debug!(dir = %self.inner.dir.display(), "cannot measure free space: {e}");
            }
            let full = self.disk_full();
            let due = logged.is_none_or(|at| at.elapsed() >= LOG_EVERY);
            let (free, reserve) = (self.free_bytes(), self.reserve_bytes());
            let stalled = self.inner.stalled.load(Ordering::Relaxed);
            if full && due {
                let refused = self.inner.refused.swap(0, Ordering::Relaxed);
                tracing::warn!(free_bytes = free, reserve_bytes = reserve, stalled_partitions = stalled, refused,
                    "the disk is (nearly) full: produces get 507 until space is freed (refused: writes refused since the last such line)");
                logged = Some(Instant::now());
            } else if !full && logged.is_some() {
                let refused = self.inner.refused.swap(0, Ordering::Relaxed);
                tracing::info!(
                    free_bytes = free,
                    reserve_bytes = reserve,
                    refused,
                    "disk space is back: produces are accepted again"
                );
                logged = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_parse_and_resolve() {
        let total = 100 * 1024 * 1024 * 1024u64;
        assert_eq!(DiskReserve::parse("auto").map(|r| r.bytes_of(total)), Ok(256 << 20));
        assert_eq!(DiskReserve::Auto.bytes_of(1000 << 20), 50 << 20, "5% of a small volume");
        assert_eq!(DiskReserve::parse("1GiB"), Ok(DiskReserve::Bytes(1 << 30)));
        assert_eq!(DiskReserve::parse("4096"), Ok(DiskReserve::Bytes(4096)));
        assert_eq!(DiskReserve::parse("0"), Ok(DiskReserve::Bytes(0)));
        assert_eq!(DiskReserve::parse("10%").map(|r| r.bytes_of(1000)), Ok(100));
        for bad in ["", "lots", "5MB", "60%", "-1", "99999999999999TiB"] {
            assert!(DiskReserve::parse(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn measures_the_filesystem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let space = DiskSpace::measure(dir.path(), DiskReserve::Bytes(u64::MAX)).expect("statvfs");
        assert!(space.free_bytes() > 0);
        assert!(space.below_reserve() && space.disk_full());
        let roomy = DiskSpace::measure(dir.path(), DiskReserve::Bytes(0)).expect("statvfs");
        assert!(!roomy.disk_full());
    }
}
