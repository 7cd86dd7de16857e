//! The harness's own credentials: one Ed25519 key pair per test process, and a token of it
//! allowing everything, which the workload's and the Docker helpers' HTTP clients always send.
//! A broker without `RUNNEL_AUTH_KEY_FILE` ignores it; one started with [`verify_key_file`]
//! accepts it, so the same workload drives open and token-protected clusters.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use runnel_client::tokens::{keygen, sign, KeyPairPem, Scope, TokenSpec};
use runnel_client::{Access, AccessConfig};

struct Credentials {
    keys: KeyPairPem,
    token: String,
    /// Holds the written public key for the life of the process.
    dir: tempfile::TempDir,
}

fn credentials() -> &'static Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        let keys = keygen().expect("keygen");
        let everything =
            Scope { topics: "*".into(), ops: vec!["produce".into(), "consume".into(), "admin".into()], groups: None };
        let spec = TokenSpec {
            scopes: vec![everything],
            ttl: Duration::from_secs(24 * 3600),
            subject: Some("harness".into()),
            id: None,
        };
        let token = sign(keys.signing.as_bytes(), &spec).expect("sign the harness token").jwt;
        let dir = tempfile::tempdir().expect("tempdir for the harness key");
        std::fs::write(dir.path().join("verify.pem"), &keys.verify).expect("write verify.pem");
        // Brokers in containers run as another user.
        std::fs::set_permissions(dir.path().join("verify.pem"), std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("make the key readable");
        Credentials { keys, token, dir }
    })
}

/// The public key file that makes a broker accept the harness's token.
pub fn verify_key_file() -> PathBuf {
    credentials().dir.path().join("verify.pem")
}

/// The harness's token (everything allowed), for a tool run elsewhere (`RUNNEL_TOKEN`).
pub fn token() -> &'static str {
    &credentials().token
}

/// The harness's signing key, for tests that issue narrower tokens of their own.
pub fn signing_key() -> &'static str {
    &credentials().keys.signing
}

/// An HTTP client that sends the harness's token with every request, with `timeout` per request.
pub fn harness_http(timeout: Option<Duration>) -> reqwest::Client {
    access(timeout).http().clone()
}

/// The client library's access with the harness's token (plain HTTP).
pub fn harness_access() -> Access {
    access(None)
}

fn access(timeout: Option<Duration>) -> Access {
    let config = AccessConfig { token: Some(credentials().token.clone()), timeout, ..AccessConfig::default() };
    Access::new(config).expect("access")
}
