//! Records leased `maxDeliver` times: appended to the group's dead-letter topic, then
//! acknowledged, in that order, so a record is never lost between the two (a failure between
//! them appends it again later: at least once in the dead-letter topic). Without a
//! dead-letter topic such a record is only acknowledged (dropped), as Kafka's share groups
//! archive it; both are counted in `runnel_queue_dead_lettered_total`.

use std::time::Duration;

use bytes::Bytes;

use super::service::{QueueService, WindowKey};
use super::settle::Acking;
use crate::consensus::queue_groups::QueueSettings;
use crate::consumer::write_record;
use crate::log_every::LogEvery;
use crate::store::Conditions;

/// A record to dead-letter: its window, the leader epoch, offset, deliveries and value.
pub(super) type DeadRecord = (WindowKey, u64, u64, u32, Bytes);

static FAILURES: LogEvery = LogEvery::new(Duration::from_secs(10));

impl QueueService {
    pub(super) async fn dead_letter(&self, settings: &QueueSettings, dead: Vec<DeadRecord>) {
        let Some(group) = dead.first().map(|(key, ..)| key.group.clone()) else { return };
        let (mut acking, mut failed) = (Acking::new(), Acking::new());
        for (i, (key, epoch, offset, deliveries, value)) in dead.iter().enumerate() {
            let place = (key.topic.clone(), key.partition, *epoch);
            let stored = match &settings.dead_letter_topic {
                Some(topic) => {
                    let letter = letter(key, *offset, *deliveries, value);
                    let origin = format!("{}/{}", key.topic, key.partition);
                    self.produce
                        .produce(topic, Some(origin.as_bytes()), vec![letter], Conditions::default())
                        .await
                        .map(drop)
                }
                None => Ok(()),
            };
            match stored {
                Ok(()) => acking.entry(place).or_default().push((i, *offset)),
                Err(e) => {
                    FAILURES.note(|unlogged| {
                        tracing::warn!(%group, topic = %key.topic, partition = key.partition, offset, unlogged,
                            "cannot append a record to the dead-letter topic, it stays in the queue: {e}")
                    });
                    failed.entry(place).or_default().push((i, *offset));
                }
            }
        }
        let counted = match self.acknowledge(&group, &acking).await {
            Ok(counted) => counted,
            Err(_) if acking.is_empty() => Vec::new(),
            Err(e) => {
                FAILURES.note(|unlogged| {
                    tracing::warn!(%group, unlogged, "dead-lettered records could not be acknowledged yet: {e}")
                });
                vec![false; acking.len()]
            }
        };
        let dead_lettered = acking.values().zip(&counted).filter(|(_, &c)| c).map(|(e, _)| e.len() as u64).sum();
        self.metrics.dead_lettered(&group).inc_by(dead_lettered);
        self.release(&group, &acking, &counted);
        self.release(&group, &failed, &vec![false; failed.len()]);
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
