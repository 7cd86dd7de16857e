//! The topic calls every broker answers: whether a topic may be written (creating it on a
//! first produce), and creating, changing, deleting and listing topics through Raft.

use std::sync::Arc;

use crate::consensus::cluster_state::{Command, CommandResult};
use crate::consensus::topics::{TopicEntry, TopicOutcome, TopicPatch, TopicSettings, TopicState};
use crate::consensus::RaftNode;
use crate::error::ApiError;
use crate::store::{validate_topic_name, Storage, TopicLimits};

/// Something that keeps state per topic beside the store (a leader's copies, queue windows):
/// told when a topic's files are removed here, it drops that state, so a topic created again
/// under the name starts afresh.
pub trait HoldsTopics: Send + Sync {
    fn forget_topic(&self, topic: &str);
}

pub struct TopicService {
    pub(super) raft: RaftNode,
    pub(super) storage: Storage,
    /// Told when a topic's files are removed here (added as they are built: the queue service
    /// is built after the produce service, which checks topics).
    holders: std::sync::Mutex<Vec<Arc<dyn HoldsTopics>>>,
    /// This broker's ordinal: whose files a deletion waits for.
    pub(super) ordinal: u32,
    /// `RUNNEL_AUTO_CREATE_TOPICS`: a produce to an unknown topic creates it.
    auto_create: bool,
    /// Creations one at a time, so a burst of first produces to a topic makes one Raft entry.
    creating: tokio::sync::Mutex<()>,
    /// True once the store has every topic's limits as Raft holds them (after start): retention
    /// waits for it, so a topic kept longer than the defaults loses nothing at start.
    pub(super) limits_applied: tokio::sync::watch::Sender<bool>,
}

impl TopicService {
    pub fn new((raft, storage, ordinal): (RaftNode, Storage, u32), auto_create: bool) -> Arc<TopicService> {
        Arc::new(TopicService {
            raft,
            storage,
            holders: Default::default(),
            ordinal,
            auto_create,
            creating: Default::default(),
            limits_applied: tokio::sync::watch::channel(false).0,
        })
    }

    /// Resolves once the store has every topic's limits (see `limits_applied`).
    pub async fn limits_applied(&self) {
        let mut applied = self.limits_applied.subscribe();
        let _ = applied.wait_for(|&a| a).await;
    }

    /// Tells `holder` of every topic removed here from now on.
    pub fn tell(&self, holder: Arc<dyn HoldsTopics>) {
        self.holders.lock().unwrap_or_else(|p| p.into_inner()).push(holder);
    }

    pub(super) fn holders(&self) -> Vec<Arc<dyn HoldsTopics>> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn state_of(&self, topic: &str) -> Option<TopicState> {
        self.raft.read(|s| s.topics.get(topic).map(|e| e.state.clone()))
    }

    /// Whether `topic` may be written now: a live topic may; one being deleted may not (409);
    /// an unknown one is created with the defaults, or, without auto-creation, is 404.
    pub async fn writable(&self, topic: &str) -> Result<(), ApiError> {
        match self.state_of(topic) {
            Some(TopicState::Live) => return Ok(()),
            Some(TopicState::Deleting { .. }) => return Err(ApiError::TopicDeleting(topic.to_string())),
            None if !self.auto_create => {
                // Created through another broker a moment ago, it may not be applied here yet.
                self.raft.catch_up_with_leader().await?;
                if self.state_of(topic).is_some() {
                    return Box::pin(self.writable(topic)).await;
                }
                return Err(ApiError::TopicNotFound(format!(
                    "no topic '{topic}': create it first (PUT /v1/topics/{topic}); this cluster does not create topics on a first produce"
                )));
            }
            None => {}
        }
        let _one = self.creating.lock().await;
        match self.state_of(topic) {
            Some(TopicState::Live) => return Ok(()),
            Some(TopicState::Deleting { .. }) => return Err(ApiError::TopicDeleting(topic.to_string())),
            None => {}
        }
        match self.propose_create(topic, TopicSettings::default(), true).await? {
            TopicOutcome::Created => {
                tracing::info!(%topic, "topic created by its first produce");
                Ok(())
            }
            TopicOutcome::Exists(_) => Ok(()),
            other => Err(self.refusal(topic, other)),
        }
    }

    async fn propose_create(
        &self,
        topic: &str,
        settings: TopicSettings,
        any_settings: bool,
    ) -> Result<TopicOutcome, ApiError> {
        validate_topic_name(topic)?;
        self.propose(Command::CreateTopic { topic: topic.to_string(), settings, any_settings }).await
    }

    async fn propose(&self, command: Command) -> Result<TopicOutcome, ApiError> {
        match self.raft.propose(command).await? {
            CommandResult::Topic(outcome) => Ok(outcome),
            other => Err(ApiError::Internal(format!("unexpected answer to a topic change: {other:?}"))),
        }
    }

    /// What an outcome that did not do what was asked means to the caller.
    fn refusal(&self, topic: &str, outcome: TopicOutcome) -> ApiError {
        match outcome {
            TopicOutcome::Deleting => ApiError::TopicDeleting(topic.to_string()),
            TopicOutcome::NotFound => ApiError::TopicNotFound(format!("no topic '{topic}'")),
            TopicOutcome::Full => ApiError::TopicConflict(format!(
                "the cluster has {} topics, the most it keeps: delete one first",
                crate::consensus::topics::MAX_TOPICS
            )),
            TopicOutcome::Different(_) => {
                ApiError::TopicConflict(format!("topic '{topic}' exists with other settings: change them with PATCH"))
            }
            other => ApiError::Internal(format!("unexpected topic outcome {other:?}")),
        }
    }

    /// Creates `topic` with `settings`: true when created, false when it exists with them.
    pub async fn create(&self, topic: &str, settings: TopicSettings) -> Result<bool, ApiError> {
        match self.propose_create(topic, settings, false).await? {
            TopicOutcome::Created => Ok(true),
            TopicOutcome::Exists(_) => Ok(false),
            other => Err(self.refusal(topic, other)),
        }
    }

    /// `topic` as Raft has it once this broker applied everything committed so far: what
    /// an answer after a change made through another broker must show.
    pub async fn get_current(&self, topic: &str) -> Result<Option<TopicEntry>, ApiError> {
        self.raft.catch_up_with_leader().await?;
        Ok(self.get(topic))
    }

    pub async fn change(&self, topic: &str, patch: TopicPatch) -> Result<TopicSettings, ApiError> {
        validate_topic_name(topic)?;
        match self.propose(Command::ChangeTopic { topic: topic.to_string(), patch }).await? {
            TopicOutcome::Changed(settings) => Ok(settings),
            other => Err(self.refusal(topic, other)),
        }
    }

    /// Starts deleting `topic`; it is gone once every broker removed its files.
    pub async fn delete(&self, topic: &str) -> Result<(), ApiError> {
        validate_topic_name(topic)?;
        match self.propose(Command::DeleteTopic { topic: topic.to_string() }).await? {
            TopicOutcome::Deleting => Ok(()),
            other => Err(self.refusal(topic, other)),
        }
    }

    pub fn get(&self, topic: &str) -> Option<TopicEntry> {
        self.raft.read(|s| s.topics.get(topic).cloned())
    }

    pub fn list(&self) -> Vec<(String, TopicEntry)> {
        self.raft.read(|s| s.topics.iter().map(|(t, e)| (t.clone(), e.clone())).collect())
    }

    /// The broker's defaults, for what a topic does not set.
    pub fn defaults(&self) -> TopicLimits {
        self.storage.default_limits()
    }
}
