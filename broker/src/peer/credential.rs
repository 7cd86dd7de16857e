//! The credential itself: what is signed, how, and how a receiver checks it (the nonce's
//! uniqueness is [`super::NonceCache`]'s part).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{PeerSecret, AUTH_HEADER, MAX_SKEW, NONCE_HEADER, TIME_HEADER};

type HmacSha256 = Hmac<Sha256>;

/// Headers whose names start with this are signed too: they carry data the receiver acts on
/// (the Raft target node, the epochs of replicated records).
const SIGNED_HEADER_PREFIX: &str = "x-runnel-";
/// Versions the signed text, so a later format cannot be confused with this one, nor a
/// signature of the head alone with one that covers the body too.
const SCHEME: &str = "runnel-peer-v1";
const SCHEME_HEAD_ONLY: &str = "runnel-peer-tls-v1";

/// The parts of a request the credential covers.
pub struct SignedParts<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    /// The body, or `None` when it travels over TLS to a broker whose certificate the sender
    /// checked against the cluster's CA (`RUNNEL_PEER_TLS_CA`). TLS then delivers it unaltered
    /// behind the signed head on the same stream, and no one else sees the head to reuse it,
    /// so hashing every byte once more would only cost CPU: SHA-256 of the bodies was a quarter
    /// of a broker's CPU under produce load.
    pub body: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    pub time_ms: u64,
    pub nonce: u128,
    pub mac: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the request has no {0} header: peer requests must be signed with the cluster's peer secret")]
    Missing(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("the request was signed {skew_s} s away from this broker's clock (more than 30 s): check the clocks")]
    Stale { skew_s: i64 },
    #[error("the signature does not match: the sender holds another peer secret, or the request was altered")]
    BadSignature,
}

/// Signs `parts` as sent at `time_ms` with `nonce`.
pub fn sign(secret: &PeerSecret, parts: &SignedParts<'_>, time_ms: u64, nonce: u128) -> Credential {
    let mac = mac(secret, parts, time_ms, nonce).finalize().into_bytes().into();
    Credential { time_ms, nonce, mac }
}

/// Checks the signature (in constant time) and that the credential is no more than
/// [`MAX_SKEW`] from `now_ms`.
pub fn verify(
    secret: &PeerSecret,
    parts: &SignedParts<'_>,
    credential: &Credential,
    now_ms: u64,
) -> Result<(), CredentialError> {
    mac(secret, parts, credential.time_ms, credential.nonce)
        .verify_slice(&credential.mac)
        .map_err(|_| CredentialError::BadSignature)?;
    let skew_ms = now_ms as i128 - credential.time_ms as i128;
    if skew_ms.unsigned_abs() > MAX_SKEW.as_millis() {
        return Err(CredentialError::Stale { skew_s: (skew_ms / 1000) as i64 });
    }
    Ok(())
}

fn mac(secret: &PeerSecret, parts: &SignedParts<'_>, time_ms: u64, nonce: u128) -> HmacSha256 {
    // Any key length is valid for HMAC, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.bytes()).unwrap_or_else(|_| unreachable!());
    let mut headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with(SIGNED_HEADER_PREFIX))
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    headers.sort();
    let scheme = if parts.body.is_some() { SCHEME } else { SCHEME_HEAD_ONLY };
    let head = format!("{scheme}\n{}\n{}\n{time_ms}\n{nonce:032x}\n", parts.method, parts.path_and_query);
    mac.update(head.as_bytes());
    for (name, value) in headers {
        mac.update(name.as_bytes());
        mac.update(b":");
        mac.update(value);
        mac.update(b"\n");
    }
    if let Some(body) = parts.body {
        mac.update(&Sha256::digest(body));
    }
    mac
}

impl Credential {
    /// A credential for a new request: now, with a fresh random nonce.
    pub fn fresh_nonce() -> u128 {
        let mut bytes = [0u8; 16];
        fill_random(&mut bytes);
        u128::from_le_bytes(bytes)
    }

    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let values = [
            (TIME_HEADER, self.time_ms.to_string()),
            (NONCE_HEADER, format!("{:032x}", self.nonce)),
            (AUTH_HEADER, hex(&self.mac)),
        ];
        for (name, value) in values {
            // Digits only: always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }

    pub fn from_headers(headers: &HeaderMap) -> Result<Credential, CredentialError> {
        let text = |name: &'static str| -> Result<&str, CredentialError> {
            let value = headers.get(name).ok_or(CredentialError::Missing(name))?;
            value.to_str().map_err(|_| CredentialError::Malformed(name))
        };
        let time_ms = text(TIME_HEADER)?.parse().map_err(|_| CredentialError::Malformed(TIME_HEADER))?;
        let nonce = text(NONCE_HEADER)?;
        if nonce.len() != 32 {
            return Err(CredentialError::Malformed(NONCE_HEADER));
        }
        let nonce = u128::from_str_radix(nonce, 16).map_err(|_| CredentialError::Malformed(NONCE_HEADER))?;
        let mac = unhex(text(AUTH_HEADER)?).ok_or(CredentialError::Malformed(AUTH_HEADER))?;
        Ok(Credential { time_ms, nonce, mac })
    }
}

/// Fills `bytes` from the operating system's random source. Without one the broker cannot
/// sign safely at all, so it stops rather than send predictable nonces.
pub(super) fn fill_random(bytes: &mut [u8]) {
    if let Err(e) = getrandom::fill(bytes) {
        panic!("the operating system's random number source failed: {e}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(fill: u8) -> PeerSecret {
        PeerSecret::from_bytes(&[fill; 32]).expect("long enough")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v))).collect()
    }

    const NOW: u64 = 1_700_000_000_000;

    fn parts<'a>(path: &'a str, headers: &'a HeaderMap, body: &'a [u8]) -> SignedParts<'a> {
        SignedParts { method: "POST", path_and_query: path, headers, body: Some(body) }
    }

    #[test]
    fn a_signed_request_verifies_and_survives_its_headers() {
        let h = headers(&[("x-runnel-epochs", "3:0"), ("content-type", "application/json")]);
        let signed = sign(&secret(1), &parts("/cluster/truncate/t/0?to=0&epoch=9", &h, b"{}"), NOW, 42);
        let mut wire = HeaderMap::new();
        signed.write_headers(&mut wire);
        let parsed = Credential::from_headers(&wire).expect("parse");
        assert_eq!(parsed, signed);
        // Headers outside x-runnel-* (added by HTTP layers on the way) do not matter.
        let h2 = headers(&[("x-runnel-epochs", "3:0"), ("user-agent", "x")]);
        assert_eq!(verify(&secret(1), &parts("/cluster/truncate/t/0?to=0&epoch=9", &h2, b"{}"), &parsed, NOW), Ok(()));
    }

    #[test]
    fn a_wrong_secret_or_altered_request_is_refused() {
        let h = headers(&[("x-runnel-epochs", "3:0")]);
        let c = sign(&secret(1), &parts("/raft/propose", &h, b"body"), NOW, 7);
        let bad = Err(CredentialError::BadSignature);
        assert_eq!(verify(&secret(2), &parts("/raft/propose", &h, b"body"), &c, NOW), bad);
        assert_eq!(verify(&secret(1), &parts("/raft/vote", &h, b"body"), &c, NOW), bad);
        assert_eq!(verify(&secret(1), &parts("/raft/propose?x=1", &h, b"body"), &c, NOW), bad);
        assert_eq!(verify(&secret(1), &parts("/raft/propose", &h, b"bodY"), &c, NOW), bad);
        let other = headers(&[("x-runnel-epochs", "4:0")]);
        assert_eq!(verify(&secret(1), &parts("/raft/propose", &other, b"body"), &c, NOW), bad);
        let get = SignedParts { method: "GET", ..parts("/raft/propose", &h, b"body") };
        assert_eq!(verify(&secret(1), &get, &c, NOW), bad);
        let moved = Credential { time_ms: NOW + 1, ..c };
        assert_eq!(verify(&secret(1), &parts("/raft/propose", &h, b"body"), &moved, NOW), bad);
        let renonced = Credential { nonce: 8, ..c };
        assert_eq!(verify(&secret(1), &parts("/raft/propose", &h, b"body"), &renonced, NOW), bad);
        let head_only = SignedParts { body: None, ..parts("/raft/propose", &h, b"body") };
        assert_eq!(verify(&secret(1), &head_only, &c, NOW), bad);
    }

    #[test]
    fn a_head_only_signature_covers_the_head_and_never_passes_for_a_full_one() {
        let h = headers(&[("x-runnel-epochs", "3:0")]);
        let head_only = SignedParts { body: None, ..parts("/replicate/t/0", &h, b"") };
        let c = sign(&secret(1), &head_only, NOW, 7);
        assert_eq!(verify(&secret(1), &head_only, &c, NOW), Ok(()));
        let bad = Err(CredentialError::BadSignature);
        // Over plain HTTP the receiver wants the body covered: an empty body is not none.
        assert_eq!(verify(&secret(1), &parts("/replicate/t/0", &h, b""), &c, NOW), bad);
        assert_eq!(verify(&secret(1), &SignedParts { path_and_query: "/replicate/t/1", ..head_only }, &c, NOW), bad);
        let other = headers(&[("x-runnel-epochs", "4:0")]);
        assert_eq!(verify(&secret(1), &SignedParts { headers: &other, ..head_only }, &c, NOW), bad);
        assert_eq!(verify(&secret(2), &head_only, &c, NOW), bad);
    }

    #[test]
    fn a_stale_or_future_timestamp_is_refused() {
        let h = HeaderMap::new();
        let p = parts("/cluster/info", &h, b"");
        let c = sign(&secret(1), &p, NOW, 1);
        let window = MAX_SKEW.as_millis() as u64;
        assert_eq!(verify(&secret(1), &p, &c, NOW + window), Ok(()));
        assert_eq!(verify(&secret(1), &p, &c, NOW - window), Ok(()));
        assert!(matches!(verify(&secret(1), &p, &c, NOW + window + 1), Err(CredentialError::Stale { .. })));
        assert!(matches!(verify(&secret(1), &p, &c, NOW - window - 1), Err(CredentialError::Stale { .. })));
    }

    #[test]
    fn missing_or_malformed_headers_are_named() {
        assert_eq!(Credential::from_headers(&HeaderMap::new()), Err(CredentialError::Missing(TIME_HEADER)));
        let c = Credential { time_ms: NOW, nonce: 5, mac: [9; 32] };
        let mut h = HeaderMap::new();
        c.write_headers(&mut h);
        h.insert(AUTH_HEADER, HeaderValue::from_static("zz"));
        assert_eq!(Credential::from_headers(&h), Err(CredentialError::Malformed(AUTH_HEADER)));
        h.insert(NONCE_HEADER, HeaderValue::from_static("+1"));
        assert_eq!(Credential::from_headers(&h), Err(CredentialError::Malformed(NONCE_HEADER)));
        assert_ne!(Credential::fresh_nonce(), Credential::fresh_nonce());
    }
}
