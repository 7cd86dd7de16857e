//! `runnel queue`: work a queue group's records (lease, handle, acknowledge), lease or settle
//! by hand, and see or change the group (SPEC §14).

use std::time::Duration;

use runnel_client::{QueueConsumer, QueueRecord, QueueSettings};

use crate::connection::ConnectionArgs;

#[derive(clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Lease records batch after batch, print each (one JSON line) once it is acknowledged.
    Work(WorkArgs),
    /// Lease one batch and print it with its ack tokens, acknowledging nothing.
    Next(NextArgs),
    /// Acknowledge leased records by their ack tokens.
    Ack(SettleArgs),
    /// Give leased records back (leased again after --delay-ms).
    Nack(SettleArgs),
    /// Extend leases by the group's ackWaitMs from now.
    Extend(SettleArgs),
    /// Create the group or change its settings.
    Set(SetArgs),
    /// The group's settings and what is acknowledged of each partition.
    Show { group: String },
    /// Fill a new topic, then lease and acknowledge it all with W workers: records/s and the
    /// latency of `next` and ack.
    Bench(crate::queue_bench::QueueBenchArgs),
}

#[derive(clap::Args)]
struct Group {
    group: String,
    /// The group's topics (needed when the group is created by this call).
    #[arg(long = "topic")]
    topics: Vec<String>,
}

#[derive(clap::Args)]
struct WorkArgs {
    #[command(flatten)]
    group: Group,
    /// Records leased per batch.
    #[arg(short = 'b', long, default_value_t = 100)]
    batch_size: usize,
    /// Stop after this many records were acknowledged.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Time spent handling each record before it is acknowledged (to stand for real work).
    #[arg(long, default_value_t = 0)]
    process_ms: u64,
}

#[derive(clap::Args)]
struct NextArgs {
    #[command(flatten)]
    group: Group,
    #[arg(short = 'b', long, default_value_t = 10)]
    batch_size: usize,
    /// Longest wait for a record, ms.
    #[arg(long, default_value_t = 5_000)]
    wait: u64,
}

#[derive(clap::Args)]
struct SettleArgs {
    group: String,
    #[arg(required = true)]
    tokens: Vec<String>,
    /// Nack only: how long until the records are leased again, ms.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[derive(clap::Args)]
struct SetArgs {
    #[command(flatten)]
    group: Group,
    #[arg(long)]
    ack_wait_ms: Option<u64>,
    /// Deliveries before a record goes to the dead-letter topic (-1: unlimited).
    #[arg(long, allow_negative_numbers = true)]
    max_deliver: Option<i64>,
    #[arg(long)]
    dead_letter_topic: Option<String>,
    /// One lease at a time per key, in offset order.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    ordered: Option<bool>,
}

pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    let brokers = args.connection.brokers().await?;
    let worker = |group: &Group| {
        let topics: Vec<&str> = group.topics.iter().map(String::as_str).collect();
        QueueConsumer::new(brokers.clone(), &group.group, &topics)
    };
    match args.action {
        Action::Work(work) => run_worker(worker(&work.group), &work).await,
        Action::Next(next) => {
            let records = worker(&next.group).next(next.batch_size, Duration::from_millis(next.wait)).await?;
            for record in &records {
                println!("{}", line(record, None));
            }
            Ok(())
        }
        Action::Ack(settle) => print_results(&settle, worker(&bare(&settle)).ack(&settle.tokens).await?),
        Action::Extend(settle) => print_results(&settle, worker(&bare(&settle)).extend(&settle.tokens).await?),
        Action::Nack(settle) => {
            let delay = Duration::from_millis(settle.delay_ms);
            print_results(&settle, worker(&bare(&settle)).nack(&settle.tokens, delay).await?)
        }
        Action::Set(set) => {
            let settings = QueueSettings {
                topics: set.group.topics.clone(),
                ack_wait_ms: set.ack_wait_ms,
                max_deliver: set.max_deliver,
                dead_letter_topic: set.dead_letter_topic,
                ordered: set.ordered,
            };
            println!("{}", serde_json::to_string_pretty(&worker(&set.group).configure(&settings).await?)?);
            Ok(())
        }
        Action::Bench(bench) => crate::queue_bench::run(brokers, bench).await,
        Action::Show { group } => {
            let shown = worker(&Group { group, topics: Vec::new() }).describe().await?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }
    }
}

fn bare(settle: &SettleArgs) -> Group {
    Group { group: settle.group.clone(), topics: Vec::new() }
}

fn print_results(settle: &SettleArgs, results: Vec<runnel_client::SettleResult>) -> anyhow::Result<()> {
    for (token, result) in settle.tokens.iter().zip(results) {
        println!("{}", serde_json::json!({ "ack_token": token, "result": result }));
    }
    Ok(())
}

/// A record as one JSON line: with its ack token, or with the outcome of its ack.
fn line(record: &QueueRecord, ack: Option<runnel_client::SettleResult>) -> serde_json::Value {
    let mut line = serde_json::json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "deliveryCount": record.delivery_count,
        "value": record.value,
    });
    match ack {
        Some(result) => line["ack"] = serde_json::to_value(result).unwrap_or_default(),
        None => line["ack_token"] = record.ack_token.clone().into(),
    }
    line
}

async fn run_worker(mut worker: QueueConsumer, args: &WorkArgs) -> anyhow::Result<()> {
    let mut acked = 0u64;
    loop {
        let records = worker.next(args.batch_size, Duration::from_secs(5)).await?;
        if args.process_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.process_ms * records.len() as u64)).await;
        }
        let tokens: Vec<String> = records.iter().map(|r| r.ack_token.clone()).collect();
        let results = worker.ack(&tokens).await?;
        for (record, result) in records.iter().zip(results) {
            println!("{}", line(record, Some(result)));
            acked += u64::from(result == runnel_client::SettleResult::Ok);
        }
        if args.count.is_some_and(|n| acked >= n) {
            return Ok(());
        }
    }
}
