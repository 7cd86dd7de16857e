//! `runnel cluster` (the cluster's shape: generation, brokers and their states, partitions)
//! and `runnel cluster resize N` (SPEC §9).

use anyhow::{bail, Context};
use serde_json::Value;

use crate::connection::ConnectionArgs;

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Resize the cluster to N brokers: growing takes in brokers that joined; shrinking lets
    /// the highest ordinals leave, and `runnel cluster` lists them removable once they hold
    /// nothing (then stop them, or scale the StatefulSet down).
    Resize {
        /// The number of brokers.
        brokers: u32,
    },
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let access = args.connection.access()?;
    let base = args.connection.discovery_url(&access, "");
    match args.action {
        None => show(access.http(), &base).await,
        Some(Action::Resize { brokers }) => resize(access.http(), &base, brokers).await,
    }
}

async fn show(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let url = format!("{base}/v1/cluster");
    let view: Value = http.get(&url).send().await.with_context(|| url.clone())?.error_for_status()?.json().await?;
    println!("generation {}\tbrokers {}\tRaft leader {}", view["generation"], view["brokers"], view["raftLeader"]);
    for member in view["members"].as_array().into_iter().flatten() {
        println!(
            "broker {}\t{}\t{}",
            member["broker"],
            member["state"].as_str().unwrap_or("?"),
            member["name"].as_str().unwrap_or("?")
        );
    }
    let removable = view["removable"].as_array().map_or(0, Vec::len);
    if removable > 0 {
        println!("removable: {} (they hold nothing the cluster needs: stop them)", view["removable"]);
    }
    for partition in view["partitions"].as_array().into_iter().flatten() {
        let sealed = if partition["sealed"] == true { "\tsealed" } else { "" };
        println!(
            "partition {}\tgeneration {}\tleader {}\tepoch {}\treplicas {}{sealed}",
            partition["partition"],
            partition["generation"],
            partition["leader"],
            partition["epoch"],
            partition["replicas"]
        );
    }
    Ok(())
}

async fn resize(http: &reqwest::Client, base: &str, brokers: u32) -> anyhow::Result<()> {
    let url = format!("{base}/v1/cluster/resize");
    let response = http.post(&url).query(&[("brokers", brokers)]).send().await.with_context(|| url.clone())?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{status}: {}", body["message"].as_str().unwrap_or("the resize was refused"));
    }
    if body["changed"] == true {
        println!("generation {} opened with {brokers} brokers", body["generation"]);
    } else {
        println!("the cluster already has {brokers} brokers: nothing changed");
    }
    Ok(())
}
