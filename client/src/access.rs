//! How a client reaches the brokers (SPEC §13): plain HTTP or HTTPS (trusting the system's
//! roots, or a CA of your own, such as a cluster's private one), and the bearer token sent
//! with every request.

use std::fmt;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

use crate::ClientError;

/// What [`Access::new`] builds a client from.
#[derive(Clone, Default)]
pub struct AccessConfig {
    /// A JWT (`runnel token create`), sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Call the brokers over HTTPS.
    pub https: bool,
    /// PEM certificate(s) to trust besides the built-in roots; implies `https`.
    pub ca_pem: Option<Vec<u8>>,
    /// A limit on every request (none by default: a long-poll sets its own).
    pub timeout: Option<std::time::Duration>,
}

/// The HTTP client every request goes through, with the scheme its URLs use. Cheap to clone
/// (the connection pool is shared).
#[derive(Clone)]
pub struct Access {
    http: reqwest::Client,
    https: bool,
    token: bool,
}

impl Access {
    pub fn new(config: AccessConfig) -> Result<Access, ClientError> {
        let mut builder = reqwest::Client::builder();
        if let Some(timeout) = config.timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(token) = &config.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| ClientError::Config("the token is not a valid header value".into()))?;
            value.set_sensitive(true);
            builder = builder.default_headers(HeaderMap::from_iter([(AUTHORIZATION, value)]));
        }
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("the CA file is not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Config("the CA file holds no certificate".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let https = config.https || config.ca_pem.is_some();
        if https {
            // As over plain HTTP: a connection per request in flight. ALPN would pick h2, and a
            // broker bounds each h2 connection to 2 streams and a 32 KiB window (its memory per
            // connection), so a consumer's long-polls and 1 MiB poll answers would queue on one.
            builder = builder.http1_only();
        }
        let http = builder.build().map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Access { http, https, token: config.token.is_some() })
    }

    /// Plain HTTP with `http` as it is.
    pub fn plain(http: reqwest::Client) -> Access {
        Access { http, https: false, token: false }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }
}

impl Default for Access {
    fn default() -> Access {
        Access::plain(reqwest::Client::new())
    }
}

/// Never prints the token.
impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access").field("scheme", &self.scheme()).field("token", &self.token).finish()
    }
}

/// Brokers compare by where they are, not by how they are called.
impl PartialEq for Access {
    fn eq(&self, other: &Access) -> bool {
        self.https == other.https
    }
}

impl Eq for Access {}
