//! Reading a certificate chain and its private key from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{provider, CertFiles, TlsError};

/// Every certificate of the PEM file `path` (set by `variable`), at least one.
pub fn read_certificates(variable: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let unreadable =
        |e: rustls_pki_types::pem::Error| TlsError::Unreadable { variable, path: shown.clone(), reason: e.to_string() };
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(path).map_err(unreadable)?.collect::<Result<_, _>>().map_err(unreadable)?;
    if certificates.is_empty() {
        return Err(TlsError::Invalid { variable, path: shown, reason: "holds no certificate".into() });
    }
    Ok(certificates)
}

/// The chain of `files.cert` (leaf first) with the key of `files.key`, checked to belong together.
pub fn load_certified_key(files: &CertFiles) -> Result<CertifiedKey, TlsError> {
    let shown = |path: &Path| path.display().to_string();
    let [cert_variable, key_variable] = files.variables;
    let chain = read_certificates(cert_variable, &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Unreadable {
        variable: key_variable,
        path: shown(&files.key),
        reason: e.to_string(),
    })?;
    let invalid_key = |reason: String| TlsError::Invalid { variable: key_variable, path: shown(&files.key), reason };
    let signing = provider().key_provider.load_private_key(key).map_err(|e| invalid_key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| invalid_key(format!("does not belong to {cert_variable}'s certificate ({e})")))?;
    Ok(certified)
}

/// Shared so a reload can swap it under every connection being set up.
pub type SharedKey = Arc<CertifiedKey>;
