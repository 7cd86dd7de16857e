//! `runnel produce`: one record per stdin line (NDJSON lines or plain text).

use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use runnel_client::Producer;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::connection::ConnectionArgs;
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Topic to write to.
    topic: String,
    /// Partition key: records with the same key keep their order.
    #[arg(long, short = 'k')]
    key: Option<String>,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let producer = Producer::new(args.connection.brokers().await?);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut batch: Vec<Bytes> = Vec::new();
    let (mut sent, started, mut progress) = (0usize, Instant::now(), Progress::new());
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        if line.is_empty() {
            continue;
        }
        batch.push(Bytes::from(line));
        if batch.len() >= args.batch {
            sent += send(&producer, &args, std::mem::take(&mut batch)).await?;
            progress.update(|| format!("produced {sent} records"));
        }
    }
    if !batch.is_empty() {
        sent += send(&producer, &args, batch).await?;
    }
    progress.finish();
    eprintln!("produced {sent} records to {} in {:.2} s", args.topic, started.elapsed().as_secs_f64());
    Ok(())
}

async fn send(producer: &Producer, args: &ProduceArgs, batch: Vec<Bytes>) -> anyhow::Result<usize> {
    let count = batch.len();
    producer.send_batch(&args.topic, args.key.as_deref(), batch).await?;
    Ok(count)
}
