//! `runnel brokers` and `runnel status`.

use crate::connection::ConnectionArgs;

#[derive(clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
}

pub async fn brokers(args: InspectArgs) -> anyhow::Result<()> {
    let brokers = args.connection.brokers().await?;
    for host in &brokers.hosts {
        println!("{host}\tproducer {}\tconsumer {}", brokers.producer_port, brokers.consumer_port);
    }
    Ok(())
}

/// Some brokers did not answer ready (exit status 3).
#[derive(Debug, thiserror::Error)]
#[error("{down} of {of} brokers not ready")]
pub struct NotReady {
    down: usize,
    of: usize,
}

/// Exit status 0 when every broker is ready, 3 when some are not, 1 when none could be asked.
pub async fn status(args: InspectArgs) -> anyhow::Result<()> {
    let brokers = args.connection.brokers().await?;
    let http = brokers.access.http();
    let mut down = 0;
    for (index, host) in brokers.hosts.iter().enumerate() {
        let url = brokers.consumer_url(index, "/status")?;
        let state = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => "ready".to_string(),
            Ok(r) => format!("not ready ({})", r.status()),
            Err(e) => format!("unreachable ({e})"),
        };
        if state != "ready" {
            down += 1;
        }
        println!("{host}\t{state}");
    }
    if down > 0 {
        return Err(NotReady { down, of: brokers.hosts.len() }.into());
    }
    Ok(())
}
