//! Sending a produce to the broker that leads its partition.

use bytes::Bytes;

use super::record_frames::encode_frames;
use super::Peers;
use crate::error::ApiError;
use crate::store::Appended;

pub async fn forward_produce(
    peers: &Peers,
    owner: u32,
    topic: &str,
    partition: u32,
    records: &[Bytes],
) -> Result<Appended, ApiError> {
    let url = peers.url(owner, &format!("/cluster/produce/{topic}/{partition}"));
    let response = peers.http().post(url).body(encode_frames(records)).send().await.map_err(|e| {
        ApiError::Unavailable(format!("the leader of partition {partition} (broker {owner}) is unreachable: {e}"))
    })?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        return Err(ApiError::Unavailable(format!("the leader of partition {partition} answered {status}: {text}")));
    }
    response.json().await.map_err(|e| ApiError::Unavailable(format!("bad answer from broker {owner}: {e}")))
}
