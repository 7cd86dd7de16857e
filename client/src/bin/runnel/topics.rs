//! `runnel topics list|describe|create|alter|delete` (SPEC §15), on the discovery port.

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{Map, Value};

use crate::connection::ConnectionArgs;

#[derive(clap::Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// A topic's settings; what is not given follows the brokers' defaults.
#[derive(clap::Args)]
struct SettingsArgs {
    /// How long records are kept ("168h", "30m", or "none": forever).
    #[arg(long)]
    retention: Option<String>,
    /// Most bytes a partition keeps (0: no bound).
    #[arg(long)]
    retention_bytes: Option<u64>,
    /// Segment file size in bytes.
    #[arg(long)]
    segment_bytes: Option<u64>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// The topics and their settings.
    List,
    /// A topic's settings and partitions (bounds, leader, copies, bytes on disk).
    Describe { topic: String },
    /// Create a topic with settings (nothing changes if it exists with them).
    Create {
        topic: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Change a topic's settings; `--reset NAME` puts one back to the brokers' default.
    Alter {
        topic: String,
        #[command(flatten)]
        settings: SettingsArgs,
        /// A setting back to the default: retention, retentionBytes or segmentBytes.
        #[arg(long)]
        reset: Vec<String>,
    },
    /// Delete a topic: every broker removes its files; writes are refused until it is gone.
    Delete { topic: String },
}

impl SettingsArgs {
    fn json(&self) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(retention) = &self.retention {
            body.insert("retention".into(), retention.clone().into());
        }
        if let Some(bytes) = self.retention_bytes {
            body.insert("retentionBytes".into(), bytes.into());
        }
        if let Some(bytes) = self.segment_bytes {
            body.insert("segmentBytes".into(), bytes.into());
        }
        body
    }
}

pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let access = args.connection.access()?;
    let url = |topic: Option<&str>| {
        let path = topic.map_or_else(|| "/v1/topics".to_string(), |t| format!("/v1/topics/{t}"));
        args.connection.discovery_url(&access, &path)
    };
    let http = access.http();
    let call = |method: Method, url: String, body: Option<Map<String, Value>>| async move {
        let mut request = http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| url.clone())?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{status}: {}", body["message"].as_str().unwrap_or("refused"));
        }
        Ok::<_, anyhow::Error>((status, body))
    };
    match args.action {
        Action::List => {
            let (_, body) = call(Method::GET, url(None), None).await?;
            for topic in body["topics"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}",
                    topic["topic"].as_str().unwrap_or("?"),
                    topic["state"].as_str().unwrap_or("?"),
                    topic["settings"]
                );
            }
        }
        Action::Describe { topic } => {
            let (_, body) = call(Method::GET, url(Some(&topic)), None).await?;
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        Action::Create { topic, settings } => {
            let (status, body) = call(Method::PUT, url(Some(&topic)), Some(settings.json())).await?;
            let what = if status == reqwest::StatusCode::CREATED { "created" } else { "exists with these settings" };
            println!("{topic} {what}: {}", body["settings"]);
        }
        Action::Alter { topic, settings, reset } => {
            let mut body = settings.json();
            for name in reset {
                body.insert(name, Value::Null);
            }
            let (_, body) = call(Method::PATCH, url(Some(&topic)), Some(body)).await?;
            println!("{topic}: {}", body["settings"]);
        }
        Action::Delete { topic } => {
            call(Method::DELETE, url(Some(&topic)), None).await?;
            println!(
                "{topic} is being deleted: `runnel topics describe {topic}` shows it until every broker removed it"
            );
        }
    }
    Ok(())
}
