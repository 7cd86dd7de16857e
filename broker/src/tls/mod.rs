//! TLS (SPEC §13): HTTPS on the client ports with the certificate of `RUNNEL_TLS_CERT` and
//! `RUNNEL_TLS_KEY` (HTTP/1.1 and h2 by ALPN), picked up again when either file changes; with
//! `RUNNEL_PEER_TLS_CA`, the peer port serves TLS too (`RUNNEL_PEER_TLS_CERT`'s certificate, or
//! the client ports') and every broker verifies the brokers it calls against that CA.
//!
//! - [`ServerTls`]: the acceptor the listeners use, and its certificate reloader.
//! - [`peer_client_config`]: how a broker verifies the brokers it calls.

mod certificate;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

pub use certificate::load_certified_key;
use certificate::read_certificates;
use reload::{CertWatch, Reloading};

/// Why TLS cannot be set up; the broker refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{variable} {path}: cannot read it ({reason})")]
    Unreadable { variable: &'static str, path: String, reason: String },
    #[error("{variable} {path}: {reason}")]
    Invalid { variable: &'static str, path: String, reason: String },
    #[error("cannot watch {path} for certificate changes: {reason}")]
    Watch { path: String, reason: String },
}

/// The one crypto provider (ring): the build has no other.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and key file, and the settings that named them (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub variables: [&'static str; 2],
}

/// The TLS side of the listeners: one certificate, shared by every port that serves TLS, and
/// reloaded for all of them when its files change (while this lives).
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    _watch: Arc<CertWatch>,
}

impl ServerTls {
    /// Loads the certificate (refusing a bad one) and starts watching its files.
    pub fn start(files: CertFiles) -> Result<ServerTls, TlsError> {
        let reloading = Arc::new(Reloading::load(files.clone())?);
        let watch = CertWatch::start(reloading.clone())?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid {
                variable: files.variables[0],
                path: files.cert.display().to_string(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(reloading);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls { acceptor: TlsAcceptor::from(Arc::new(config)), _watch: Arc::new(watch) })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// How a broker calls the others over TLS: their certificates must chain to the CA of
/// `RUNNEL_PEER_TLS_CA` and name the host called. HTTP/1.1 only, as without TLS: the peer
/// port's limits count connections, one request on each at a time.
pub fn peer_client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    const VARIABLE: &str = "RUNNEL_PEER_TLS_CA";
    let certs = read_certificates(VARIABLE, ca)?;
    let invalid = |reason: String| TlsError::Invalid { variable: VARIABLE, path: ca.display().to_string(), reason };
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| invalid(format!("not a CA certificate ({e})")))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
