//! The `runnel bench --consume-after` workload against RabbitMQ Streams, Redis Streams and NATS
//! JetStream, for bench/compare-peers.
//!
//! Produce: C producers, each on its own connection, take turns at batches of B records of S
//! bytes until N are stored; a producer puts a whole batch in flight at once (B publishes
//! without waiting, or one pipeline of B XADDs) and then waits until every record of it is
//! acknowledged, as `runnel bench` sends B records per request and waits for the 200. The
//! latency is that of a batch: from its first publish to its last acknowledgement.
//!
//! Consume, once producing is over: K consumers, each on its own connection, read all N back
//! from the backlog in batches and acknowledge what they read.
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
    let stream = format!("bench{}", std::process::id());
    let mut creator = env.stream_creator();
    creator.options.insert("initial-cluster-size".to_string(), replicas.to_string());
    creator.create(&stream).await.context("creating the stream")?;
    let options = rabbitmq_stream_client::ClientOptions::builder()
        .host(address)
        .port(port.parse()?)
        .user("guest")
        .password("guest")
        .build();
    let client = rabbitmq_stream_client::Client::connect(options).await?;
    let metadata = client.metadata(vec![stream.clone()]).await?;
    let metadata = metadata.get(&stream).context("no metadata for the stream")?;
    let members = |b: &rabbitmq_stream_client::types::Broker| format!("{}:{}", b.host, b.port);
    eprintln!(
        "rabbitmq: stream {stream}, leader {}, replicas {}",
        members(&metadata.leader),
        metadata.replicas.iter().map(members).collect::<Vec<_>>().join(" ")
    );
    if metadata.replicas.len() + 1 != replicas {
        bail!("the stream has {} members, not {replicas}", metadata.replicas.len() + 1);
    }
    client.close().await?;

    let payload = vec![b'x'; w.size];
    let batches = Batches::new(w);
    let mut producers = Vec::new();
    for _ in 0..w.concurrency {
        producers.push(env.producer().batch_size(w.batch as usize).build(&stream).await.context("a producer")?);
    }
    let started = Instant::now();
    let mut workers: Vec<Worker> = Vec::new();
    for producer in producers {
        let (batches, payload) = (batches.clone(), payload.clone());
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
            }
            producer.close().await?;
            Ok(latency)
        }));
    }
    let (latency, produce_seconds) = join_producers(workers, started).await?;

    // A stream is read by every consumer in full: the K consumers split the offsets 0..N (a
    // new stream's offsets are the records') and each reads its share from its first offset.
    let started = Instant::now();
    let mut readers = Vec::new();
    let share = w.records.div_ceil(w.consumers.max(1) as u64);
    for i in 0..w.consumers as u64 {
        let (start, end) = (i * share, ((i + 1) * share).min(w.records));
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
                    bail!("reader {i} got offset {offset} past its share {start}..{end}");
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
    let (consumed, consume_seconds) = join_consumers(readers, started).await?;
    env.delete_stream(&stream).await.ok();
    report(
        w,
        Outcome {
            system: "rabbitmq".to_string(),
            durability: "stream with initial-cluster-size 3; publisher confirms (sent once a quorum of the replicas has written the chunk; osiris does not fsync)",
            consume: "K named stream consumers, each reading an equal range of offsets; store_offset every B records",
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
    let name = format!("bench{}", std::process::id());
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating the stream")?;
    let subject = format!("{name}.records");
    let payload = Bytes::from(vec![b'x'; w.size]);
    let batches = Batches::new(w);
    let mut clients = Vec::new();
    for _ in 0..w.concurrency {
        clients.push(jetstream::new(connect().await?));
    }
    let started = Instant::now();
    let mut workers: Vec<Worker> = Vec::new();
    for producer in clients {
        let (batches, payload, subject) = (batches.clone(), payload.clone(), subject.clone());
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
            }
            Ok(latency)
        }));
    }
    let (latency, produce_seconds) = join_producers(workers, started).await?;

    let started = Instant::now();
    let stream = js.get_stream(&name).await?;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("readers".to_string()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: -1,
            ..Default::default()
        })
        .await
        .context("creating the consumer")?;
    let consumed = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..w.consumers {
        let (connect, name, consumed, total, batch) = (connect.clone(), name.clone(), consumed.clone(), w.records, w.batch);
        readers.push(tokio::spawn(async move {
            let client = connect().await?;
            let reader: consumer::PullConsumer =
                jetstream::new(client.clone()).get_stream(&name).await?.get_consumer("readers")
                    .await
                    .map_err(|e| anyhow!("the consumer: {e}"))?;
            let (mut got, mut last_progress) = (0u64, Instant::now());
            // Fetches (no wait) of up to B messages, each acknowledged, until all N are read.
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
    let (consumed, consume_seconds) = join_consumers(readers, started).await?;
    js.delete_stream(&name).await.ok();
    report(
        w,
        Outcome {
            system: "nats".to_string(),
            durability: "file storage, 3 replicas; acknowledged once a quorum of replicas has it (with sync_interval: always each fsyncs first)",
            consume: "one durable pull consumer (explicit acks), K fetchers of up to B messages (no wait), each message acked",
            latency,
            produce_seconds,
            consumed,
            consume_seconds,
        },
    )
}
