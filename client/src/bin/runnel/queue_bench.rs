//! `runnel queue bench`: fills a topic with N records of S bytes, then W workers of one queue
//! group lease them in batches of B and acknowledge each batch, as fast as they can or paced
//! to a total rate. Prints acknowledged records/s and the latency of each worker's `next`
//! (HDR histogram), optionally as JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use runnel_client::{Brokers, Producer, QueueConsumer, QueueSettings, SettleResult};
use serde::Serialize;

use crate::bench::{ndjson_body, now_micros, Latency};

#[derive(clap::Args)]
pub struct QueueBenchArgs {
    /// Records to produce, then lease and acknowledge.
    #[arg(short = 'n', long, default_value_t = 200_000)]
    records: u64,
    /// Bytes per record (at least 40).
    #[arg(short = 's', long, default_value_t = 1024)]
    size: usize,
    /// Workers of the group, each with its own `QueueConsumer`.
    #[arg(short = 'w', long, default_value_t = 16)]
    workers: usize,
    /// Records per `next`.
    #[arg(short = 'b', long, default_value_t = 100)]
    batch: usize,
    /// Total acknowledgement rate the workers pace themselves to (0: as fast as they can).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Report {
    records: u64,
    workers: usize,
    batch: usize,
    target_rate: u64,
    produce_records_per_s: f64,
    acked_records_per_s: f64,
    acked_mb_per_s: f64,
    redelivered: u64,
    /// Records an answered `next` brought on average.
    records_per_next: f64,
    next_latency: Latency,
    ack_latency: Latency,
}

pub async fn run(brokers: Brokers, args: QueueBenchArgs) -> anyhow::Result<()> {
    if args.size < 40 || args.batch == 0 || args.workers == 0 || args.records == 0 {
        bail!("--size must be at least 40; --records, --batch and --workers at least 1");
    }
    let topic = format!("queue-bench-{}", now_micros());
    let group = format!("{topic}-workers");
    let settings = QueueSettings { topics: vec![topic.clone()], ..QueueSettings::default() };
    QueueConsumer::new(brokers.clone(), &group, &[]).configure(&settings).await?;

    let started = Instant::now();
    fill(&brokers, &topic, &args).await?;
    let produce_s = started.elapsed().as_secs_f64();
    eprintln!("produced {} records in {produce_s:.1} s", args.records);

    let acked = Arc::new(AtomicU64::new(0));
    let redelivered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.workers)
        .map(|_| {
            let worker = QueueConsumer::new(brokers.clone(), &group, &[]);
            let (acked, redelivered) = (acked.clone(), redelivered.clone());
            let (records, batch) = (args.records, args.batch);
            // Each worker's share of the rate: one record every `pause`.
            let pause = (args.rate > 0).then(|| Duration::from_secs_f64(args.workers as f64 / args.rate as f64));
            tokio::spawn(work(worker, (records, batch, pause), acked, redelivered))
        })
        .collect();
    let (mut next_latency, mut ack_latency) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    for task in tasks {
        let (next, ack) = task.await??;
        next_latency.add(next)?;
        ack_latency.add(ack)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = acked.load(Ordering::Relaxed);
    let report = Report {
        records: args.records,
        workers: args.workers,
        batch: args.batch,
        target_rate: args.rate,
        produce_records_per_s: args.records as f64 / produce_s,
        acked_records_per_s: done as f64 / elapsed,
        acked_mb_per_s: done as f64 * args.size as f64 / elapsed / 1e6,
        redelivered: redelivered.load(Ordering::Relaxed),
        records_per_next: done as f64 / next_latency.len().max(1) as f64,
        next_latency: Latency::of(&next_latency),
        ack_latency: Latency::of(&ack_latency),
    };
    println!(
        "acked {done} records in {elapsed:.1} s: {:.0} records/s, {:.1} MB/s ({} workers, batches of {}, {:.0} records a next); \
         next p50 {:.2} ms p99 {:.2} ms; ack p50 {:.2} ms p99 {:.2} ms; redelivered {}",
        report.acked_records_per_s,
        report.acked_mb_per_s,
        args.workers,
        args.batch,
        report.records_per_next,
        report.next_latency.p50_ms,
        report.next_latency.p99_ms,
        report.ack_latency.p50_ms,
        report.ack_latency.p99_ms,
        report.redelivered,
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

/// Produces the records: 16 producers, 256 records per request.
async fn fill(brokers: &Brokers, topic: &str, args: &QueueBenchArgs) -> anyhow::Result<()> {
    let producer = Producer::new(brokers.clone());
    let next = Arc::new(AtomicU64::new(0));
    let requests = args.records.div_ceil(256);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (producer, next, topic, size, records) =
                (producer.clone(), next.clone(), topic.to_string(), args.size, args.records);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let count = 256.min(records - i * 256);
                    producer.send_batch(&topic, None, ndjson_body(count, size, now_micros())).await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// One worker: lease, acknowledge, until every record is acknowledged; the latency (µs) of
/// its `next` calls that returned records and of its acks.
async fn work(
    mut worker: QueueConsumer,
    (records, batch, pause): (u64, usize, Option<Duration>),
    acked: Arc<AtomicU64>,
    redelivered: Arc<AtomicU64>,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let (mut next_latency, mut ack_latency) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    let mut due = Instant::now();
    while acked.load(Ordering::Relaxed) < records {
        if pause.is_some() {
            tokio::time::sleep_until(due.into()).await;
        }
        let asked = Instant::now();
        let leased = worker.next(batch, Duration::from_millis(500)).await?;
        if leased.is_empty() {
            continue;
        }
        if let Some(pause) = pause {
            due = due.max(asked) + pause * leased.len() as u32;
        }
        next_latency.record(asked.elapsed().as_micros() as u64)?;
        redelivered.fetch_add(leased.iter().filter(|r| r.delivery_count > 1).count() as u64, Ordering::Relaxed);
        let tokens: Vec<String> = leased.into_iter().map(|r| r.ack_token).collect();
        let asked = Instant::now();
        let results = worker.ack(&tokens).await?;
        ack_latency.record(asked.elapsed().as_micros() as u64)?;
        acked.fetch_add(results.iter().filter(|r| **r == SettleResult::Ok).count() as u64, Ordering::Relaxed);
    }
    Ok((next_latency, ack_latency))
}
