//! The forwarded-produce conversation of the peer port, both sides: a broker that received a
//! produce for a partition another broker leads sends the records there (framed: u32 length,
//! bytes), with an idempotent request's stamp (`x-runnel-producer: id:epoch:seq`), a
//! conditional one's `x-runnel-expected-offset` and a keyed one's `x-runnel-key-token`, and
//! the leader appends them and answers the [`Appended`] offsets, or a [`PeerError`]
//! (`not_leader` when it does not lead the partition (yet): nothing was stored;
//! `produce_refused` for a sequence gap, a fenced producer, another end than expected or a
//! topic being deleted).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};

use super::ProduceService;
use crate::cluster::{decode_frames, encode_frames, Peers};
use crate::error::ApiError;
use crate::peer::{answer_json, PeerError};
use crate::store::{validate_topic_name, Appended, Conditions, ProducerStamp};
use crate::timing::FORWARD_TIMEOUT;

pub fn router(produce: Arc<ProduceService>) -> Router {
    Router::new()
        .route("/cluster/produce/{topic}/{partition}", post(append))
        .layer(DefaultBodyLimit::max(crate::limits::PEER_BODY_LIMIT))
        .with_state(produce)
}

fn path(topic: &str, partition: u32) -> String {
    format!("/cluster/produce/{topic}/{partition}")
}

const PRODUCER_HEADER: &str = "x-runnel-producer";
const EXPECTED_OFFSET_HEADER: &str = "x-runnel-expected-offset";
const KEY_TOKEN_HEADER: &str = "x-runnel-key-token";

/// A header's text, if it is there.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, PeerError> {
    headers.get(name).map(|v| v.to_str().map_err(|_| PeerError::BadRequest(format!("{name} is not text")))).transpose()
}

/// A header's number, if it is there.
fn header_number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, PeerError> {
    header_text(headers, name)?
        .map(|v| v.parse().map_err(|_| PeerError::BadRequest(format!("bad {name} '{v}'"))))
        .transpose()
}

/// The conditions a forwarded produce's headers carry.
fn conditions(headers: &HeaderMap) -> Result<Conditions, PeerError> {
    let producer = header_text(headers, PRODUCER_HEADER)?
        .map(ProducerStamp::parse_text)
        .transpose()
        .map_err(PeerError::BadRequest)?;
    Ok(Conditions {
        key_token: header_number(headers, KEY_TOKEN_HEADER)?,
        producer,
        expected_offset: header_number(headers, EXPECTED_OFFSET_HEADER)?,
    })
}

/// A produce forwarded by the broker that received it.
async fn append(
    State(produce): State<Arc<ProduceService>>,
    Path((topic, partition)): Path<(String, u32)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Appended>, PeerError> {
    validate_topic_name(&topic).map_err(|e| PeerError::BadRequest(e.to_string()))?;
    if !produce.replication.leadership().layout(|l| l.all_partitions().contains(&partition)) {
        return Err(PeerError::BadRequest(format!("no partition {partition}")));
    }
    let records = decode_frames(&body).map_err(PeerError::BadRequest)?;
    Ok(Json(produce.replication.append(&topic, partition, records, conditions(&headers)?).await?))
}

/// Not acknowledged: the records may be sent again (at worst stored twice, never lost; an
/// idempotent request, never twice).
pub(super) struct Retry(pub String);

/// Sends `records` to broker `leader`: its answer, or [`Retry`] when it could not have stored
/// them (unreachable, or not the leader).
pub(super) async fn forward(
    peers: &Peers,
    leader: u32,
    (topic, partition): (&str, u32),
    records: &[Bytes],
    conditions: &Conditions,
) -> Result<Result<Appended, ApiError>, Retry> {
    let url = peers.url(leader, &path(topic, partition));
    let mut request = peers.http().post(url).body(encode_frames(records)).timeout(FORWARD_TIMEOUT);
    if let Some(p) = &conditions.producer {
        request = request.header(PRODUCER_HEADER, p.format());
    }
    if let Some(offset) = conditions.expected_offset {
        request = request.header(EXPECTED_OFFSET_HEADER, offset.to_string());
    }
    if let Some(token) = conditions.key_token {
        request = request.header(KEY_TOKEN_HEADER, token.to_string());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() => return Err(Retry(format!("broker {leader} is unreachable: {e}"))),
        // The connection closed before an answer (a stopping leader closes its idle
        // connections, and one may have carried this request): the records may or may not be
        // stored, so a retry may duplicate them, as the producer's own retry of a 503 would,
        // and never loses them. Only a leader too slow to answer in time gets the 503.
        Err(e) if !e.is_timeout() => return Err(Retry(format!("broker {leader} closed the connection: {e}"))),
        Err(e) => {
            return Ok(Err(ApiError::Unavailable(format!(
                "the leader of partition {partition} (broker {leader}) did not answer in time: {e}"
            ))))
        }
    };
    match answer_json(response).await {
        Ok(appended) => Ok(Ok(appended)),
        Err(PeerError::NotLeader(_)) => Err(Retry(format!("broker {leader} does not lead it (yet)"))),
        Err(refused) => Ok(Err(ApiError::from(refused))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_produce_s_headers_give_back_its_key_token_and_conditions() {
        let mut headers = HeaderMap::new();
        headers.insert(KEY_TOKEN_HEADER, "-42".parse().expect("header"));
        headers.insert(EXPECTED_OFFSET_HEADER, "7".parse().expect("header"));
        let read = conditions(&headers).expect("valid");
        assert_eq!(read, Conditions { key_token: Some(-42), producer: None, expected_offset: Some(7) });
        assert_eq!(conditions(&HeaderMap::new()).expect("none"), Conditions::default(), "a keyless request");
        headers.insert(KEY_TOKEN_HEADER, "k".parse().expect("header"));
        assert!(matches!(conditions(&headers), Err(PeerError::BadRequest(_))));
    }
}
