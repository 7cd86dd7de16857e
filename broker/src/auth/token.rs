//! Bearer tokens (SPEC §13): JWTs signed with Ed25519 (`EdDSA`) or HMAC-SHA256 (`HS256`),
//! verified with the key of `RUNNEL_AUTH_KEY_FILE`. Any broker verifies any token alone: no
//! session, no call to another broker (a revocation reaches every broker through Raft).

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::scopes::Scope;
use crate::peer::MIN_SECRET_BYTES;

/// Longest `jti` a token may carry (it is what a revocation names, and is kept in Raft).
pub const MAX_TOKEN_ID: usize = 128;

/// What a verified token says.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the Unix epoch (required).
    pub exp: u64,
    /// The token's id, by which it is revoked (required: a token that cannot be revoked is
    /// refused).
    pub jti: String,
    /// Whom the token was issued to (logged, not checked).
    #[serde(default)]
    pub sub: Option<String>,
    pub scopes: Vec<Scope>,
}

/// Why a token is not accepted (each is a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token: send Authorization: Bearer <token>")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's signature does not verify with this cluster's key")]
    BadSignature,
    #[error("the token is signed with {0:?}, this cluster takes {1:?}")]
    WrongAlgorithm(Algorithm, Algorithm),
    #[error("the token has been revoked")]
    Revoked,
    #[error("the token is malformed: {0}")]
    Malformed(String),
}

impl TokenError {
    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::BadSignature | TokenError::WrongAlgorithm(..) => "bad_signature",
            TokenError::Revoked => "revoked",
            TokenError::Malformed(_) => "malformed",
        }
    }
}

/// `RUNNEL_AUTH_KEY_FILE` that keeps the broker from starting.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("RUNNEL_AUTH_KEY_FILE {path}: cannot read it ({source})")]
    Unreadable { path: String, source: std::io::Error },
    #[error("RUNNEL_AUTH_KEY_FILE {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The keys a token may verify with (several public keys while a signing key is rotated:
/// tokens of the old and of the new one both pass), and the one algorithm that goes with them
/// (a token naming another is refused, so an Ed25519 public key can never be used as an HMAC
/// secret).
#[derive(Clone)]
pub struct TokenKey {
    keys: Vec<DecodingKey>,
    validation: Validation,
}

/// Never prints the key (an HMAC secret is one).
impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({:?})", self.validation.algorithms)
    }
}

impl TokenKey {
    /// One or more Ed25519 public keys (PEM, `-----BEGIN PUBLIC KEY-----`, as `runnel token
    /// keygen` writes to `verify.pem`; several concatenated), or else an HMAC secret of at least
    /// 32 bytes (trimmed).
    pub fn load(path: &Path) -> Result<TokenKey, KeyError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyError::Unreadable { path: shown.clone(), source })?;
        TokenKey::from_bytes(&bytes).map_err(|reason| KeyError::Invalid { path: shown, reason })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<TokenKey, String> {
        let text = String::from_utf8_lossy(bytes);
        let (keys, algorithm) = if text.contains("-----BEGIN PUBLIC KEY-----") {
            (public_keys(&text)?, Algorithm::EdDSA)
        } else if text.contains("-----BEGIN") {
            return Err("holds a PEM object that is not a public key: give the Ed25519 public key \
                        (verify.pem), never the signing key"
                .into());
        } else {
            let secret = bytes.trim_ascii();
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "an HMAC secret must be at least {MIN_SECRET_BYTES} bytes, this is {}",
                    secret.len()
                ));
            }
            (vec![DecodingKey::from_secret(secret)], Algorithm::HS256)
        };
        let mut validation = Validation::new(algorithm);
        // An expired token stops working at its expiry, not a minute later; brokers' and
        // signers' clocks are assumed to agree (as the peer port's credentials already need).
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        // Tokens name no audience here: one carrying `aud` is not refused for it.
        validation.validate_aud = false;
        Ok(TokenKey { keys, validation })
    }

    /// The token's claims, if its signature verifies and it is within its validity.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let expected = self.validation.algorithms[0];
        if header.alg != expected {
            return Err(TokenError::WrongAlgorithm(header.alg, expected));
        }
        // The signature is checked before the claims: only a bad signature tries the next key.
        let mut verified = Err(TokenError::BadSignature);
        for key in &self.keys {
            verified = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            });
            if !matches!(verified, Err(TokenError::BadSignature)) {
                break;
            }
        }
        let claims = verified?.claims;
        if claims.jti.is_empty() || claims.jti.len() > MAX_TOKEN_ID {
            return Err(TokenError::Malformed(format!("jti must be 1 to {MAX_TOKEN_ID} characters")));
        }
        Ok(claims)
    }
}

/// Every `PUBLIC KEY` block of `text`, each an Ed25519 key.
fn public_keys(text: &str) -> Result<Vec<DecodingKey>, String> {
    const END: &str = "-----END PUBLIC KEY-----";
    let mut keys = Vec::new();
    for (i, block) in text.split_inclusive(END).filter(|b| b.contains("-----BEGIN")).enumerate() {
        let key = DecodingKey::from_ed_pem(block.trim().as_bytes())
            .map_err(|e| format!("public key {} is not an Ed25519 public key ({e})", i + 1))?;
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        crate::peer::now_ms() / 1000
    }

    fn hs256(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).expect("sign")
    }

    fn claims(exp: u64) -> serde_json::Value {
        serde_json::json!({"exp": exp, "jti": "t1", "scopes": [{"topics": "a*", "ops": ["produce"]}]})
    }

    #[test]
    fn a_token_verifies_only_with_its_key_and_within_its_time() {
        let key = TokenKey::from_bytes(SECRET).expect("key");
        let good = key.verify(&hs256(claims(now() + 60), SECRET)).expect("verifies");
        assert_eq!(good.jti, "t1");
        let no_id = serde_json::json!({"exp": now() + 60, "scopes": []});
        assert!(matches!(key.verify(&hs256(no_id, SECRET)).unwrap_err(), TokenError::Malformed(_)));
        assert_eq!(key.verify(&hs256(claims(now() - 1), SECRET)).unwrap_err(), TokenError::Expired);
        let other = b"another secret of thirty-two bytes!!";
        assert_eq!(key.verify(&hs256(claims(now() + 60), other)).unwrap_err(), TokenError::BadSignature);
        let no_exp = serde_json::json!({"scopes": []});
        assert!(matches!(key.verify(&hs256(no_exp, SECRET)).unwrap_err(), TokenError::Malformed(_)));
        let later = serde_json::json!({"exp": now() + 60, "nbf": now() + 30, "jti": "t2", "scopes": []});
        assert_eq!(key.verify(&hs256(later, SECRET)).unwrap_err(), TokenError::NotYetValid);
        assert!(matches!(key.verify("not.a.token").unwrap_err(), TokenError::Malformed(_)));
    }

    #[test]
    fn a_token_of_another_algorithm_is_refused_before_its_signature_is_checked() {
        let key = TokenKey::from_bytes(SECRET).expect("key");
        let hs512 = encode(&Header::new(Algorithm::HS512), &claims(now() + 60), &EncodingKey::from_secret(SECRET))
            .expect("sign");
        assert!(matches!(key.verify(&hs512).unwrap_err(), TokenError::WrongAlgorithm(Algorithm::HS512, _)));
    }

    #[test]
    fn short_secrets_and_private_keys_are_not_keys() {
        assert!(TokenKey::from_bytes(b"short\n").unwrap_err().contains("at least 32"));
        let private = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        assert!(TokenKey::from_bytes(private).unwrap_err().contains("never the signing key"));
        let junk = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(TokenKey::from_bytes(junk).unwrap_err().contains("Ed25519"));
    }
}
