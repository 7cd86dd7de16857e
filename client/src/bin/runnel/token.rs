//! `runnel token keygen | create | revoke` (SPEC §13).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use runnel_client::tokens::{self, Scope, TokenSpec};
use serde_json::Value;

use crate::connection::ConnectionArgs;

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Write a new Ed25519 key pair: DIR/signing.key (private: signs tokens) and DIR/verify.pem
    /// (public: what brokers' RUNNEL_AUTH_KEY_FILE points at).
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// Replace key files already there.
        #[arg(long)]
        force: bool,
    },
    /// Print a token signed with KEY (signing.key, or an HMAC secret file) for one scope
    /// (--topics, --ops, --groups) and any more given as JSON (--scopes).
    Create {
        #[arg(long)]
        key: PathBuf,
        /// Topic name, or prefix ending in '*' ('*': every topic).
        #[arg(long)]
        topics: Option<String>,
        /// Comma-separated: produce, consume, admin.
        #[arg(long, value_delimiter = ',')]
        ops: Vec<String>,
        /// For consume: group name or prefix ending in '*' (default: any group).
        #[arg(long)]
        groups: Option<String>,
        /// More scopes: a JSON list of {"topics","ops","groups"?}.
        #[arg(long)]
        scopes: Option<String>,
        /// Lifetime, e.g. 1h, 24h, 30m.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
        ttl: Duration,
        /// Whom the token is for (the `sub` claim, shown in brokers' logs).
        #[arg(long)]
        subject: Option<String>,
        /// The token id (`jti`; random by default), what `runnel token revoke` names.
        #[arg(long)]
        id: Option<String>,
    },
    /// Refuse a token on every broker from now until its expiry. Give the token itself (its
    /// expiry is read from it) or its id. Needs a --token with admin on '*'.
    Revoke {
        /// The token, or its id (jti).
        #[arg(value_name = "TOKEN_OR_ID")]
        revoked: String,
        /// The token's expiry (seconds since the Unix epoch) when only its id is given;
        /// without it the revocation is kept for a year.
        #[arg(long)]
        expires_at: Option<u64>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Keygen { out, force } => keygen(&out, force),
        Action::Create { key, topics, ops, groups, scopes, ttl, subject, id } => {
            let mut all = Vec::new();
            match (topics, ops.is_empty()) {
                (Some(topics), false) => all.push(Scope { topics, ops, groups }),
                (None, true) if groups.is_none() => {}
                _ => bail!("--topics and --ops go together (and --groups with them)"),
            }
            if let Some(json) = scopes {
                let more: Vec<Value> = serde_json::from_str(&json).context("--scopes must be a JSON list")?;
                for scope in more {
                    all.push(Scope {
                        topics: scope["topics"].as_str().context("a scope needs \"topics\"")?.to_string(),
                        ops: scope["ops"]
                            .as_array()
                            .context("a scope needs \"ops\"")?
                            .iter()
                            .filter_map(|o| o.as_str().map(str::to_string))
                            .collect(),
                        groups: scope["groups"].as_str().map(str::to_string),
                    });
                }
            }
            if all.is_empty() {
                bail!("a token needs at least one scope: --topics P --ops produce,consume");
            }
            let key = std::fs::read(&key).with_context(|| format!("cannot read {}", key.display()))?;
            let token = tokens::sign(&key, &TokenSpec { scopes: all, ttl, subject, id })?;
            eprintln!("token id {} expires at {} (Unix seconds)", token.id, token.expires_at);
            println!("{}", token.jwt);
            Ok(())
        }
        Action::Revoke { revoked, expires_at, connection } => revoke(&revoked, expires_at, &connection).await,
    }
}

fn keygen(out: &std::path::Path, force: bool) -> anyhow::Result<()> {
    let (signing, verify) = (out.join("signing.key"), out.join("verify.pem"));
    if !force && (signing.exists() || verify.exists()) {
        bail!("{} already holds a key: pass --force to replace it", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let pair = tokens::keygen()?;
    write_private(&signing, pair.signing.as_bytes())?;
    std::fs::write(&verify, pair.verify).with_context(|| format!("cannot write {}", verify.display()))?;
    println!("{}\n{}", signing.display(), verify.display());
    Ok(())
}

/// Written readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn revoke(token: &str, expires_at: Option<u64>, connection: &ConnectionArgs) -> anyhow::Result<()> {
    let (id, exp) = match tokens::unverified_id(token) {
        Some((id, exp)) => (id, expires_at.or(exp)),
        None => (token.to_string(), expires_at),
    };
    let access = connection.access()?;
    let url = connection.discovery_url(&access, "/v1/tokens/revoke");
    let response = access
        .http()
        .post(&url)
        .json(&serde_json::json!({"id": id, "expiresAt": exp}))
        .send()
        .await
        .with_context(|| url.clone())?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{status}: {}", body["message"].as_str().unwrap_or("the revocation was refused"));
    }
    match exp {
        Some(exp) => println!("revoked {id} until {exp}"),
        None => println!("revoked {id} (its expiry unknown: refused for a year)"),
    }
    Ok(())
}
