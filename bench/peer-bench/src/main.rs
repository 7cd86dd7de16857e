//! The `runnel bench --consume-after` workload against RabbitMQ Streams, Redis Streams and NATS
//! JetStream, for bench/compare-peers.
//!
//! Produce: C producers, each on its own connection, take turns at batches of B records of S
//! bytes until N are stored; a producer puts a whole batch in flight at once (B publishes
//! without waiting, or one pipeline of B XADDs) and then waits until every record of it is
//! acknowledged, as `runnel bench` sends B records per request and waits for the 200. The
//! latency is that of a batch: from its first publish to its last acknowledgement.
//!
//! With `--streams S` (RabbitMQ, NATS) the records are spread over S streams, producer i
//! writing to stream i mod S, so the leaders' work is spread over the nodes as a Runnel
//! topic's partitions are.
//!
//! Consume, once producing is over: K consumers, each on its own connection, read all N back
//! from the backlog in batches and acknowledge what they read (with S streams, max(1, K/S)
//! readers per stream).
//!
//! Prints one line per phase, and with --json writes the same JSON shape for every system.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use hdrhistogram::Histogram;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    system: System,
}

#[derive(Subcommand)]
enum System {
    /// RabbitMQ Streams over the stream protocol (publisher confirms).
    Rabbitmq {
        /// A node's stream port; producers then go to the stream's leader, consumers to a
        /// replica, by the cluster's metadata.
        #[arg(long, default_value = "127.0.0.31:5552")]
        host: String,
        /// The stream's initial cluster size (replicas, leader included).
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        #[command(flatten)]
        workload: Workload,
    },
    /// Redis Streams: pipelines of XADD, then XREADGROUP + XACK.
    Redis {
        /// The primary, host:port.
        #[arg(long, default_value = "127.0.0.41:6379")]
        primary: String,
        /// End each pipeline with `WAIT K 0` (block until K replicas have it); 0: no WAIT.
        #[arg(long, default_value_t = 2)]
        wait_replicas: u64,
        #[command(flatten)]
        workload: Workload,
    },
    /// NATS JetStream: async publishes with acks, then a durable pull consumer.
    Nats {
        /// Comma-separated server URLs.
        #[arg(long, default_value = "nats://127.0.0.21:4222")]
        servers: String,
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        #[command(flatten)]
        workload: Workload,
    },
}

#[derive(clap::Args, Clone)]
struct Workload {
    /// Records to produce, then to consume.
    #[arg(short = 'n', long = "records", default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per record.
    #[arg(short = 's', long = "size", default_value_t = 1024)]
    size: usize,
    /// Concurrent producers.
    #[arg(short = 'c', long = "concurrency", default_value_t = 16)]
    concurrency: usize,
    /// Records in flight per producer (one batch), and records per consumer fetch.
    #[arg(short = 'b', long = "batch", default_value_t = 256)]
    batch: u64,
    /// Consumers reading the backlog back (0: produce only).
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Streams the records are spread over (RabbitMQ and NATS; Redis has one primary): producer
    /// i writes to stream i mod S, as Runnel spreads a topic over its partitions' leaders.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Hands out batches: each call gives the size of the next one, until `records` are taken.
struct Batches {
    next: AtomicU64,
    records: u64,
    batch: u64,
}

impl Batches {
    fn new(w: &Workload) -> Arc<Batches> {
        Arc::new(Batches { next: AtomicU64::new(0), records: w.records, batch: w.batch })
    }

    fn claim(&self) -> Option<u64> {
        let start = self.next.fetch_add(1, Ordering::Relaxed).saturating_mul(self.batch);
        (start < self.records).then(|| self.batch.min(self.records - start))
    }
}

/// Records acknowledged per stream, so each stream's readers know how many to read.
struct Stored(Vec<AtomicU64>);

impl Stored {
    fn new(streams: usize) -> Arc<Stored> {
        Arc::new(Stored((0..streams).map(|_| AtomicU64::new(0)).collect()))
    }

    fn add(&self, stream: usize, count: u64) {
        self.0[stream].fetch_add(count, Ordering::Relaxed);
    }

    fn of(&self, stream: usize) -> u64 {
        self.0[stream].load(Ordering::Relaxed)
    }
}

/// How the readers split the backlog: every stream gets max(1, K / S) readers, each reading an
/// equal share of its offsets.
fn reader_shares(w: &Workload) -> usize {
    (w.consumers / w.streams.max(1)).max(1)
}

type Worker = tokio::task::JoinHandle<anyhow::Result<Histogram<u64>>>;

/// Waits for the producers; returns their merged batch latency (µs) and the seconds since `started`.
async fn join_producers(workers: Vec<Worker>, started: Instant) -> anyhow::Result<(Histogram<u64>, f64)> {
    let mut latency = Histogram::<u64>::new(3)?;
    for worker in workers {
        latency.add(worker.await??)?;
    }
    Ok((latency, started.elapsed().as_secs_f64()))
}

async fn join_consumers(
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<u64>>>,
    started: Instant,
) -> anyhow::Result<(u64, f64)> {
    let mut consumed = 0;
    for worker in workers {
        consumed += worker.await??;
    }
    Ok((consumed, started.elapsed().as_secs_f64()))
}

struct Outcome<'a> {
    system: String,
    durability: &'a str,
    consume: &'a str,
    latency: Histogram<u64>,
    produce_seconds: f64,
    consumed: u64,
    consume_seconds: f64,
}

const LATENCY_MEASURES: &str =
    "per batch of B records: from its first publish to the acknowledgement of its last record";

fn report(w: &Workload, o: Outcome) -> anyhow::Result<()> {
    let ms = |q: f64| o.latency.value_at_quantile(q) as f64 / 1000.0;
    let rate = w.records as f64 / o.produce_seconds;
    let mb = w.records as f64 * w.size as f64 / o.produce_seconds / 1e6;
    let consume_rate = if o.consume_seconds > 0.0 { o.consumed as f64 / o.consume_seconds } else { 0.0 };
    let consume_mb = consume_rate * w.size as f64 / 1e6;
    println!(
        "{}: produce {rate:.0} records/s, {mb:.1} MB/s over {:.2} s; batch latency p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms ({} samples)",
        o.system, o.produce_seconds, ms(0.5), ms(0.9), ms(0.99), ms(0.999), o.latency.max() as f64 / 1000.0, o.latency.len()
    );
    if w.consumers > 0 {
        println!(
            "{}: consume {} records, {consume_rate:.0} records/s, {consume_mb:.1} MB/s over {:.2} s",
            o.system, o.consumed, o.consume_seconds
        );
    }
    if let Some(path) = &w.json {
        let report = serde_json::json!({
            "system": o.system, "durability": o.durability, "consume": o.consume,
            "latency_measures": LATENCY_MEASURES,
            "record_bytes": w.size, "producers": w.concurrency, "batch": w.batch, "consumers": w.consumers,
            "produced": w.records, "produce_seconds": o.produce_seconds,
            "produce_records_per_s": rate, "produce_mb_per_s": mb,
            "produce_latency": {"p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
                                "max_ms": o.latency.max() as f64 / 1000.0, "count": o.latency.len()},
            "consumed": o.consumed, "consume_seconds": o.consume_seconds,
            "consume_records_per_s": consume_rate, "consume_mb_per_s": consume_mb,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", path.display()))?;
    }
    if w.consumers > 0 && o.consumed != w.records {
        bail!("{}: consumed {} records, produced {}", o.system, o.consumed, w.records);
    }
    Ok(())
}

/// How long a consumer may wait for its next record before the run fails.
const GIVE_UP: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().system {
        System::Rabbitmq { host, replicas, workload } => rabbitmq(&host, replicas, &workload).await,
        System::Redis { primary, wait_replicas, workload } => redis_streams(&primary, wait_replicas, &workload).await,
        System::Nats { servers, replicas, workload } => nats(&servers, replicas, &workload).await,
    }
}

async fn rabbitmq(host: &str, replicas: usize, w: &Workload) -> anyhow::Result<()> {
    use rabbitmq_stream_client::types::{Message, OffsetSpecification};
    use rabbitmq_stream_client::Environment;

    let (address, port) = host.rsplit_once(':').context("--host is host:port")?;
    let env = Environment::builder()
        .host(address)
        .port(port.parse().context("--host port")?)
        .username("guest")
        .password("guest")
        .build()
        .await
        .context("connecting to RabbitMQ")?;
    let streams: Vec<String> = (0..w.streams.max(1)).map(|j| format!("bench{}-{j}", std::process::id())).collect();
    let options = rabbitmq_stream_client::ClientOptions::builder()
        .host(address)
        .port(port.parse()?)
        .user("guest")
        .password("guest")
        .build();
    let client = rabbitmq_stream_client::Client::connect(options).await?;
    let members = |b: &rabbitmq_stream_client::types::Broker| format!("{}:{}", b.host, b.port);
    let mut leaders = std::collections::BTreeMap::<String, usize>::new();
    for stream in &streams {
        let mut creator = env.stream_creator();
        creator.options.insert("initial-cluster-size".to_string(), replicas.to_string());
        // Spread the leaders over the nodes (the default puts each on the node asked).
        creator.options.insert("queue-leader-locator".to_string(), "least-leaders".to_string());
        creator.create(stream).await.with_context(|| format!("creating the stream {stream}"))?;
        // The metadata names a replica once it runs, which a new stream's may not yet.
        let mut waited = 0;
        let metadata = loop {
            let mut answer = client.metadata(vec![stream.clone()]).await?;
            let metadata = answer.remove(stream).context("no metadata for the stream")?;
            if metadata.replicas.len() + 1 == replicas {
                break metadata;
            }
            if waited == 100 {
                bail!("the stream {stream} has {} members after 10 s, not {replicas}", metadata.replicas.len() + 1);
            }
            waited += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        *leaders.entry(members(&metadata.leader)).or_default() += 1;
    }
    eprintln!("rabbitmq: {} streams of {replicas} members, leaders per node {leaders:?}", streams.len());
    client.close().await?;

    let payload = vec![b'x'; w.size];
    let batches = Batches::new(w);
    let stored = Stored::new(streams.len());
    let mut producers = Vec::new();
    for i in 0..w.concurrency {
        let stream = i % streams.len();
        let producer = env.producer().batch_size(w.batch as usize).build(&streams[stream]).await.context("a producer")?;
        producers.push((stream, producer));
    }
    let started = Instant::now();
    let mut workers: Vec<Worker> = Vec::new();
    for (stream, producer) in producers {
        let (batches, payload, stored) = (batches.clone(), payload.clone(), stored.clone());
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3)?;
            let (confirmed, mut confirmations) = tokio::sync::mpsc::unbounded_channel::<Result<bool, String>>();
            while let Some(count) = batches.claim() {
                let messages = (0..count).map(|_| Message::builder().body(payload.clone()).build()).collect();
                let sent = Instant::now();
                let confirmed = confirmed.clone();
                producer
                    .batch_send(messages, move |status| {
                        let _ = confirmed.send(status.map(|s| s.confirmed()).map_err(|e| e.to_string()));
                        async {}
                    })
                    .await?;
                for _ in 0..count {
                    match confirmations.recv().await {
                        Some(Ok(true)) => {}
                        Some(Ok(false)) => bail!("a message was not confirmed"),
                        Some(Err(e)) => bail!("publishing: {e}"),
                        None => bail!("the confirmations stopped"),
                    }
                }
                latency.record(sent.elapsed().as_micros() as u64)?;
                stored.add(stream, count);
            }
            producer.close().await?;
            Ok(latency)
        }));
    }
    let (latency, produce_seconds) = join_producers(workers, started).await?;

    // A stream is read by every consumer in full: a stream's readers split its offsets 0..n
    // (a new stream's offsets are its records') and each reads its share from its first offset.
    let started = Instant::now();
    let mut readers = Vec::new();
    let shares = reader_shares(w) as u64;
    for (j, stream) in streams.iter().enumerate() {
        let records = stored.of(j);
        let share = records.div_ceil(shares);
        for i in 0..shares {
            let (start, end) = (i * share, ((i + 1) * share).min(records));
            if start >= end {
                continue;
            }
            let (env, stream, batch) = (env.clone(), stream.clone(), w.batch);
            readers.push(tokio::spawn(async move {
                let mut consumer = env
                    .consumer()
                    .name(&format!("{stream}-reader{i}"))
                    .offset(OffsetSpecification::Offset(start))
                    .build(&stream)
                    .await
                    .context("a consumer")?;
                let mut got = 0;
                while got < end - start {
                    let delivery = tokio::time::timeout(GIVE_UP, consumer.next())
                        .await
                        .context("no record came for a minute")?
                        .context("the consumer ended")??;
                    let offset = delivery.offset();
                    if offset < start {
                        continue;
                    }
                    if offset >= end {
                        bail!("a reader of {stream} got offset {offset} past its share {start}..{end}");
                    }
                    got += 1;
                    if got % batch == 0 || got == end - start {
                        consumer.store_offset(offset).await?;
                    }
                }
                consumer.handle().close().await?;
                Ok(got)
            }));
        }
    }
    let (consumed, consume_seconds) = join_consumers(readers, started).await?;
    for stream in &streams {
        env.delete_stream(stream).await.ok();
    }
    report(
        w,
        Outcome {
            system: "rabbitmq".to_string(),
            durability: "streams with initial-cluster-size 3; publisher confirms (sent once a quorum of the replicas has written the chunk; osiris does not fsync)",
            consume: "named stream consumers, max(1, K/S) per stream, each reading an equal range of its offsets; store_offset every B records",
            latency,
            produce_seconds,
            consumed,
            consume_seconds,
        },
    )
}

async fn redis_streams(primary: &str, wait_replicas: u64, w: &Workload) -> anyhow::Result<()> {
    use redis::streams::StreamReadReply;
    use redis::AsyncConnectionConfig;

    if w.streams > 1 {
        bail!("Redis Streams here have one primary: --streams does not apply");
    }

    let client = redis::Client::open(format!("redis://{primary}/"))?;
    let config = AsyncConnectionConfig::new().set_response_timeout(None);
    let key = format!("bench{}", std::process::id());
    let payload = Bytes::from(vec![b'x'; w.size]);
    let batches = Batches::new(w);
    let mut connections = Vec::new();
    for _ in 0..w.concurrency {
        connections.push(client.get_multiplexed_async_connection_with_config(&config).await.context("connecting to Redis")?);
    }
    let started = Instant::now();
    let mut workers: Vec<Worker> = Vec::new();
    for mut connection in connections {
        let (batches, payload, key) = (batches.clone(), payload.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3)?;
            while let Some(count) = batches.claim() {
                let mut pipe = redis::pipe();
                for _ in 0..count {
                    pipe.cmd("XADD").arg(&key).arg("*").arg("d").arg(&payload[..]).ignore();
                }
                let sent = Instant::now();
                if wait_replicas > 0 {
                    pipe.cmd("WAIT").arg(wait_replicas).arg(0);
                    let (acked,): (u64,) = pipe.query_async(&mut connection).await?;
                    if acked < wait_replicas {
                        bail!("WAIT {wait_replicas} 0 answered {acked}");
                    }
                } else {
                    let () = pipe.query_async(&mut connection).await?;
                }
                latency.record(sent.elapsed().as_micros() as u64)?;
            }
            Ok(latency)
        }));
    }
    let (latency, produce_seconds) = join_producers(workers, started).await?;

    let started = Instant::now();
    let mut connection = client.get_multiplexed_async_connection_with_config(&config).await?;
    let () = redis::cmd("XGROUP").arg("CREATE").arg(&key).arg("readers").arg("0").query_async(&mut connection).await?;
    let mut readers = Vec::new();
    for i in 0..w.consumers {
        let (client, config, key, batch) = (client.clone(), config.clone(), key.clone(), w.batch);
        readers.push(tokio::spawn(async move {
            let mut connection = client.get_multiplexed_async_connection_with_config(&config).await?;
            let name = format!("reader{i}");
            let (mut got, mut unacked) = (0u64, Vec::<String>::new());
            // Each round trip acknowledges the previous batch and reads the next one; a read
            // that finds nothing new means the backlog is all handed out.
            loop {
                let mut pipe = redis::pipe();
                if !unacked.is_empty() {
                    pipe.cmd("XACK").arg(&key).arg("readers").arg(&unacked).ignore();
                }
                pipe.cmd("XREADGROUP").arg("GROUP").arg("readers").arg(&name).arg("COUNT").arg(batch);
                pipe.arg("STREAMS").arg(&key).arg(">");
                let (reply,): (Option<StreamReadReply>,) =
                    tokio::time::timeout(GIVE_UP, pipe.query_async(&mut connection)).await.context("XREADGROUP hung")??;
                unacked = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).map(|id| id.id).collect();
                if unacked.is_empty() {
                    return Ok::<_, anyhow::Error>(got);
                }
                got += unacked.len() as u64;
            }
        }));
    }
    let (consumed, consume_seconds) = join_consumers(readers, started).await?;
    let () = redis::cmd("DEL").arg(&key).query_async(&mut connection).await?;
    let durability = if wait_replicas > 0 {
        format!("appendonly yes, appendfsync always; each pipeline ends with WAIT {wait_replicas} 0 (replicas acknowledge receipt, not fsync; no quorum: replication is asynchronous)")
    } else {
        "appendonly yes, appendfsync always on the primary; no WAIT (replicas asynchronous)".to_string()
    };
    report(
        w,
        Outcome {
            system: if wait_replicas > 0 { format!("redis-wait{wait_replicas}") } else { "redis".to_string() },
            durability: &durability,
            consume: "one consumer group, K consumers: XREADGROUP COUNT B, then XACK of the batch pipelined with the next read",
            latency,
            produce_seconds,
            consumed,
            consume_seconds,
        },
    )
}

async fn nats(servers: &str, replicas: usize, w: &Workload) -> anyhow::Result<()> {
    use async_nats::jetstream::{self, consumer, stream};

    let servers = servers
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing --servers")?;
    let connect = move || async_nats::connect(servers.clone());
    let js = jetstream::new(connect().await.context("connecting to NATS")?);
    let names: Vec<String> = (0..w.streams.max(1)).map(|j| format!("bench{}-{j}", std::process::id())).collect();
    let mut leaders = std::collections::BTreeMap::<String, usize>::new();
    for name in &names {
        let mut created = js
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.>")],
                num_replicas: replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating the stream {name}"))?;
        let leader = created.info().await?.cluster.as_ref().and_then(|c| c.leader.clone()).unwrap_or_default();
        *leaders.entry(leader).or_default() += 1;
    }
    eprintln!("nats: {} streams of {replicas} replicas, leaders per server {leaders:?}", names.len());
    let payload = Bytes::from(vec![b'x'; w.size]);
    let batches = Batches::new(w);
    let stored = Stored::new(names.len());
    let mut clients = Vec::new();
    for _ in 0..w.concurrency {
        clients.push(jetstream::new(connect().await?));
    }
    let started = Instant::now();
    let mut workers: Vec<Worker> = Vec::new();
    for (i, producer) in clients.into_iter().enumerate() {
        let stream = i % names.len();
        let subject = format!("{}.records", names[stream]);
        let (batches, payload, stored) = (batches.clone(), payload.clone(), stored.clone());
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3)?;
            while let Some(count) = batches.claim() {
                let sent = Instant::now();
                let mut acks = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    acks.push(producer.publish(subject.clone(), payload.clone()).await?);
                }
                for ack in acks {
                    ack.await?;
                }
                latency.record(sent.elapsed().as_micros() as u64)?;
                stored.add(stream, count);
            }
            Ok(latency)
        }));
    }
    let (latency, produce_seconds) = join_producers(workers, started).await?;

    let started = Instant::now();
    let mut readers = Vec::new();
    for (j, name) in names.iter().enumerate() {
        js.get_stream(name)
            .await?
            .create_consumer(consumer::pull::Config {
                durable_name: Some("readers".to_string()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: -1,
                ..Default::default()
            })
            .await
            .context("creating the consumer")?;
        let consumed = Arc::new(AtomicU64::new(0));
        let total = stored.of(j);
        for _ in 0..reader_shares(w) {
            let (connect, name, consumed, batch) = (connect.clone(), name.clone(), consumed.clone(), w.batch);
            readers.push(tokio::spawn(async move {
                let client = connect().await?;
                let reader: consumer::PullConsumer = jetstream::new(client.clone())
                    .get_stream(&name)
                    .await?
                    .get_consumer("readers")
                    .await
                    .map_err(|e| anyhow!("the consumer: {e}"))?;
                let (mut got, mut last_progress) = (0u64, Instant::now());
                // Fetches (no wait) of up to B messages, each acknowledged, until the stream's
                // records are all read.
                while consumed.load(Ordering::Acquire) < total {
                    let mut messages = reader.fetch().max_messages(batch as usize).messages().await?;
                    let mut fetched = 0;
                    while let Some(message) = messages.next().await {
                        message.map_err(|e| anyhow!("fetching: {e}"))?.ack().await.map_err(|e| anyhow!("acking: {e}"))?;
                        fetched += 1;
                    }
                    if fetched == 0 {
                        if last_progress.elapsed() > GIVE_UP {
                            bail!("no message came for a minute");
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    last_progress = Instant::now();
                    got += fetched;
                    consumed.fetch_add(fetched, Ordering::AcqRel);
                }
                client.flush().await?;
                Ok::<_, anyhow::Error>(got)
            }));
        }
    }
    let (consumed, consume_seconds) = join_consumers(readers, started).await?;
    for name in &names {
        js.delete_stream(name).await.ok();
    }
    report(
        w,
        Outcome {
            system: "nats".to_string(),
            durability: "file storage, 3 replicas; acknowledged once a quorum of replicas has it (with sync_interval: always each fsyncs first)",
            consume: "a durable pull consumer (explicit acks) per stream, max(1, K/S) fetchers of up to B messages (no wait) on each, each message acked",
            latency,
            produce_seconds,
            consumed,
            consume_seconds,
        },
    )
}
