//! Register, poll, commit, goodbye (SPEC §4).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;

use super::groups_api;
use super::query::Params;
use super::status::{consumer_status, livez};
use super::{finish, with_fallbacks, SharedState};
use crate::auth::{Access, Need, Op};
use crate::consensus::cluster_state::{Consumer, StartPolicy};
use crate::consumer::{write_record, Chunk, PollOutcome, Registration};
use crate::error::ApiError;
use crate::memory::{self, Reservation};
use crate::partitioning::PartitionInfo;
use crate::store::validate_topic_name;

/// The header naming a poll response, for the next poll's `ack` (SPEC §10).
const POLL_TOKEN: &str = "poll-token";

pub fn router(app: SharedState) -> Router {
    with_fallbacks(
        Router::new()
            .route("/v1/consumer/register", put(register).post(register))
            .route("/v1/consumer/poll", post(poll))
            .route("/v1/consumer/commit", post(commit))
            .route("/v1/consumer/goodbye", post(goodbye))
            .route("/v1/topic/{topic}/records", get(super::records_api::records))
            .route("/v1/topic/{topic}", get(super::records_api::topic))
            .route("/status", get(consumer_status))
            .route("/livez", get(livez))
            .merge(groups_api::routes())
            .merge(super::queue_api::routes()),
    )
    .with_state(app)
}

/// Consumer ids and group names are free text, but bounded and printable.
pub(super) fn check_name(what: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > 249 || value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("{what} must be 1 to 249 printable characters")));
    }
    Ok(())
}

fn consumer_id(params: &Params) -> Result<String, ApiError> {
    let id = params
        .first(&["consumerId", "consumer_id"])
        .ok_or_else(|| ApiError::BadRequest("the consumerId query parameter is required".into()))?;
    check_name("consumerId", id)?;
    Ok(id.to_string())
}

/// `onNewGroup` (SPEC §4), and the `timestamp` that `startFromTimestamp` needs (SPEC §11).
fn start_policy(params: &Params) -> Result<StartPolicy, ApiError> {
    let timestamp = params.first(&["timestamp"]);
    let policy = params.first(&["onNewGroup"]);
    match (policy, timestamp) {
        (Some("startFromTimestamp"), Some(ms)) => match ms.parse::<i64>() {
            Ok(ms) if ms >= 0 => Ok(StartPolicy::Timestamp(ms)),
            _ => Err(ApiError::BadRequest(format!(
                "invalid timestamp '{ms}': a whole number of milliseconds since the Unix epoch"
            ))),
        },
        (Some("startFromTimestamp"), None) => Err(ApiError::BadRequest(
            "onNewGroup=startFromTimestamp needs a timestamp query parameter (ms since the Unix epoch)".into(),
        )),
        (_, Some(_)) => {
            Err(ApiError::BadRequest("the timestamp parameter is only used with onNewGroup=startFromTimestamp".into()))
        }
        (None | Some("startFromLatest"), None) => Ok(StartPolicy::Latest),
        (Some("startFromEarliest"), None) => Ok(StartPolicy::Earliest),
        (Some(other), None) => Err(ApiError::BadRequest(format!(
            "invalid onNewGroup '{other}': use startFromLatest, startFromEarliest or startFromTimestamp"
        ))),
    }
}

#[tracing::instrument(name = "register", skip_all)]
async fn register(State(app): State<SharedState>, access: Access, params: Params) -> Response {
    let result = async {
        let id = consumer_id(&params)?;
        let group = params.first(&["group"]).unwrap_or("default");
        check_name("group", group)?;
        let topics = params.all("topic");
        if topics.is_empty() {
            return Err(ApiError::BadRequest("at least one topic query parameter is required".into()));
        }
        if topics.len() > app.max_consumer_topics {
            return Err(ApiError::BadRequest(format!(
                "a registration may name at most {} topics (RUNNEL_MAX_CONSUMER_TOPICS), not {}",
                app.max_consumer_topics,
                topics.len()
            )));
        }
        for topic in &topics {
            validate_topic_name(topic)?;
            access.require(Need::On { op: Op::Consume, topic, group: Some(group) })?;
        }
        let policy = start_policy(&params)?;
        let consumer = Consumer { id, group: group.to_string(), topics, policy };
        let body = match app.consumers.register(consumer).await? {
            Registration::Registered => "OK",
            Registration::AlreadyRegistered => "Already registered",
        };
        Ok(text(StatusCode::OK, body))
    }
    .await;
    finish(&app, "register", result)
}

#[tracing::instrument(name = "poll", skip_all, fields(consumer = tracing::field::Empty))]
async fn poll(State(app): State<SharedState>, access: Access, params: Params) -> Response {
    let result = async {
        let id = consumer_id(&params)?;
        tracing::Span::current().record("consumer", id.as_str());
        require_member(&app, &access, &id).await?;
        let wait =
            match params.first(&["wait"]) {
                None => None,
                Some(ms) => Some(ms.parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(format!("invalid wait '{ms}': a whole number of milliseconds"))
                })?),
            };
        let waited = wait.map(std::time::Duration::from_millis);
        let ack = params.first(&["ack"]);
        Ok(match app.consumers.poll(&id, waited.unwrap_or_default(), ack).await? {
            PollOutcome::Records(chunks, held, token) => {
                let (records, bytes) = chunks
                    .iter()
                    .flat_map(|c| &c.records)
                    .fold((0u64, 0u64), |(n, b), r| (n + 1, b + r.value.len() as u64));
                app.metrics.consume_records.inc_by(records);
                app.metrics.consume_bytes.inc_by(bytes);
                let mut response = hold_until_sent(json_chunks(&app, &chunks), held);
                // The token is hex, always a valid header value.
                if let Ok(token) = HeaderValue::from_str(&token) {
                    response.headers_mut().insert(POLL_TOKEN, token);
                }
                response
            }
            // A long-poll that waited (it would have answered a rebalance or a takeover that
            // gave it partitions here) asks again at once; without one, the v1 pauses (SPEC §4).
            PollOutcome::NoData | PollOutcome::NothingAssignedHere if wait.is_some_and(|ms| ms > 0) => no_content("0"),
            PollOutcome::NoData => no_content("1"),
            PollOutcome::NothingAssignedHere => no_content("5"),
        })
    }
    .await;
    finish(&app, "poll", result)
}

#[tracing::instrument(name = "commit", skip_all)]
async fn commit(State(app): State<SharedState>, access: Access, params: Params) -> Response {
    let result = async {
        let id = consumer_id(&params)?;
        require_member(&app, &access, &id).await?;
        app.consumers.commit(&id, &params.all("ack")).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    finish(&app, "commit", result)
}

#[tracing::instrument(name = "goodbye", skip_all)]
async fn goodbye(State(app): State<SharedState>, access: Access, params: Params) -> Response {
    let result = async {
        let id = consumer_id(&params)?;
        require_member(&app, &access, &id).await?;
        let commit = match params.first(&["commit"]) {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => return Err(ApiError::BadRequest(format!("invalid commit '{other}': use true or false"))),
        };
        app.consumers.goodbye(&id, commit, &params.all("ack")).await?;
        Ok(text(StatusCode::OK, "OK"))
    }
    .await;
    finish(&app, "goodbye", result)
}

/// The token must still cover what the consumer registered with (SPEC §13): an expired or
/// narrower token stops a running consumer at its next call, whichever broker it calls.
async fn require_member(app: &SharedState, access: &Access, id: &str) -> Result<(), ApiError> {
    if matches!(access, Access::Open) {
        return Ok(());
    }
    let consumer = app.consumers.registration(id).await?;
    for topic in &consumer.topics {
        access.require(Need::On { op: Op::Consume, topic, group: Some(&consumer.group) })?;
    }
    Ok(())
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn no_content(retry_after: &'static str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `[{"topic","token","rangeIndex","version","startOffset","partition","values":[…]}]`, written
/// by hand so stored records are copied once, straight into the body.
fn json_chunks(app: &SharedState, chunks: &[Chunk]) -> Vec<u8> {
    let size: usize = chunks.iter().flat_map(|c| &c.records).map(|r| r.value.len() + 1).sum();
    let mut out = Vec::with_capacity(size + chunks.len() * 160 + 2);
    out.push(b'[');
    let infos: Vec<PartitionInfo> = app
        .replication
        .leadership()
        .layout(|l| chunks.iter().map(|c| l.info(c.partition).unwrap_or_default()).collect());
    for (i, (chunk, info)) in chunks.iter().zip(infos).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let start = chunk.records.first().map_or(0, |r| r.offset);
        out.extend_from_slice(b"{\"topic\":");
        // Serialising a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &chunk.topic);
        out.extend_from_slice(
            format!(
                ",\"token\":\"{}\",\"rangeIndex\":{},\"version\":{},\"partition\":{},\"startOffset\":\"{}\",\"values\":[",
                info.token,
                info.range_index,
                info.generation + 1,
                chunk.partition,
                start
            )
            .as_bytes(),
        );
        for (j, record) in chunk.records.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_record(&mut out, &record.value);
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
    out
}

/// The poll's JSON response, its memory held until it is written.
fn hold_until_sent(json: Vec<u8>, mut held: Reservation) -> Response {
    held.shrink_to(json.len());
    let body = memory::hold_until_sent(Body::from(json), held);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
