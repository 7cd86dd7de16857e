//! Records leased `maxDeliver` times: appended to the group's dead-letter topic, then
//! acknowledged, in that order, so a record is never lost between the two (a failure between
//! them appends it again later: at least once in the dead-letter topic). Without a
//! dead-letter topic such a record is only acknowledged (dropped), as Kafka's share groups
//! archive it; both are counted in `runnel_queue_dead_lettered_total`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::service::{now, QueueService, WindowKey};
use super::settle::{Acking, Settling};
use crate::consumer::write_record;
use crate::log_every::LogEvery;
use crate::store::Conditions;

/// A record to dead-letter, settling in its window meanwhile.
pub(super) struct DeadRecord {
    pub key: WindowKey,
    /// The leader epoch it was leased in.
    pub epoch: u64,
    pub offset: u64,
    pub deliveries: u32,
    pub value: Bytes,
}

/// How long a record whose dead letter could not be written waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

static FAILURES: LogEvery = LogEvery::new(Duration::from_secs(10));

impl QueueService {
    /// Appends `dead` to `topic` (none: drops them), then acknowledges them.
    pub(super) async fn dead_letter(self: Arc<Self>, topic: Option<String>, dead: Vec<DeadRecord>) {
        let Some(group) = dead.first().map(|d| d.key.group.clone()) else { return };
        let (mut acking, mut failed) = (Acking::new(), Acking::new());
        let floor = |d: &DeadRecord| self.floor_of(&d.key, d.epoch);
        for (i, record) in dead.iter().enumerate() {
            let stored = match &topic {
                Some(topic) => {
                    let letter = letter(&record.key, record.offset, record.deliveries, &record.value);
                    let origin = format!("{}/{}", record.key.topic, record.key.partition);
                    self.produce
                        .produce(topic, Some(origin.as_bytes()), vec![letter], Conditions::default())
                        .await
                        .map(drop)
                }
                None => Ok(()),
            };
            let place = (record.key.topic.clone(), record.key.partition, record.epoch);
            let into = match stored {
                Ok(()) => &mut acking,
                Err(e) => {
                    FAILURES.note(|unlogged| {
                        tracing::warn!(%group, topic = %record.key.topic, partition = record.key.partition,
                            offset = record.offset, unlogged,
                            "cannot append a record to the dead-letter topic, it stays in the queue: {e}")
                    });
                    &mut failed
                }
            };
            into.entry(place)
                .or_insert_with(|| Settling { floor: floor(record), entries: Vec::new() })
                .entries
                .push((i, record.offset));
        }
        // A record that could not be dead-lettered is tried again after a pause, not at once:
        // waking every waiting `next` to fail again would spin.
        self.release_unacknowledged(&group, &failed, now() + RETRY);
        if acking.is_empty() {
            return;
        }
        match self.acknowledge(&group, &acking).await {
            Ok(counted) => {
                let dead_lettered: usize =
                    acking.values().zip(&counted).filter(|(_, &c)| c).map(|(s, _)| s.entries.len()).sum();
                self.metrics.dead_lettered(&group).inc_by(dead_lettered as u64);
                self.release(&group, &acking, &counted, now());
            }
            Err(e) => {
                FAILURES.note(|unlogged| {
                    tracing::warn!(%group, unlogged, "dead-lettered records could not be acknowledged yet: {e}")
                });
                self.release_unacknowledged(&group, &acking, now() + RETRY);
            }
        }
    }
}

/// `{"topic","partition","offset","deliveryCount","value"}`: where the record came from and
/// how often it was delivered, with its value as a poll shows it.
fn letter(key: &WindowKey, offset: u64, deliveries: u32, value: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(value.len() + 128);
    let topic = serde_json::to_string(&key.topic).unwrap_or_default();
    out.extend_from_slice(
        format!(
            "{{\"topic\":{topic},\"partition\":{},\"offset\":\"{offset}\",\"deliveryCount\":{deliveries},\"value\":",
            key.partition
        )
        .as_bytes(),
    );
    write_record(&mut out, value);
    out.push(b'}');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_names_its_origin_and_keeps_the_value() {
        let key = WindowKey { group: "g".into(), topic: "jobs".into(), partition: 3 };
        let letter = letter(&key, 42, 5, br#"{"id":7}"#);
        let parsed: serde_json::Value = serde_json::from_slice(&letter).expect("JSON");
        assert_eq!(
            parsed,
            serde_json::json!({"topic":"jobs","partition":3,"offset":"42","deliveryCount":5,"value":{"id":7}})
        );
    }
}
