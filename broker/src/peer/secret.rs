//! The shared peer secret: the content of `RUNNEL_PEER_SECRET_FILE`, trimmed.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Shorter secrets are refused: 32 bytes is HMAC-SHA256's key strength (e.g. the output of
/// `head -c 32 /dev/urandom | base64`, 44 characters).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Clone)]
pub struct PeerSecret(Arc<[u8]>);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("RUNNEL_PEER_SECRET_FILE {path}: cannot read it ({source})")]
    Unreadable { path: String, source: std::io::Error },
    #[error(
        "RUNNEL_PEER_SECRET_FILE {path}: the secret is {len} bytes, at least {MIN_SECRET_BYTES} are needed \
         (e.g. `head -c 32 /dev/urandom | base64 > {path}`)"
    )]
    TooShort { path: String, len: usize },
}

impl PeerSecret {
    pub fn load(path: &Path) -> Result<PeerSecret, SecretError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SecretError::Unreadable { path: shown.clone(), source })?;
        PeerSecret::from_bytes(&bytes).map_err(|len| SecretError::TooShort { path: shown, len })
    }

    /// The secret in `bytes` with surrounding whitespace (a trailing newline) removed, or its
    /// length when that is too short.
    pub fn from_bytes(bytes: &[u8]) -> Result<PeerSecret, usize> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(trimmed.len());
        }
        Ok(PeerSecret(trimmed.into()))
    }

    /// A random secret nobody else knows: a single broker without a configured secret uses
    /// one, so its peer port answers no one but itself.
    pub fn random() -> PeerSecret {
        let mut bytes = [0u8; MIN_SECRET_BYTES];
        super::credential::fill_random(&mut bytes);
        PeerSecret(bytes.as_slice().into())
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Never prints the secret.
impl fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerSecret({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_trimmed_and_short_or_missing_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("  {}\n", "k".repeat(32))).expect("write");
        assert_eq!(PeerSecret::load(&path).expect("load").bytes(), "k".repeat(32).as_bytes());
        std::fs::write(&path, format!("{}\n", "k".repeat(31))).expect("write");
        let short = PeerSecret::load(&path).expect_err("too short");
        assert!(short.to_string().contains("RUNNEL_PEER_SECRET_FILE"), "{short}");
        let missing = PeerSecret::load(&dir.path().join("nope")).expect_err("missing");
        assert!(matches!(missing, SecretError::Unreadable { .. }), "{missing}");
        assert!(!format!("{:?}", PeerSecret::random()).contains('k'));
    }
}
