//! `runnel read`: a partition's records from a position, with no group; `runnel tail`: a
//! topic's new records as they are appended (every partition's live stream).

use std::time::Duration;

use futures_util::StreamExt;
use runnel_client::{Position, PositionedRecord, Reader};

use crate::connection::ConnectionArgs;

#[derive(clap::Args)]
pub struct ReadArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    topic: String,
    #[arg(long, short = 'p')]
    partition: u32,
    /// Where to start: earliest, latest, an offset, or @MS for the first record appended at
    /// or after that time (ms since the Unix epoch).
    #[arg(long, default_value = "earliest", value_parser = parse_position)]
    from: Position,
    /// Stop after this many records (without it, at the end of what is readable now).
    #[arg(long, short = 'n')]
    max: Option<usize>,
    /// Print partition, offset and append time before each record.
    #[arg(long)]
    offsets: bool,
}

#[derive(clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    topic: String,
    /// Only this partition (default: every partition).
    #[arg(long, short = 'p')]
    partition: Option<u32>,
    /// Where to start: latest (the default), earliest, an offset, or @MS.
    #[arg(long, default_value = "latest", value_parser = parse_position)]
    from: Position,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    max: Option<usize>,
    /// Print partition, offset and append time before each record.
    #[arg(long)]
    offsets: bool,
}

fn parse_position(text: &str) -> Result<Position, String> {
    match text {
        "earliest" => Ok(Position::Earliest),
        "latest" => Ok(Position::Latest),
        _ => match text.strip_prefix('@') {
            Some(ms) => ms.parse().map(Position::Timestamp).map_err(|_| format!("@{ms} is not a time in ms")),
            None => text
                .parse()
                .map(Position::Offset)
                .map_err(|_| format!("'{text}' is not a position: earliest, latest, an offset or @MS")),
        },
    }
}

fn print(record: &PositionedRecord, offsets: bool) {
    if offsets {
        println!("{}\t{}\t{}\t{}", record.partition, record.offset, record.timestamp, record.value);
    } else {
        println!("{}", record.value);
    }
}

/// Records one page asks for.
const PAGE: usize = 1000;

pub async fn read(args: ReadArgs) -> anyhow::Result<()> {
    let reader = Reader::new(args.connection.brokers().await?);
    let (mut from, mut count) = (args.from, 0usize);
    while args.max != Some(0) {
        let want = args.max.map_or(PAGE, |max| (max - count).min(PAGE));
        let page = reader.read(&args.topic, args.partition, from, want, Duration::ZERO).await?;
        for record in &page.records {
            print(record, args.offsets);
        }
        count += page.records.len();
        from = Position::Offset(page.next_offset);
        if page.up_to_date || args.max.is_some_and(|max| count >= max) {
            break;
        }
    }
    eprintln!("read {count} records");
    Ok(())
}

pub async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let reader = Reader::new(args.connection.brokers().await?);
    let partitions = match args.partition {
        Some(p) => vec![p],
        None => reader.partitions(&args.topic).await?.into_iter().map(|p| p.partition).collect(),
    };
    let streams = partitions.into_iter().map(|p| reader.follow(&args.topic, p, args.from).boxed());
    let mut records = futures_util::stream::select_all(streams);
    let mut count = 0usize;
    while let Some(record) = records.next().await {
        print(&record?, args.offsets);
        count += 1;
        if args.max.is_some_and(|max| count >= max) {
            break;
        }
    }
    Ok(())
}
