//! `runnel pressure`: the overload of issue 11, measured from outside. For a duration, at once:
//! - bulk: N producers, each on its own TCP connection, POST bodies of `--bulk-size` bytes
//!   back to back (honouring `Retry-After` on 503);
//! - slow: S connections each send a produce head declaring a 1 MiB body and 10 bytes of it,
//!   then nothing; one the broker closes is replaced by a new one;
//! - probes: P producers, each on its own connection, send one small record per request; the
//!   latency of a record runs from its first attempt to its 200, through 503s and retries, as
//!   a producer lives it;
//! - every 250 ms the brokers' /metrics are read for resident memory (VmRSS, VmHWM),
//!   connections and memory budgets.
//!
//! The report gives the probes' latency, what the bulk and slow connections got, and each
//! broker's peak resident memory against its memory limit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use runnel_client::Brokers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout_at};

use crate::bench::Latency;
use crate::connection::ConnectionArgs;
use crate::progress::Progress;

const MIB: f64 = 1024.0 * 1024.0;
/// What a slow connection declares, and what it sends of it.
const SLOW_DECLARED: usize = 1 << 20;
const SLOW_SENT: &[u8] = b"0123456789";
/// How long a probe waits for one answer before it gives up on that connection and retries.
const PROBE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a transport error (a broker down), so a dead broker is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(250);
const SCRAPE_EVERY: Duration = Duration::from_millis(250);

#[derive(clap::Args)]
pub struct PressureArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Bulk producers, each on its own connection, spread over the brokers.
    #[arg(long, default_value_t = 1000)]
    bulk: usize,
    /// Bytes per bulk request (NDJSON lines of 1 KiB).
    #[arg(long, default_value_t = 1 << 20)]
    bulk_size: usize,
    /// Slow connections held open at once (a head declaring 1 MiB, then 10 bytes of body).
    #[arg(long, default_value_t = 200)]
    slow: usize,
    /// Probe producers whose latency is measured, each on its own connection.
    #[arg(long, default_value_t = 8)]
    probes: usize,
    /// Bytes per probe record (one record per request).
    #[arg(long, default_value_t = 1024)]
    probe_size: usize,
    /// How long the load runs (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Brokers whose /metrics are read (repeat the flag; default: every broker found).
    #[arg(long)]
    metrics_host: Vec<String>,
    #[arg(long, default_value_t = 9253)]
    metrics_port: u16,
    /// The brokers' RUNNEL_MEMORY_LIMIT in bytes (default: four times the produce budget the
    /// metrics show, which is a quarter of the limit).
    #[arg(long)]
    memory_limit: Option<u64>,
    /// Also print a line of figures at this interval (e.g. 5s), for a timeline of a run.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeline: Option<Duration>,
    /// Fail (exit status 1, after the report) if the probes' p99 is above this (e.g. 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_p99: Option<Duration>,
    /// Fail (exit status 1, after the report) if a broker's peak RSS is more than this many MiB
    /// above its memory limit.
    #[arg(long)]
    max_overhead_mib: Option<u64>,
    /// Topic of the bulk producers; the probes write to `{topic}-probes` (default: new ones).
    #[arg(long)]
    topic: Option<String>,
}

/// What the bulk producers, or the probes, got; shared by their tasks.
#[derive(Default)]
struct Answers {
    acknowledged: AtomicU64,
    busy: AtomicU64,
    errors: AtomicU64,
    /// Answers other than 200 and 503, by status.
    other: Mutex<BTreeMap<u16, u64>>,
    last_error: Mutex<Option<String>>,
}

impl Answers {
    fn other_status(&self, status: u16) {
        *self.other.lock().unwrap_or_else(|p| p.into_inner()).entry(status).or_default() += 1;
    }

    fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
    }

    /// Counts an attempt that was not acknowledged; returns the pause before the next one (a
    /// transport error also moves on to the next broker).
    fn pause_after(&self, sent: Sent, broker: &mut usize) -> Duration {
        match sent {
            Sent::Acknowledged => Duration::ZERO,
            Sent::Busy(wait) => {
                self.busy.fetch_add(1, Ordering::Relaxed);
                wait
            }
            Sent::Other(status) => {
                self.other_status(status);
                ERROR_PAUSE
            }
            Sent::Failed(e) => {
                self.error(e);
                *broker += 1;
                ERROR_PAUSE
            }
        }
    }

    fn line(&self) -> String {
        let other = self.other.lock().unwrap_or_else(|p| p.into_inner());
        let other: Vec<String> = other.iter().map(|(status, n)| format!("{status}: {n}")).collect();
        let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "acknowledged {}, 503 {}, other statuses [{}], transport errors {}{}",
            self.acknowledged.load(Ordering::Relaxed),
            self.busy.load(Ordering::Relaxed),
            other.join(", "),
            self.errors.load(Ordering::Relaxed),
            last.as_ref().map(|e| format!(" (last: {e})")).unwrap_or_default()
        )
    }
}

/// What happened to the slow connections.
#[derive(Default)]
struct SlowCounts {
    opened: AtomicU64,
    /// Closed by the broker after a 408 (body timeout).
    timed_out: AtomicU64,
    /// Answered 503 (connection limit) and closed.
    refused: AtomicU64,
    /// Closed with another answer, or none.
    closed_otherwise: AtomicU64,
    connect_errors: AtomicU64,
    /// Longest time the broker held one before closing it (ms).
    longest_held_ms: AtomicU64,
}

/// The brokers whose metrics are read, each with what was read.
type Watched = Arc<Vec<(String, Mutex<Gauges>)>>;

/// The figures read from one broker's /metrics over the run.
#[derive(Default, Clone)]
struct Gauges {
    /// Absent where the broker does not export it (builds before issue 11).
    resident: Option<u64>,
    /// At the first scrape: what the broker holds before the load builds up.
    resident_first: Option<u64>,
    resident_max: u64,
    resident_peak: u64,
    connections_open: u64,
    connections_open_max: u64,
    connections_refused: u64,
    produce_budget: u64,
    /// Most reserved at once, by memory class.
    reserved_max: BTreeMap<String, u64>,
    scrapes: u64,
    scrape_failures: u64,
}

impl Gauges {
    fn read(&mut self, text: &str) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let value = value as u64;
            match name {
                "runnel_process_resident_bytes" => {
                    self.resident = Some(value);
                    self.resident_first.get_or_insert(value);
                    self.resident_max = self.resident_max.max(value);
                }
                "runnel_process_resident_peak_bytes" => self.resident_peak = self.resident_peak.max(value),
                "runnel_connections_open" => {
                    self.connections_open = value;
                    self.connections_open_max = self.connections_open_max.max(value);
                }
                "runnel_connections_refused_total" => self.connections_refused = value,
                "runnel_memory_budget_bytes{class=\"produce\"}" => self.produce_budget = value,
                _ => {
                    if let Some(class) = name
                        .strip_prefix("runnel_memory_reserved_bytes{class=\"")
                        .and_then(|rest| rest.strip_suffix("\"}"))
                    {
                        let most = self.reserved_max.entry(class.to_string()).or_default();
                        *most = (*most).max(value);
                    }
                }
            }
        }
    }
}

pub async fn run(args: PressureArgs) -> anyhow::Result<()> {
    if args.bulk_size < 1024 || args.probe_size < 2 {
        bail!("--bulk-size must be at least 1024 and --probe-size at least 2");
    }
    let brokers = args.connection.brokers().await.context("finding the brokers")?;
    let topic = args.topic.clone().unwrap_or_else(|| format!("pressure-{}", crate::bench::now_micros() / 1000));
    let probe_topic = format!("{topic}-probes");
    let metrics_hosts = if args.metrics_host.is_empty() { brokers.hosts.clone() } else { args.metrics_host.clone() };
    println!(
        "runnel pressure: {} brokers, {} bulk × {} B, {} slow, {} probes × {} B, {:?}, topics {topic} and {probe_topic}",
        brokers.hosts.len(),
        args.bulk,
        args.bulk_size,
        args.slow,
        args.probes,
        args.probe_size,
        args.duration
    );
    let started = Instant::now();
    let deadline = started + args.duration;
    let brokers = Arc::new(brokers);

    let watched: Watched = Arc::new(metrics_hosts.into_iter().map(|host| (host, Mutex::default())).collect());
    let scraper = tokio::spawn(scrape(watched.clone(), args.metrics_port, deadline));

    // Slow connections and probes connect first, so that the bulk producers cannot take every
    // connection the broker allows before them.
    let slow = Arc::new(SlowCounts::default());
    let mut tasks = Vec::new();
    for i in 0..args.slow {
        let (host, port) = (brokers.hosts[i % brokers.hosts.len()].clone(), brokers.producer_port);
        tasks.push(tokio::spawn(hold_slow(host, port, topic.clone(), slow.clone(), deadline)));
    }
    let probes = Arc::new(Answers::default());
    let unfinished = Arc::new(Mutex::new(Vec::new()));
    let mut probe_tasks = Vec::new();
    let record = Bytes::from(format!("{}\n", "p".repeat(args.probe_size - 1)));
    for i in 0..args.probes {
        let target = Target { brokers: brokers.clone(), first: i, path: format!("/v1/topic/{probe_topic}/messages") };
        probe_tasks.push(tokio::spawn(probe(target, record.clone(), probes.clone(), unfinished.clone(), deadline)));
    }
    let bulk = Arc::new(Answers::default());
    let bulk_body = ndjson_lines(args.bulk_size);
    for i in 0..args.bulk {
        let target = Target { brokers: brokers.clone(), first: i, path: format!("/v1/topic/{topic}/messages") };
        tasks.push(tokio::spawn(produce_bulk(target, bulk_body.clone(), bulk.clone(), deadline)));
    }

    let shown = Shown { started, deadline, watched: watched.clone(), bulk: bulk.clone(), probes: probes.clone() };
    let watch = tokio::spawn(show_progress(shown, args.timeline, args.bulk_size));
    let mut latency = Histogram::<u64>::new(3)?;
    for task in probe_tasks {
        latency.add(task.await??)?;
    }
    for task in tasks {
        task.await?;
    }
    watch.await?;
    scraper.await?;
    let seconds = started.elapsed().as_secs_f64();

    println!("== runnel pressure report ({seconds:.1} s)");
    let acknowledged = bulk.acknowledged.load(Ordering::Relaxed);
    println!(
        "bulk    {} connections × {} B: {:.1} MB/s acknowledged; {}",
        args.bulk,
        args.bulk_size,
        acknowledged as f64 * args.bulk_size as f64 / seconds / 1e6,
        bulk.line()
    );
    println!(
        "slow    {} at a time: {} opened, {} closed by the broker after 408, {} refused with 503, {} closed otherwise, \
         {} connect errors; longest held {:.1} s",
        args.slow,
        slow.opened.load(Ordering::Relaxed),
        slow.timed_out.load(Ordering::Relaxed),
        slow.refused.load(Ordering::Relaxed),
        slow.closed_otherwise.load(Ordering::Relaxed),
        slow.connect_errors.load(Ordering::Relaxed),
        slow.longest_held_ms.load(Ordering::Relaxed) as f64 / 1000.0
    );
    let unfinished = unfinished.lock().unwrap_or_else(|p| p.into_inner());
    println!("probes  {} × {} B records: {}", args.probes, args.probe_size, probes.line());
    println!("probes  latency until acknowledged: {}", Latency::of(&latency).line());
    let mut failures = Vec::new();
    let p99 = Duration::from_micros(latency.value_at_quantile(0.99));
    if let Some(most) = args.max_p99.filter(|most| p99 > *most || latency.is_empty()) {
        failures.push(format!("the probes' p99 is {p99:?} ({} samples), above {most:?}", latency.len()));
    }
    // A record the end cut off is a wait the histogram misses: say so when it is a long one.
    let cut_long = unfinished.iter().filter(|waited| **waited >= Duration::from_secs(1)).count();
    if let Some(longest) = unfinished.iter().max().filter(|_| cut_long > 0) {
        println!(
            "probes  {cut_long} records unacknowledged at the end after waiting 1 s or more (longest {:.1} s)",
            longest.as_secs_f64()
        );
    }
    for (host, gauges) in watched.iter() {
        let g = gauges.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let limit = args.memory_limit.unwrap_or(g.produce_budget * 4);
        let ratio = |bytes: u64| if limit > 0 { format!("{:.2}", bytes as f64 / limit as f64) } else { "?".into() };
        let reserved: Vec<String> =
            g.reserved_max.iter().map(|(class, b)| format!("{class} {:.1}", *b as f64 / MIB)).collect();
        let Some(first) = g.resident_first else {
            println!(
                "broker  {host}: exports no resident memory ({} scrapes, {} failed)",
                g.scrapes, g.scrape_failures
            );
            if args.max_overhead_mib.is_some() {
                failures.push(format!("{host} exports no resident memory"));
            }
            continue;
        };
        if let Some(most) = args.max_overhead_mib.filter(|most| g.resident_peak > limit + most * (1 << 20)) {
            failures.push(format!("{host}'s peak RSS is more than {most} MiB above its memory limit"));
        }
        println!(
            "broker  {host}: peak RSS {:.1} MiB (VmHWM), highest RSS sampled {:.1} MiB, at the first scrape {:.1} MiB; \
             memory limit {:.0} MiB: peak/limit {}, peak − limit {:+.1} MiB",
            g.resident_peak as f64 / MIB,
            g.resident_max as f64 / MIB,
            first as f64 / MIB,
            limit as f64 / MIB,
            ratio(g.resident_peak),
            (g.resident_peak as f64 - limit as f64) / MIB
        );
        println!(
            "broker  {host}: connections open at most {}, refused {}; most reserved (MiB): {}; {} scrapes, {} failed",
            g.connections_open_max,
            g.connections_refused,
            reserved.join(", "),
            g.scrapes,
            g.scrape_failures
        );
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    if args.max_p99.is_some() || args.max_overhead_mib.is_some() {
        println!("passed: within --max-p99 and --max-overhead-mib");
    }
    Ok(())
}

/// Where a producer task sends: broker `first` of the list, moving to the next one after a
/// transport error.
struct Target {
    brokers: Arc<Brokers>,
    first: usize,
    path: String,
}

/// A client that keeps one connection, so each task is one TCP connection to its broker.
fn one_connection_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(1).build()?)
}

/// `size` bytes of NDJSON: 1 KiB lines, the last one shorter.
fn ndjson_lines(size: usize) -> Bytes {
    let mut body = Vec::with_capacity(size);
    while body.len() < size {
        let line = (size - body.len()).min(1024);
        body.extend(std::iter::repeat_n(b'x', line - 1));
        body.push(b'\n');
    }
    Bytes::from(body)
}

/// The seconds a 503 asks to wait (1 if it does not say).
fn retry_after(response: &reqwest::Response) -> Duration {
    let seconds = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    Duration::from_secs(seconds.unwrap_or(1))
}

/// One attempt's outcome.
enum Sent {
    Acknowledged,
    /// 503: try again after this.
    Busy(Duration),
    Other(u16),
    Failed(anyhow::Error),
}

async fn post(http: &reqwest::Client, url: &str, body: Bytes) -> Sent {
    let response = match http.post(url).header("content-type", "application/x-ndjson").body(body).send().await {
        Ok(response) => response,
        Err(e) => return Sent::Failed(e.into()),
    };
    let status = response.status().as_u16();
    let wait = retry_after(&response);
    // Read the answer to its end, so the connection can carry the next request.
    if let Err(e) = response.bytes().await {
        return Sent::Failed(e.into());
    }
    match status {
        200 => Sent::Acknowledged,
        503 => Sent::Busy(wait),
        status => Sent::Other(status),
    }
}

async fn produce_bulk(target: Target, body: Bytes, answers: Arc<Answers>, deadline: Instant) {
    let http = match one_connection_client() {
        Ok(http) => http,
        Err(e) => return answers.error(e),
    };
    let mut broker = target.first;
    while Instant::now() < deadline {
        let url = match target.brokers.producer_url(broker, &target.path) {
            Ok(url) => url,
            Err(e) => return answers.error(e),
        };
        let Ok(sent) = timeout_at(deadline.into(), post(&http, &url, body.clone())).await else { return };
        if let Sent::Acknowledged = sent {
            answers.acknowledged.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let pause = answers.pause_after(sent, &mut broker);
        sleep_until((Instant::now() + pause).min(deadline).into()).await;
    }
}

/// Sends records one at a time; returns the latency (µs) of each acknowledged one, from its
/// first attempt. A record still waiting at the deadline adds its wait to `unfinished`.
async fn probe(
    target: Target,
    record: Bytes,
    answers: Arc<Answers>,
    unfinished: Arc<Mutex<Vec<Duration>>>,
    deadline: Instant,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new(3)?;
    let http = one_connection_client()?;
    let mut broker = target.first;
    while Instant::now() < deadline {
        let first_try = Instant::now();
        let acknowledged = loop {
            let url = target.brokers.producer_url(broker, &target.path)?;
            let attempt_deadline = (Instant::now() + PROBE_ATTEMPT_TIMEOUT).min(deadline);
            let sent = match timeout_at(attempt_deadline.into(), post(&http, &url, record.clone())).await {
                Ok(sent) => sent,
                Err(_) if Instant::now() >= deadline => break false,
                Err(_) => Sent::Failed(anyhow::anyhow!("no answer within {PROBE_ATTEMPT_TIMEOUT:?}")),
            };
            if let Sent::Acknowledged = sent {
                break true;
            }
            let pause = answers.pause_after(sent, &mut broker);
            if Instant::now() + pause >= deadline {
                break false;
            }
            tokio::time::sleep(pause).await;
        };
        if acknowledged {
            latency.record(first_try.elapsed().as_micros() as u64)?;
            answers.acknowledged.fetch_add(1, Ordering::Relaxed);
        } else {
            unfinished.lock().unwrap_or_else(|p| p.into_inner()).push(first_try.elapsed());
        }
    }
    Ok(latency)
}

/// Holds one slow connection after another until the deadline.
async fn hold_slow(host: String, port: u16, topic: String, counts: Arc<SlowCounts>, deadline: Instant) {
    let head = format!(
        "POST /v1/topic/{topic}/messages HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {SLOW_DECLARED}\r\n\r\n"
    );
    while Instant::now() < deadline {
        let Ok(held) = timeout_at(deadline.into(), hold_one_slow(&host, port, head.as_bytes(), &counts)).await else {
            return;
        };
        if held.is_err() {
            counts.connect_errors.fetch_add(1, Ordering::Relaxed);
            sleep_until((Instant::now() + ERROR_PAUSE).min(deadline).into()).await;
        }
    }
}

/// Opens a connection, sends the head and 10 bytes, and reads until the broker closes it.
async fn hold_one_slow(host: &str, port: u16, head: &[u8], counts: &SlowCounts) -> std::io::Result<()> {
    let mut stream = TcpStream::connect((host, port)).await?;
    let opened = Instant::now();
    counts.opened.fetch_add(1, Ordering::Relaxed);
    stream.write_all(head).await?;
    stream.write_all(SLOW_SENT).await?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) if answer.len() < 64 => answer.extend_from_slice(&buffer[..n]),
            Ok(_) => {}
        }
    }
    let status = answer.get(9..12).unwrap_or_default();
    let count = match status {
        b"408" => &counts.timed_out,
        b"503" => &counts.refused,
        _ => &counts.closed_otherwise,
    };
    count.fetch_add(1, Ordering::Relaxed);
    counts.longest_held_ms.fetch_max(opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    Ok(())
}

/// Reads every broker's /metrics each [`SCRAPE_EVERY`] until the deadline.
async fn scrape(watched: Watched, port: u16, deadline: Instant) {
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(SCRAPE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sleep_until(deadline.into()) => return,
        }
        let reads = watched.iter().map(|(host, _)| {
            let url = format!("http://{host}:{port}/metrics");
            let request = http.get(url).timeout(SCRAPE_EVERY * 4).send();
            async move { request.await?.error_for_status()?.text().await }
        });
        let texts = futures_util::future::join_all(reads).await;
        for (text, (_, gauges)) in texts.into_iter().zip(watched.iter()) {
            let mut gauges = gauges.lock().unwrap_or_else(|p| p.into_inner());
            gauges.scrapes += 1;
            match text {
                Ok(text) => gauges.read(&text),
                Err(_) => gauges.scrape_failures += 1,
            }
        }
    }
}

/// What the progress line and the timeline show.
struct Shown {
    started: Instant,
    deadline: Instant,
    watched: Watched,
    bulk: Arc<Answers>,
    probes: Arc<Answers>,
}

/// A progress line on a terminal each second, and with `timeline` a line on standard output
/// at that interval, until the deadline.
async fn show_progress(shown: Shown, timeline: Option<Duration>, bulk_size: usize) {
    let Shown { started, deadline, watched, bulk, probes } = shown;
    let mut progress = Progress::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next_line = timeline.map(|every| started + every);
    let mut bulk_before = 0;
    let mut line_before = started;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sleep_until(deadline.into()) => break,
        }
        let brokers = || {
            let each = watched.iter().map(|(host, g)| {
                let g = g.lock().unwrap_or_else(|p| p.into_inner());
                match g.resident {
                    Some(rss) => format!("{host} RSS {:.0} MiB conns {}", rss as f64 / MIB, g.connections_open),
                    None => format!("{host} RSS n/a"),
                }
            });
            each.collect::<Vec<_>>().join(" | ")
        };
        let acked = bulk.acknowledged.load(Ordering::Relaxed);
        progress
            .update(|| format!("bulk {acked} probes {} | {}", probes.acknowledged.load(Ordering::Relaxed), brokers()));
        if let (Some(at), Some(every)) = (next_line, timeline) {
            if Instant::now() >= at {
                progress.finish();
                let mb_per_s =
                    (acked - bulk_before) as f64 * bulk_size as f64 / line_before.elapsed().as_secs_f64() / 1e6;
                println!(
                    "t={:>4.0}s bulk {mb_per_s:>6.1} MB/s, 503 {:>6}; probes {:>6} acked, 503 {:>4} | {}",
                    started.elapsed().as_secs_f64(),
                    bulk.busy.load(Ordering::Relaxed),
                    probes.acknowledged.load(Ordering::Relaxed),
                    probes.busy.load(Ordering::Relaxed),
                    brokers()
                );
                (bulk_before, line_before, next_line) = (acked, Instant::now(), Some(at + every));
            }
        }
    }
    progress.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_keep_the_highest_values_the_metrics_showed() {
        let scrape = |rss: u64, connections: u64, produce: u64| {
            format!(
                "# HELP runnel_process_resident_bytes Resident memory\n\
                 runnel_process_resident_bytes {rss}\n\
                 runnel_process_resident_peak_bytes {}\n\
                 runnel_connections_open {connections}\n\
                 runnel_connections_refused_total 3\n\
                 runnel_memory_budget_bytes{{class=\"produce\"}} 67108864\n\
                 runnel_memory_reserved_bytes{{class=\"produce\"}} {produce}\n",
                rss + 1
            )
        };
        let mut gauges = Gauges::default();
        gauges.read(&scrape(100, 7, 5));
        gauges.read(&scrape(50, 9, 2));
        assert_eq!(gauges.resident, Some(50));
        assert_eq!((gauges.resident_first, gauges.resident_max, gauges.resident_peak), (Some(100), 100, 101));
        assert_eq!((gauges.connections_open, gauges.connections_open_max, gauges.connections_refused), (9, 9, 3));
        assert_eq!((gauges.produce_budget, gauges.reserved_max.get("produce")), (67108864, Some(&5)));
    }

    #[test]
    fn a_bulk_body_is_its_size_in_ndjson_lines() {
        let body = ndjson_lines((1 << 20) + 10);
        assert_eq!(body.len(), (1 << 20) + 10);
        let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 1026, "1,025 lines and the empty rest after the last newline");
        assert!(lines[..1024].iter().all(|l| l.len() == 1023) && lines[1024].len() == 9);
    }
}
