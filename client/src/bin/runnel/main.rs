//! `runnel`: the command-line tool for Runnel.
//!
//! Exit codes: 0 success; 1 failure (message on stderr); 2 usage error; 3 `status` found a
//! broker that is not ready.

mod bench;
mod cluster;
mod connection;
mod consume;
mod groups;
mod inspect;
mod pressure;
mod produce;
mod progress;
mod queue;
mod queue_bench;
mod read;
mod token;
mod topics;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "runnel",
    version,
    about = "Command-line tool for Runnel brokers",
    after_help = "Exit status: 0 success, 1 failure, 2 usage error, 3 a broker is not ready (status)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce one record per line of standard input.
    Produce(produce::ProduceArgs),
    /// Read topics with a consumer group and print the records.
    Consume(consume::ConsumeArgs),
    /// List the brokers of the cluster.
    Brokers(inspect::InspectArgs),
    /// Show whether every broker is ready (exit status 3 if not).
    Status(inspect::InspectArgs),
    /// Show the cluster's generation, brokers and partitions, or resize it (`cluster resize N`).
    Cluster(cluster::ClusterArgs),
    /// Read a partition's records from a position (earliest, latest, an offset, @MS), with no group.
    Read(read::ReadArgs),
    /// Print a topic's new records as they are appended (follows every partition's live stream).
    Tail(read::TailArgs),
    /// List consumer groups, describe one's offsets and lag (`groups describe G`), or reset
    /// its offsets (`groups reset G --topic T --to …`).
    Groups(groups::GroupsArgs),
    /// Produce records as fast as the broker acknowledges them, then consume them back, and print throughput and latency.
    Bench(bench::BenchArgs),
    /// Overload a cluster (bulk producers of large bodies, slow connections, latency probes)
    /// and report the probes' latency and the brokers' peak memory against their limit.
    Pressure(pressure::PressureArgs),
    /// Work a queue group (`queue work G --topic T`): lease records, handle them, acknowledge
    /// them; or lease, settle, see and change the group by hand.
    Queue(queue::QueueArgs),
    /// List, describe, create, change or delete topics (`topics create T --retention 24h`).
    Topics(topics::TopicsArgs),
    /// Make a signing key pair (`token keygen`), sign a token (`token create`), or revoke one
    /// before its expiry (`token revoke`).
    Token(token::TokenArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::Brokers(args) => inspect::brokers(args).await,
        Command::Status(args) => inspect::status(args).await,
        Command::Cluster(args) => cluster::run(args).await,
        Command::Groups(args) => groups::run(args).await,
        Command::Read(args) => read::read(args).await,
        Command::Tail(args) => read::tail(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Pressure(args) => pressure::run(args).await,
        Command::Token(args) => token::run(args).await,
        Command::Queue(args) => queue::run(args).await,
        Command::Topics(args) => topics::run(args).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        let code = if e.is::<inspect::NotReady>() { 3 } else { 1 };
        std::process::exit(code);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
