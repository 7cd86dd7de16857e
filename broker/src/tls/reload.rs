//! The certificate in use, and the watcher that loads it again when its files change (a
//! renewal by cert-manager, a Kubernetes secret update, a `mv` of new files): the directories
//! holding them are watched, since such updates replace files (or a symlink) rather than write
//! into them. A new certificate that does not load is logged and the old one kept.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certificate::{load_certified_key, SharedKey};
use super::{CertFiles, TlsError};

/// The certificate every handshake gets: the last one that loaded.
#[derive(Debug)]
pub(super) struct Reloading {
    files: CertFiles,
    current: RwLock<SharedKey>,
}

impl Reloading {
    pub fn load(files: CertFiles) -> Result<Reloading, TlsError> {
        let current = RwLock::new(Arc::new(load_certified_key(&files)?));
        Ok(Reloading { files, current })
    }

    /// Loads the files again; keeps the certificate in use if they do not load (yet: a
    /// certificate and its key are rarely replaced in one step).
    fn reload(&self) {
        match load_certified_key(&self.files) {
            Ok(key) => {
                let changed = {
                    let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                    let changed = current.cert != key.cert;
                    *current = Arc::new(key);
                    changed
                };
                if changed {
                    tracing::info!(cert = %self.files.cert.display(), "loaded the new TLS certificate");
                }
            }
            Err(e) => tracing::warn!("kept the TLS certificate in use: {e}"),
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Watches the directories of the certificate and key files while it lives.
pub(super) struct CertWatch {
    _watcher: RecommendedWatcher,
}

impl CertWatch {
    pub fn start(reloading: Arc<Reloading>) -> Result<CertWatch, TlsError> {
        let files = reloading.files.clone();
        // The same directory twice (as written, not resolved: watching one twice is harmless).
        let mut watched: Vec<PathBuf> = [&files.cert, &files.key].into_iter().map(|p| directory_of(p)).collect();
        watched.dedup();
        let names: Vec<OsString> =
            [&files.cert, &files.key].iter().filter_map(|p| p.file_name()).map(Into::into).collect();
        let handler = move |event: notify::Result<notify::Event>| match event {
            // Opens and reads (the reload's own among them) change nothing; a write ends in a
            // close-after-write, a replacement is a create or a rename.
            Ok(event) if event.kind.is_access() && event.kind != WRITTEN => {}
            // Only the two files, or a Kubernetes secret's `..data` link and its timestamped
            // directories (replaced together), not whatever else the directory holds.
            Ok(event) if !event.paths.iter().any(|p| p.file_name().is_some_and(|n| concerns(&names, n))) => {}
            // A lost event (an inotify queue overflow) may have been the one that mattered.
            Ok(_) | Err(_) => reloading.reload(),
        };
        let watch_error =
            |path: &Path, e: notify::Error| TlsError::Watch { path: path.display().to_string(), reason: e.to_string() };
        let mut watcher = notify::recommended_watcher(handler).map_err(|e| watch_error(&files.cert, e))?;
        for dir in &watched {
            watcher.watch(dir, RecursiveMode::NonRecursive).map_err(|e| watch_error(dir, e))?;
        }
        Ok(CertWatch { _watcher: watcher })
    }
}

const WRITTEN: EventKind = EventKind::Access(AccessKind::Close(AccessMode::Write));

fn concerns(names: &[OsString], name: &OsStr) -> bool {
    names.iter().any(|n| n == name) || name.as_encoded_bytes().starts_with(b"..")
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
