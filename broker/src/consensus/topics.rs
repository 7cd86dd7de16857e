//! Topics in the Raft state (SPEC §15): each topic's settings, as set (what is not set follows
//! the broker's defaults), and whether it is being deleted. A deletion lists the brokers that
//! still hold its files; the topic is gone once each has removed them, and until then it can
//! be neither written nor created again, so no copy's old records outlive the topic into a new
//! one of the same name.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Most topics the cluster keeps; creating another is refused.
pub const MAX_TOPICS: usize = 10_000;

/// How long a topic keeps its records, when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeepFor {
    Forever,
    Ms(u64),
}

/// A topic's settings as set; `None` follows the broker's default (`RUNNEL_RETENTION`,
/// `RUNNEL_RETENTION_BYTES`, `RUNNEL_SEGMENT_BYTES`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    pub retention: Option<KeepFor>,
    /// Most bytes a partition keeps (0: no bound).
    pub retention_bytes: Option<u64>,
    pub segment_bytes: Option<u64>,
}

/// A change of one setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change<T> {
    #[default]
    Keep,
    Set(T),
    /// Back to the broker's default.
    Unset,
}

impl<T> Change<T> {
    fn apply(self, to: &mut Option<T>) {
        match self {
            Change::Keep => {}
            Change::Set(value) => *to = Some(value),
            Change::Unset => *to = None,
        }
    }
}

/// What a PATCH changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPatch {
    pub retention: Change<KeepFor>,
    pub retention_bytes: Change<u64>,
    pub segment_bytes: Change<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicState {
    Live,
    /// Deleted; these brokers have not removed its files yet.
    Deleting {
        pending: BTreeSet<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicEntry {
    pub settings: TopicSettings,
    pub state: TopicState,
}

/// What a create, change or delete did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicOutcome {
    Created,
    /// It exists with these settings (the same as asked, for a create).
    Exists(TopicSettings),
    /// A create found it with other settings: nothing changed.
    Different(TopicSettings),
    Changed(TopicSettings),
    /// Its deletion is under way (or started now): nothing else changes it until it is gone.
    Deleting,
    NotFound,
    /// [`MAX_TOPICS`] exist.
    Full,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topics {
    topics: BTreeMap<String, TopicEntry>,
}

impl Topics {
    pub fn get(&self, topic: &str) -> Option<&TopicEntry> {
        self.topics.get(topic)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &TopicEntry)> {
        self.topics.iter()
    }

    /// Creates `topic` with `settings`; an existing one is left as it is (`Exists` when its
    /// settings are these, `Different` when not, unless `any_settings`: a produce's auto-create).
    pub fn create(&mut self, topic: String, settings: TopicSettings, any_settings: bool) -> TopicOutcome {
        let full = self.topics.len() >= MAX_TOPICS;
        match self.topics.get(&topic) {
            Some(TopicEntry { state: TopicState::Deleting { .. }, .. }) => TopicOutcome::Deleting,
            Some(entry) if entry.settings == settings || any_settings => TopicOutcome::Exists(entry.settings),
            Some(entry) => TopicOutcome::Different(entry.settings),
            None if full => TopicOutcome::Full,
            None => {
                self.topics.insert(topic, TopicEntry { settings, state: TopicState::Live });
                TopicOutcome::Created
            }
        }
    }

    pub fn change(&mut self, topic: &str, patch: TopicPatch) -> TopicOutcome {
        match self.topics.get_mut(topic) {
            None => TopicOutcome::NotFound,
            Some(TopicEntry { state: TopicState::Deleting { .. }, .. }) => TopicOutcome::Deleting,
            Some(entry) => {
                patch.retention.apply(&mut entry.settings.retention);
                patch.retention_bytes.apply(&mut entry.settings.retention_bytes);
                patch.segment_bytes.apply(&mut entry.settings.segment_bytes);
                TopicOutcome::Changed(entry.settings)
            }
        }
    }

    /// Starts deleting `topic`: `holders` must each remove its files before it is gone.
    pub fn delete(&mut self, topic: &str, holders: BTreeSet<u32>) -> TopicOutcome {
        match self.topics.get_mut(topic) {
            None => TopicOutcome::NotFound,
            Some(entry) => {
                if entry.state == TopicState::Live {
                    entry.state = TopicState::Deleting { pending: holders };
                }
                self.forget_removed(topic);
                TopicOutcome::Deleting
            }
        }
    }

    /// Broker `broker` removed `topic`'s files (or left the cluster, for every topic).
    pub fn removed(&mut self, topic: &str, broker: u32) {
        if let Some(TopicEntry { state: TopicState::Deleting { pending }, .. }) = self.topics.get_mut(topic) {
            pending.remove(&broker);
        }
        self.forget_removed(topic);
    }

    /// Topics whose deletion waits for broker `broker`.
    pub fn deleting_on(&self, broker: u32) -> Vec<String> {
        self.topics
            .iter()
            .filter(|(_, e)| matches!(&e.state, TopicState::Deleting { pending } if pending.contains(&broker)))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// A broker that left holds nothing: no deletion waits for it.
    pub fn broker_left(&mut self, broker: u32) {
        for topic in self.deleting_on(broker) {
            self.removed(&topic, broker);
        }
    }

    fn forget_removed(&mut self, topic: &str) {
        if matches!(self.topics.get(topic), Some(TopicEntry { state: TopicState::Deleting { pending }, .. }) if pending.is_empty())
        {
            self.topics.remove(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn week() -> TopicSettings {
        TopicSettings { retention: Some(KeepFor::Ms(604_800_000)), ..TopicSettings::default() }
    }

    #[test]
    fn a_create_is_created_then_identical_or_different() {
        let mut topics = Topics::default();
        assert_eq!(topics.create("t".into(), week(), false), TopicOutcome::Created);
        assert_eq!(topics.create("t".into(), week(), false), TopicOutcome::Exists(week()));
        assert_eq!(topics.create("t".into(), TopicSettings::default(), false), TopicOutcome::Different(week()));
        assert_eq!(topics.create("t".into(), TopicSettings::default(), true), TopicOutcome::Exists(week()));
        assert_eq!(topics.get("t").map(|e| e.settings), Some(week()), "nothing changed");
    }

    #[test]
    fn a_patch_sets_keeps_and_unsets() {
        let mut topics = Topics::default();
        topics.create("t".into(), week(), false);
        let patch =
            TopicPatch { retention: Change::Unset, retention_bytes: Change::Set(1 << 20), segment_bytes: Change::Keep };
        let changed = TopicSettings { retention: None, retention_bytes: Some(1 << 20), segment_bytes: None };
        assert_eq!(topics.change("t", patch), TopicOutcome::Changed(changed));
        assert_eq!(topics.change("other", patch), TopicOutcome::NotFound);
    }

    #[test]
    fn a_deleted_topic_is_gone_once_every_holder_removed_it_and_is_frozen_until_then() {
        let mut topics = Topics::default();
        topics.create("t".into(), week(), false);
        assert_eq!(topics.delete("t", [0, 1, 2].into()), TopicOutcome::Deleting);
        assert_eq!(topics.create("t".into(), week(), true), TopicOutcome::Deleting, "not created again meanwhile");
        assert_eq!(topics.change("t", TopicPatch::default()), TopicOutcome::Deleting);
        assert_eq!(topics.delete("t", [0].into()), TopicOutcome::Deleting, "a second delete changes nothing");
        assert_eq!(topics.deleting_on(1), ["t"]);
        topics.removed("t", 0);
        topics.removed("t", 0);
        topics.broker_left(2);
        assert!(topics.get("t").is_some(), "broker 1 still holds it");
        topics.removed("t", 1);
        assert_eq!(topics.get("t"), None);
        assert_eq!(topics.create("t".into(), TopicSettings::default(), false), TopicOutcome::Created);
        assert_eq!(topics.delete("t", BTreeSet::new()), TopicOutcome::Deleting);
        assert_eq!(topics.get("t"), None, "no holder: gone at once");
    }
}
