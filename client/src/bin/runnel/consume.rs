//! `runnel consume`: read a topic with a consumer group and print one record per line.

use std::time::{Duration, Instant};

use runnel_client::{Consumer, ConsumerConfig, StartFrom, DEFAULT_WAIT};

use crate::connection::ConnectionArgs;
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Topics to read.
    #[arg(required = true)]
    topics: Vec<String>,
    #[arg(long, short = 'g', default_value = "runnel-cli")]
    group: String,
    /// Consumer id (default: a new one per run).
    #[arg(long)]
    id: Option<String>,
    /// Where a new group starts: earliest, latest, or @MS (the first record appended at or
    /// after that time, ms since the Unix epoch).
    #[arg(long, default_value = "earliest", value_parser = parse_start)]
    from: StartFrom,
    /// Keep waiting for new records instead of stopping when there are none.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    max: Option<usize>,
    /// Print topic, partition and offset before each record.
    #[arg(long)]
    offsets: bool,
}

fn parse_start(text: &str) -> Result<StartFrom, String> {
    match text {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        _ => text
            .strip_prefix('@')
            .and_then(|ms| ms.parse().ok())
            .map(StartFrom::Timestamp)
            .ok_or_else(|| format!("'{text}' is not a start: earliest, latest or @MS")),
    }
}

/// Without --follow, stop once every broker had nothing new for this long.
const QUIET: Duration = Duration::from_secs(2);

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let brokers = args.connection.brokers().await?;
    let id = args.id.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        format!("runnel-cli-{}-{}", std::process::id(), now.as_millis())
    });
    let start = args.from;
    // Without --follow a quiet cluster ends the run: a broker answers by then.
    let wait = if args.follow { DEFAULT_WAIT } else { QUIET / 2 };
    let config = ConsumerConfig { id, group: args.group.clone(), topics: args.topics.clone(), start, wait };
    let mut consumer = Consumer::connect(brokers, config).await?;
    let (mut count, mut last_record, mut progress) = (0usize, Instant::now(), Progress::new());
    'reading: loop {
        let records = consumer.poll().await?;
        if !records.is_empty() {
            last_record = Instant::now();
        }
        for record in records {
            if args.offsets {
                println!(
                    "{}\t{}\t{}\t{}",
                    record.topic,
                    record.partition.map_or(-1, i64::from),
                    record.offset,
                    record.value
                );
            } else {
                println!("{}", record.value);
            }
            count += 1;
            if args.max.is_some_and(|max| count >= max) {
                break 'reading;
            }
        }
        progress.update(|| format!("consumed {count} records"));
        if !args.follow && last_record.elapsed() > QUIET {
            break;
        }
        tokio::time::sleep(consumer.next_poll_in().min(Duration::from_millis(500))).await;
    }
    consumer.close().await?;
    progress.finish();
    eprintln!("consumed {count} records");
    Ok(())
}
