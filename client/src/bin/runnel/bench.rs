//! `runnel bench`: C producers send NDJSON batches of S-byte records to all brokers at a fixed
//! or maximum rate, for a count or a duration, while a consumer group reads them back (or,
//! with --consume-after, once producing is over).
//! Prints records/s, MB/s and latency percentiles (HDR histogram) of produce requests and of
//! end-to-end delivery (each record carries its send time), optionally as JSON.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use runnel_client::{Brokers, Consumer, ConsumerConfig, Producer, ProducerConfig, Record, StartFrom};
use serde::Serialize;

use crate::connection::ConnectionArgs;
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Records to produce (ignored with --duration).
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    records: u64,
    /// Produce for this many seconds instead of a fixed count.
    #[arg(long)]
    duration: Option<u64>,
    /// Bytes per record (at least 40).
    #[arg(long, short = 's', default_value_t = 1024)]
    size: usize,
    /// Concurrent producers (spread over the brokers).
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// Records per NDJSON request.
    #[arg(long, short = 'b', default_value_t = 256)]
    batch: u64,
    /// Target rate in records/s over all producers (0: as fast as acknowledged).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Consumers in the group that reads the records back (0: produce only).
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Start the consumer group only once producing is over, so that produce and consume are
    /// each measured alone (end-to-end latency is then not reported).
    #[arg(long)]
    consume_after: bool,
    /// How long each broker may hold a consumer's poll waiting for records (a long-poll); 0
    /// polls as v1 clients do, pausing for the broker's Retry-After when there is nothing new.
    #[arg(long, default_value_t = runnel_client::DEFAULT_WAIT.as_millis() as u64)]
    poll_wait_ms: u64,
    /// Produce without idempotence (no Producer-Id/Epoch/Seq headers), to compare.
    #[arg(long)]
    no_idempotence: bool,
    /// Topic (default: a new one per run).
    #[arg(long)]
    topic: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    p90_ms: f64,
    pub p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    count: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
            count: h.len(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms ({} samples)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

#[derive(Serialize)]
struct Report {
    brokers: usize,
    record_bytes: usize,
    producers: usize,
    batch: u64,
    target_rate: u64,
    produced: u64,
    produce_seconds: f64,
    produce_records_per_s: f64,
    produce_mb_per_s: f64,
    produce_latency: Latency,
    /// Whether the producers were idempotent (the default).
    idempotent: bool,
    /// Requests the brokers answered as repeats of ones stored before (a retry whose first
    /// attempt had been stored): nothing was stored twice for them.
    duplicates: u64,
    /// Distinct records read.
    consumed: u64,
    /// Deliveries beyond the first of a record (after a rebalance, from the committed offset).
    repeated: u64,
    consume_seconds: f64,
    consume_mb_per_s: f64,
    end_to_end_latency: Option<Latency>,
}

pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// `count` JSON records of exactly `size` bytes, each carrying the send time.
pub(crate) fn ndjson_body(count: u64, size: usize, sent_at: u64) -> Vec<Bytes> {
    let head = format!("{{\"t\":{sent_at:>20},\"p\":\"");
    let fill = size.saturating_sub(head.len() + 2);
    let mut record = String::with_capacity(size);
    record.push_str(&head);
    record.extend(std::iter::repeat_n('x', fill));
    record.push_str("\"}");
    let record = Bytes::from(record);
    (0..count).map(|_| record.clone()).collect()
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.size < 40 || args.batch == 0 || args.concurrency == 0 {
        bail!("--size must be at least 40, --batch and --concurrency at least 1");
    }
    let brokers = args.connection.brokers().await.context("finding the brokers")?;
    let topic = args.topic.clone().unwrap_or_else(|| format!("bench-{}", now_micros() / 1000));
    eprintln!(
        "runnel bench: {} brokers, {} B records, {} producers × {} records/request, rate {}, topic {topic}",
        brokers.hosts.len(),
        args.size,
        args.concurrency,
        args.batch,
        if args.rate == 0 { "max".to_string() } else { format!("{}/s", args.rate) }
    );
    let produced = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(Mutex::new(Reads::new()?));
    let consumers = || {
        start_consumers(&brokers, &args, &topic, consumed.clone(), producing.clone(), produced.clone(), reads.clone())
    };
    let concurrent_readers = if args.consume_after { Vec::new() } else { consumers().await? };
    let (stop_progress, progress_stopped) = tokio::sync::oneshot::channel();
    let progress = tokio::spawn(show_progress(produced.clone(), consumed.clone(), progress_stopped));

    let started = Instant::now();
    let duplicates = Arc::new(AtomicU64::new(0));
    let produce_latency = produce(&brokers, &args, &topic, (produced.clone(), duplicates.clone())).await?;
    let produce_seconds = started.elapsed().as_secs_f64();
    producing.store(false, Ordering::Release);
    let consume_started = Instant::now();
    let readers = if args.consume_after { consumers().await? } else { concurrent_readers };
    for reader in readers {
        reader.await??;
    }
    let _ = stop_progress.send(());
    progress.await?;
    let total = produced.load(Ordering::Acquire);
    let got = consumed.load(Ordering::Acquire);
    if args.consumers > 0 && got < total {
        bail!("consumed {got} records, produced {total}: records are missing");
    }
    let consume_seconds =
        consume_started.elapsed().as_secs_f64() + if args.consume_after { 0.0 } else { produce_seconds };
    let reads = reads.lock().map_err(|_| anyhow::anyhow!("reads lock"))?;
    let report = Report {
        brokers: brokers.hosts.len(),
        record_bytes: args.size,
        producers: args.concurrency,
        batch: args.batch,
        target_rate: args.rate,
        produced: total,
        produce_seconds,
        produce_records_per_s: total as f64 / produce_seconds,
        produce_mb_per_s: total as f64 * args.size as f64 / produce_seconds / 1e6,
        produce_latency: Latency::of(&produce_latency),
        idempotent: !args.no_idempotence,
        duplicates: duplicates.load(Ordering::Acquire),
        consumed: got,
        repeated: reads.deliveries - got,
        consume_seconds,
        consume_mb_per_s: got as f64 * args.size as f64 / consume_seconds / 1e6,
        end_to_end_latency: (args.consumers > 0 && !args.consume_after).then(|| Latency::of(&reads.e2e)),
    };
    println!(
        "produce: {:.0} records/s, {:.1} MB/s over {:.2} s; request latency {}; {}",
        report.produce_records_per_s,
        report.produce_mb_per_s,
        report.produce_seconds,
        report.produce_latency.line(),
        if report.idempotent {
            format!("idempotent, {} requests answered as repeats", report.duplicates)
        } else {
            "not idempotent".to_string()
        }
    );
    if args.consumers > 0 {
        let e2e = report.end_to_end_latency.as_ref().map(|e2e| format!("; end-to-end latency {}", e2e.line()));
        println!(
            "consume: {} records ({} delivered again), {:.1} MB/s over {:.2} s{}",
            report.consumed,
            report.repeated,
            report.consume_mb_per_s,
            report.consume_seconds,
            e2e.unwrap_or_default()
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Shows the counts once a second until `stop` fires (or its sender is gone), then ends the line.
async fn show_progress(
    produced: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut progress = Progress::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => progress.update(|| {
                format!("produced {} consumed {}", produced.load(Ordering::Relaxed), consumed.load(Ordering::Relaxed))
            }),
            _ = &mut stop => break,
        }
    }
    progress.finish();
}

/// Runs the producers; returns their request latency (µs).
async fn produce(
    brokers: &Brokers,
    args: &BenchArgs,
    topic: &str,
    (produced, duplicates): (Arc<AtomicU64>, Arc<AtomicU64>),
) -> anyhow::Result<Histogram<u64>> {
    let deadline = args.duration.map(|s| Instant::now() + Duration::from_secs(s));
    let requests = if deadline.is_some() { u64::MAX } else { args.records.div_ceil(args.batch) };
    let next = Arc::new(AtomicU64::new(0));
    // Each producer sends every `pause` to reach the target rate together.
    let pause = (args.rate > 0)
        .then(|| Duration::from_secs_f64(args.batch as f64 * args.concurrency as f64 / args.rate as f64));
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        // Idempotent, a producer's unkeyed requests go to the partition of its id, sent to its
        // leader. Otherwise one producer per broker in turn: unkeyed records stay on the
        // receiving broker.
        let config = ProducerConfig { idempotent: !args.no_idempotence, ..ProducerConfig::default() };
        let targets = if config.idempotent {
            brokers.clone()
        } else {
            Brokers {
                hosts: vec![brokers.hosts[worker % brokers.hosts.len()].clone()],
                discovery_port: None,
                in_ordinal_order: false,
                ..brokers.clone()
            }
        };
        let producer = Producer::with_config(targets, config);
        let (next, produced, duplicates, topic) =
            (next.clone(), produced.clone(), duplicates.clone(), topic.to_string());
        let (records, batch, size) = (args.records, args.batch, args.size);
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3)?;
            let mut due = Instant::now();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests || deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok::<_, anyhow::Error>(latency);
                }
                if let Some(pause) = pause {
                    tokio::time::sleep_until(due.into()).await;
                    due += pause;
                }
                let count = if deadline.is_some() { batch } else { batch.min(records - i * batch) };
                let sent = Instant::now();
                let stored = producer.send_batch(&topic, None, ndjson_body(count, size, now_micros())).await?;
                latency.record(sent.elapsed().as_micros() as u64)?;
                if stored.duplicate {
                    duplicates.fetch_add(1, Ordering::Relaxed);
                }
                produced.fetch_add(count, Ordering::Relaxed);
            }
        }));
    }
    let mut latency = Histogram::<u64>::new(3)?;
    for worker in workers {
        latency.add(worker.await??)?;
    }
    Ok(latency)
}

/// What the group has read. Records of a partition arrive in offset order and a rebalance
/// only repeats records (from the committed offset), never skips one, so the records read at
/// least once are the sum over partitions of the offset after the last one seen.
struct Reads {
    ends: HashMap<u32, i64>,
    deliveries: u64,
    e2e: Histogram<u64>,
}

impl Reads {
    fn new() -> anyhow::Result<Reads> {
        Ok(Reads { ends: HashMap::new(), deliveries: 0, e2e: Histogram::new(3)? })
    }

    fn distinct(&self) -> u64 {
        self.ends.values().map(|end| *end as u64).sum()
    }

    fn add(&mut self, records: &[Record]) -> anyhow::Result<()> {
        let now = now_micros();
        for record in records {
            let Some(partition) = record.partition else {
                bail!("a poll did not say which partition a record is from")
            };
            let end = self.ends.entry(partition).or_default();
            *end = (*end).max(record.offset + 1);
            if let Some(sent) = record.value.get("t").and_then(|t| t.as_u64()) {
                self.e2e.record(now.saturating_sub(sent))?;
            }
        }
        self.deliveries += records.len() as u64;
        Ok(())
    }
}

/// A new group reading the topic from the start (every member registers before any polls, so
/// the partitions are dealt once); each reader stops once producing is over and every record
/// produced was read.
async fn start_consumers(
    brokers: &Brokers,
    args: &BenchArgs,
    topic: &str,
    consumed: Arc<AtomicU64>,
    producing: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    reads: Arc<Mutex<Reads>>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let group = format!("{topic}-readers");
    let mut members = Vec::new();
    for i in 0..args.consumers {
        let config = ConsumerConfig {
            id: format!("{group}-{i}"),
            group: group.clone(),
            topics: vec![topic.to_string()],
            start: StartFrom::Earliest,
            wait: Duration::from_millis(args.poll_wait_ms),
        };
        members.push(Consumer::connect(brokers.clone(), config).await?);
    }
    let mut readers = Vec::new();
    for mut consumer in members {
        let (consumed, producing, produced, reads) =
            (consumed.clone(), producing.clone(), produced.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let give_up = Duration::from_secs(60);
            let mut last_progress = Instant::now();
            loop {
                let done = !producing.load(Ordering::Acquire)
                    && consumed.load(Ordering::Acquire) >= produced.load(Ordering::Acquire);
                if done {
                    break;
                }
                if last_progress.elapsed() > give_up {
                    bail!("no record arrived for {give_up:?}");
                }
                let records = consumer.poll().await?;
                if records.is_empty() {
                    tokio::time::sleep(consumer.next_poll_in().min(Duration::from_millis(20))).await;
                    continue;
                }
                last_progress = Instant::now();
                let mut reads = reads.lock().map_err(|_| anyhow::anyhow!("reads lock"))?;
                reads.add(&records)?;
                consumed.store(reads.distinct(), Ordering::Release);
            }
            consumer.close().await?;
            Ok(())
        }));
    }
    Ok(readers)
}
