//! `runnel groups` (list), `runnel groups describe G` (offsets, ends and lag) and
//! `runnel groups reset G --topic T --to …` (SPEC §11).

use anyhow::bail;
use runnel_client::{ClientError, GroupDescription, Groups, OffsetReset, ResetPlan, ResetTo};

use crate::connection::ConnectionArgs;

#[derive(clap::Args)]
pub struct GroupsArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(clap::Subcommand)]
enum Action {
    /// A group's members and, per partition, its committed offset, the end and the lag.
    Describe { group: String },
    /// Move a group's offsets of one topic. Refused while the group has members unless
    /// --force, which moves the members too.
    Reset(ResetArgs),
}

#[derive(clap::Args)]
struct ResetArgs {
    group: String,
    #[arg(long)]
    topic: String,
    /// Where to: the first retained record, the end, an offset, the first record at or after
    /// a time (ms since the Unix epoch), or a shift of the committed offsets by ±N records.
    #[arg(long, value_enum)]
    to: To,
    /// The offset, the time or the shift.
    #[arg(long, allow_negative_numbers = true,
        required_if_eq_any([("to", "offset"), ("to", "timestamp"), ("to", "shift")]))]
    value: Option<i64>,
    /// Only these partitions (repeat the option); all of them by default.
    #[arg(long = "partition")]
    partitions: Vec<u32>,
    /// Show where the offsets would go, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also when the group has members: their next polls read from the new offsets.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum To {
    Earliest,
    Latest,
    Offset,
    Timestamp,
    Shift,
}

pub async fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let brokers = args.connection.brokers().await?;
    let groups = Groups::new(brokers);
    match args.action {
        None => list(&groups).await,
        Some(Action::Describe { group }) => describe(&groups, &group).await,
        Some(Action::Reset(reset)) => reset_offsets(&groups, reset).await,
    }
}

/// A broker's refusal as its message (the JSON body's `message`), not the whole body.
fn refusal(e: ClientError) -> anyhow::Error {
    if let ClientError::Status { status, body, .. } = &e {
        let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
        if let Some(message) = parsed.as_ref().and_then(|b| b["message"].as_str()) {
            return anyhow::anyhow!("{status}: {message}");
        }
    }
    e.into()
}

async fn list(groups: &Groups) -> anyhow::Result<()> {
    for group in groups.list().await.map_err(refusal)? {
        println!("{}\t{} members", group.group, group.members);
    }
    Ok(())
}

/// `-` for what is not known (no commit yet, or a leader that did not answer).
fn shown(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

async fn describe(groups: &Groups, group: &str) -> anyhow::Result<()> {
    let GroupDescription { group, members, lag, topics } = groups.describe(group).await.map_err(refusal)?;
    println!("group {group}\tmembers {}\tlag {lag}", members.len());
    for member in &members {
        println!("member {}\ttopics {}", member.id, member.topics.join(","));
    }
    println!("topic\tpartition\tcommitted\tend\tlag\tmember");
    for topic in &topics {
        for p in &topic.partitions {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                topic.topic,
                p.partition,
                shown(p.committed),
                shown(p.end),
                shown(p.lag),
                p.member.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

async fn reset_offsets(groups: &Groups, args: ResetArgs) -> anyhow::Result<()> {
    let value = args.value.unwrap_or_default();
    let to = match args.to {
        To::Earliest => ResetTo::Earliest,
        To::Latest => ResetTo::Latest,
        To::Offset => match u64::try_from(value) {
            Ok(offset) => ResetTo::Offset(offset),
            Err(_) => bail!("--value must be an offset (0 or more) with --to offset"),
        },
        To::Timestamp => ResetTo::Timestamp(value),
        To::Shift => ResetTo::Shift(value),
    };
    let partitions = (!args.partitions.is_empty()).then_some(args.partitions);
    let reset = OffsetReset { topic: args.topic, partitions, to };
    let ResetPlan { group, topic, dry_run, partitions } =
        groups.reset(&args.group, &reset, args.dry_run, args.force).await.map_err(refusal)?;
    println!("topic\tpartition\tcurrent\tnew");
    for p in &partitions {
        println!("{topic}\t{}\t{}\t{}", p.partition, shown(p.current), p.new);
    }
    if dry_run {
        println!("dry run: group {group} is unchanged");
    } else {
        println!("group {group}: {} partitions reset", partitions.len());
    }
    Ok(())
}
