//! Making the keys and tokens of SPEC §13: an Ed25519 key pair (`signing.key`, PKCS#8 PEM, and
//! `verify.pem`, its public key, what brokers verify with), and JWTs signed with it (or with
//! a shared HMAC secret) carrying an expiry, an id and scopes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;

use crate::ClientError;

/// An Ed25519 key pair as PEM text.
pub struct KeyPairPem {
    /// PKCS#8 private key: signs tokens; keep it secret.
    pub signing: String,
    /// SubjectPublicKeyInfo public key: what `RUNNEL_AUTH_KEY_FILE` points at.
    pub verify: String,
}

/// A new Ed25519 key pair.
pub fn keygen() -> Result<KeyPairPem, ClientError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| ClientError::Config("the system's random source failed".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| ClientError::Config("generated an unusable key".into()))?;
    // SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): this fixed prefix, then the 32 bytes.
    let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok(KeyPairPem { signing: pem("PRIVATE KEY", pkcs8.as_ref()), verify: pem("PUBLIC KEY", &spki) })
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// One scope of a token: `ops` (`produce`, `consume`, `admin`) on the topics `topics` names
/// (a name, or a prefix ending in `*`), for `consume` as the groups `groups` names (any if none).
#[derive(Debug, Clone, Serialize)]
pub struct Scope {
    pub topics: String,
    pub ops: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<String>,
}

/// What a token says.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub scopes: Vec<Scope>,
    pub ttl: Duration,
    /// Whom it is for (`sub`), shown in brokers' logs.
    pub subject: Option<String>,
    /// Its id (`jti`), what a revocation names; random when none is given.
    pub id: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    exp: u64,
    iat: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    scopes: &'a [Scope],
}

/// A signed token.
pub struct Token {
    pub jwt: String,
    pub id: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Signs `spec` with `key`: an Ed25519 private key in PEM (`signing.key`), or else an HMAC
/// secret (its bytes, surrounding whitespace removed), as the brokers' key file is read.
pub fn sign(key: &[u8], spec: &TokenSpec) -> Result<Token, ClientError> {
    let (encoding, algorithm) = if String::from_utf8_lossy(key).contains("-----BEGIN PRIVATE KEY-----") {
        let encoding = EncodingKey::from_ed_pem(key)
            .map_err(|e| ClientError::Config(format!("the key is not an Ed25519 private key: {e}")))?;
        (encoding, Algorithm::EdDSA)
    } else {
        (EncodingKey::from_secret(key.trim_ascii()), Algorithm::HS256)
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let id = spec.id.clone().unwrap_or_else(random_id);
    let expires_at = now + spec.ttl.as_secs().max(1);
    let claims = Claims { exp: expires_at, iat: now, jti: &id, sub: spec.subject.as_deref(), scopes: &spec.scopes };
    let jwt = jsonwebtoken::encode(&Header::new(algorithm), &claims, &encoding)
        .map_err(|e| ClientError::Config(format!("cannot sign the token: {e}")))?;
    Ok(Token { jwt, id, expires_at })
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id and expiry a token carries, read without verifying it (to revoke it by itself).
pub fn unverified_id(jwt: &str) -> Option<(String, Option<u64>)> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((claims["jti"].as_str()?.to_string(), claims["exp"].as_u64()))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    fn spec() -> TokenSpec {
        TokenSpec {
            scopes: vec![Scope { topics: "orders.*".into(), ops: vec!["produce".into()], groups: None }],
            ttl: Duration::from_secs(60),
            subject: Some("billing".into()),
            id: None,
        }
    }

    #[test]
    fn a_generated_key_signs_tokens_its_public_key_verifies() {
        let pair = keygen().expect("keygen");
        let token = sign(pair.signing.as_bytes(), &spec()).expect("sign");
        let key = DecodingKey::from_ed_pem(pair.verify.as_bytes()).expect("public key");
        let claims: serde_json::Value =
            jsonwebtoken::decode(&token.jwt, &key, &Validation::new(Algorithm::EdDSA)).expect("verifies").claims;
        assert_eq!(claims["scopes"][0]["topics"], "orders.*");
        assert_eq!(claims["sub"], "billing");
        assert_eq!(unverified_id(&token.jwt), Some((token.id.clone(), Some(token.expires_at))));
        let other = keygen().expect("keygen");
        let wrong = DecodingKey::from_ed_pem(other.verify.as_bytes()).expect("public key");
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&token.jwt, &wrong, &Validation::new(Algorithm::EdDSA)).is_err()
        );
    }

    #[test]
    fn a_secret_that_is_not_a_private_key_signs_hs256() {
        let secret = b"0123456789abcdef0123456789abcdef\n";
        let token = sign(secret, &spec()).expect("sign");
        let key = DecodingKey::from_secret(secret.trim_ascii());
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token.jwt, &key, &Validation::new(Algorithm::HS256)).is_ok());
    }
}
