//! Publishes N records of S bytes to a JetStream stream with C concurrent producers, each
//! keeping B publishes in flight and waiting for all their acks (as `runnel bench` sends B
//! records per request and waits for the 200). Prints the same figures as `runnel bench`,
//! and JSON with --json.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;

#[derive(Parser)]
struct Args {
    /// Comma-separated server URLs.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    servers: String,
    #[arg(short = 'n', default_value_t = 1_000_000)]
    records: u64,
    #[arg(short = 's', default_value_t = 1024)]
    size: usize,
    #[arg(short = 'c', default_value_t = 16)]
    concurrency: usize,
    #[arg(short = 'b', default_value_t = 256)]
    batch: u64,
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let servers = args
        .servers
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing --servers")?;
    let client = async_nats::connect(servers).await.context("connecting to NATS")?;
    let js = jetstream::new(client);
    let name = format!("bench{}", std::process::id());
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        num_replicas: args.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating the stream")?;
    let subject = format!("{name}.records");
    let payload = Bytes::from(vec![b'x'; args.size]);
    let requests = args.records.div_ceil(args.batch);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (js, subject, payload, next) = (js.clone(), subject.clone(), payload.clone(), next.clone());
        let (records, batch) = (args.records, args.batch);
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3)?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return Ok::<_, anyhow::Error>(latency);
                }
                let count = batch.min(records - i * batch);
                let sent = Instant::now();
                let mut acks = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    acks.push(js.publish(subject.clone(), payload.clone()).await?);
                }
                for ack in acks {
                    ack.await?;
                }
                latency.record(sent.elapsed().as_micros() as u64)?;
            }
        }));
    }
    let mut latency = Histogram::<u64>::new(3)?;
    for worker in workers {
        latency.add(worker.await??)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let rate = args.records as f64 / secs;
    let mb = args.records as f64 * args.size as f64 / secs / 1e6;
    println!(
        "produce: {rate:.0} records/s, {mb:.1} MB/s over {secs:.2} s; request latency p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms ({} samples)",
        ms(0.5), ms(0.9), ms(0.99), ms(0.999), latency.max() as f64 / 1000.0, latency.len()
    );
    if let Some(path) = args.json {
        let report = serde_json::json!({
            "produce_records_per_s": rate, "produce_mb_per_s": mb, "produce_seconds": secs,
            "produce_latency": {"p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
                                "max_ms": latency.max() as f64 / 1000.0, "count": latency.len()}
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
