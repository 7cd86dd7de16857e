//! The client side of the replication routes (`peer_api`): the leader's link to a follower,
//! and a new leader's link to the copy it takes records from, both over the signed peer HTTP.

use std::time::Duration;

use bytes::Bytes;

use super::copy_log::CopyState;
use super::copy_protocol::{Copied, CopySource, EpochEnd, FollowerLink, SendError};
use super::leader::Replication;
use super::peer_api::{format_epochs, parse_epochs, parse_times, EPOCHS_HEADER, TIMES_HEADER};
use crate::cluster::{decode_frames, encode_frames};
use crate::peer::{answer_bytes, answer_json, PeerError};
use crate::store::{EpochStart, TimeRun};

/// How long a follower may take to say where its copy ends.
const STATE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a catch-up read or epoch question may take.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

/// One broker's copy of a topic partition, reached over the peer port.
pub struct RemoteCopy<'a> {
    pub replication: &'a Replication,
    pub broker: u32,
    pub topic: &'a str,
    pub partition: u32,
}

impl RemoteCopy<'_> {
    fn url(&self, route: &str, query: &str) -> String {
        let (topic, partition) = (self.topic, self.partition);
        self.replication.peers.url(self.broker, &format!("/cluster/{route}/{topic}/{partition}{query}"))
    }

    async fn get(&self, url: String, limit: Duration) -> Result<reqwest::Response, String> {
        self.replication.peers.http().get(url).timeout(limit).send().await.map_err(|e| e.to_string())
    }

    /// Has the follower start its copy again at `at` (the leader's log start); its new end.
    pub async fn restart_at(&self, at: u64, epoch: u64) -> Result<u64, String> {
        let url = self.url("restart", &format!("?at={at}&epoch={epoch}"));
        let response = self.replication.peers.http().post(url).send().await.map_err(|e| e.to_string())?;
        answer_json::<CopyState>(response).await.map(|state| state.end).map_err(|e| e.to_string())
    }
}

impl FollowerLink for RemoteCopy<'_> {
    async fn state(&self) -> Result<CopyState, String> {
        answer_json(self.get(self.url("end", ""), STATE_TIMEOUT).await?).await.map_err(|e| e.to_string())
    }

    async fn truncate(&self, to: u64, epoch: u64) -> Result<(), String> {
        let url = self.url("truncate", &format!("?to={to}&epoch={epoch}"));
        let response = self.replication.peers.http().post(url).send().await.map_err(|e| e.to_string())?;
        answer_bytes(response).await.map(drop).map_err(|e| e.to_string())
    }

    async fn replicate(
        &self,
        base: u64,
        epoch: u64,
        epochs: &[EpochStart],
        records: &[Bytes],
        times: &[TimeRun],
    ) -> Result<u64, SendError> {
        let url = self.url("replicate", &format!("?base={base}&epoch={epoch}"));
        let response = self
            .replication
            .peers
            .http()
            .post(url)
            .header(EPOCHS_HEADER, format_epochs(epochs))
            .header(TIMES_HEADER, TimeRun::format(times))
            .body(encode_frames(records))
            .send()
            .await
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        match answer_json::<CopyState>(response).await {
            Ok(state) => Ok(state.end),
            Err(PeerError::OffsetMismatch { .. }) => Err(SendError::Mismatch),
            Err(PeerError::StaleEpoch { .. }) => Err(SendError::Fenced),
            Err(other) => Err(SendError::Unreachable(other.to_string())),
        }
    }
}

impl CopySource for RemoteCopy<'_> {
    async fn epoch_end(&self, epoch: u64) -> Result<EpochEnd, String> {
        let url = self.url("epoch-end", &format!("?epoch={epoch}"));
        answer_json(self.get(url, SOURCE_TIMEOUT).await?).await.map_err(|e| e.to_string())
    }

    async fn read_from(&self, from: u64) -> Result<Copied, String> {
        let response = self.get(self.url("read", &format!("?from={from}")), SOURCE_TIMEOUT).await?;
        let epochs = parse_epochs(response.headers())?;
        let headers = response.headers().clone();
        let body = answer_bytes(response).await.map_err(|e| e.to_string())?;
        let records = decode_frames(&body)?;
        let times = parse_times(&headers, records.len())?;
        Ok(Copied { records, epochs, times })
    }
}
