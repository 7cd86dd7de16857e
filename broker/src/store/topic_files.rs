//! What the store does per topic rather than per partition: the limits a topic's settings set
//! (retention by age and size, segment size), its size on disk, and removing its files when
//! the topic is deleted. A removed topic stays refused (nothing creates its partitions again)
//! until [`Storage::accept_topic`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::error::IoContext;
use super::{Partition, Storage, StorageError};

/// A topic's limits, resolved (its settings where set, the store's defaults elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Segments whose newest record is older are deleted (`None`: kept forever).
    pub retention: Option<Duration>,
    /// Oldest segments are deleted while a partition is larger (`None`: no bound).
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
}

impl Storage {
    /// The store's defaults (its configuration).
    pub fn default_limits(&self) -> TopicLimits {
        let config = &self.inner.config;
        TopicLimits {
            retention: config.retention,
            retention_bytes: config.retention_bytes,
            segment_bytes: config.segment_bytes,
        }
    }

    pub fn limits_of(&self, topic: &str) -> TopicLimits {
        let limits = self.inner.limits.read().unwrap_or_else(|p| p.into_inner());
        limits.get(topic).copied().unwrap_or_else(|| self.default_limits())
    }

    /// Sets `topic`'s limits (`None`: the defaults again); a new segment size applies from
    /// each partition's next roll, retention from its next run.
    pub fn set_limits(&self, topic: &str, limits: Option<TopicLimits>) {
        {
            let mut all = self.inner.limits.write().unwrap_or_else(|p| p.into_inner());
            match limits {
                Some(limits) if limits != self.default_limits() => all.insert(topic.to_string(), limits),
                _ => all.remove(topic),
            };
        }
        let segment_bytes = self.limits_of(topic).segment_bytes;
        for partition in self.partitions_of(topic) {
            partition.log.set_segment_bytes(segment_bytes);
        }
    }

    /// Bytes of `topic`'s `partition` on this broker's disk (0 when it has none here).
    pub fn bytes_on_disk(&self, topic: &str, partition: u32) -> u64 {
        self.get(topic, partition).map_or(0, |p| p.log.bytes_on_disk())
    }

    /// Whether `topic` is refused (removed, not accepted again yet).
    pub fn is_refused(&self, topic: &str) -> bool {
        self.inner.refused.read().unwrap_or_else(|p| p.into_inner()).contains(topic)
    }

    /// Removes every partition of `topic` from this broker: from now on nothing creates them
    /// again; appends already queued finish first, then the files go.
    pub async fn remove_topic(&self, topic: &str) -> Result<(), StorageError> {
        let removed: Vec<Arc<Partition>> = {
            // Under the creation lock, so no partition of it is being created meanwhile.
            let _creating = self.inner.creating.lock().unwrap_or_else(|p| p.into_inner());
            self.inner.refused.write().unwrap_or_else(|p| p.into_inner()).insert(topic.to_string());
            let mut partitions = self.inner.partitions.write().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<(String, u32)> = partitions.keys().filter(|(t, _)| t == topic).cloned().collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        for partition in &removed {
            partition.stop_writer().await;
        }
        let dir = self.inner.config.dir.join(topic);
        tokio::task::spawn_blocking(move || {
            for partition in &removed {
                partition.log.remove()?;
            }
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove", &dir),
                _ => super::segment::sync_dir(dir.parent().unwrap_or(&dir)),
            }
        })
        .await
        .map_err(|e| StorageError::Io {
            op: "remove topic",
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
    }

    /// Lets `topic` be written again (created anew) after [`Storage::remove_topic`].
    pub fn accept_topic(&self, topic: &str) {
        self.inner.refused.write().unwrap_or_else(|p| p.into_inner()).remove(topic);
    }

    fn partitions_of(&self, topic: &str) -> Vec<Arc<Partition>> {
        let partitions = self.inner.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.iter().filter(|((t, _), _)| t == topic).map(|(_, p)| p.clone()).collect()
    }
}
