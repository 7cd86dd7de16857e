//! Queue groups (SPEC §14) on the consumer port: `next`, `ack`, `nack`, `extend`, and the
//! group's settings (`PUT`/`GET /v1/queue/{group}`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::query::Params;
use super::{finish, SharedState};
use crate::auth::{Access, Need, Op};
use crate::consensus::queue_groups::QueueSettings;
use crate::consumer::write_record;
use crate::error::ApiError;
use crate::memory::{self, declared_length, read_body, BodyRules};
use crate::queue::ack_token::AckToken;
use crate::queue::{LeasedRecord, NextBatch, Settle, SettleResult};
use crate::store::validate_topic_name;

/// Most bytes of an ack, nack or extend body: `max_batch` tokens fit, of topics of the longest
/// name (about 420 bytes each in base64).
const SETTLE_BODY_LIMIT: usize = 512 * 1024;
/// The longest `ackWaitMs`: a day.
const MAX_ACK_WAIT_MS: u64 = 24 * 60 * 60 * 1000;
/// The shortest: a lease shorter than a round trip would expire before it is used.
const MIN_ACK_WAIT_MS: u64 = 100;
/// The largest `maxDeliver` (-1 is unlimited).
const MAX_DELIVER: i64 = 1_000;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/queue/{group}", put(put_group).get(get_group))
        .route("/v1/queue/{group}/next", post(next))
        .route("/v1/queue/{group}/{settle}", post(settle))
}

/// Queue group names are free text, bounded and printable, as consumer groups'.
fn check_group(group: &str) -> Result<(), ApiError> {
    super::consumer_api::check_name("a queue group's name", group)
}

#[tracing::instrument(name = "queue next", skip_all, fields(%group))]
async fn next(State(app): State<SharedState>, Path(group): Path<String>, access: Access, params: Params) -> Response {
    let result = async {
        check_group(&group)?;
        let topics = params.all("topic");
        let named = if topics.is_empty() { app.queues.settings(&group).map(|s| s.topics) } else { None };
        for topic in named.as_ref().unwrap_or(&topics) {
            validate_topic_name(topic)?;
            access.require(Need::On { op: Op::Consume, topic, group: Some(&group) })?;
        }
        if topics.len() > app.max_consumer_topics {
            return Err(ApiError::BadRequest(format!(
                "a queue group reads at most {} topics",
                app.max_consumer_topics
            )));
        }
        let batch_size = params.number("batch_size")?.map_or(1, |n| n.min(usize::MAX as u64) as usize);
        let wait = Duration::from_millis(params.number("wait")?.unwrap_or(0));
        let batch = app.queues.next(&group, &topics, batch_size, wait).await?;
        if batch.records.is_empty() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let bytes: u64 = batch.records.iter().map(|r| r.value.len() as u64).sum();
        app.metrics.consume_records.inc_by(batch.records.len() as u64);
        app.metrics.consume_bytes.inc_by(bytes);
        Ok(next_response(batch))
    }
    .await;
    finish(&app, "queue_next", result)
}

/// `{"data":[…],"info":{…}}`, written by hand so each value is copied once; its memory held
/// until it is sent.
fn next_response(batch: NextBatch) -> Response {
    let size: usize = batch.records.iter().map(|r| r.value.len() + 192).sum();
    let mut out = Vec::with_capacity(size + 96);
    out.extend_from_slice(b"{\"data\":[");
    for (i, record) in batch.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_leased(&mut out, record);
    }
    out.extend_from_slice(b"],\"info\":");
    out.extend_from_slice(&serde_json::to_vec(&batch.info).unwrap_or_default());
    out.push(b'}');
    let mut held = batch.held;
    held.shrink_to(out.len());
    let body = memory::hold_until_sent(Body::from(out), held);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn write_leased(out: &mut Vec<u8>, record: &LeasedRecord) {
    let topic = serde_json::to_string(&record.topic).unwrap_or_default();
    out.extend_from_slice(
        format!(
            "{{\"ack_token\":\"{}\",\"topic\":{topic},\"partition\":{},\"offset\":\"{}\",\"deliveryCount\":{},\"value\":",
            record.ack_token, record.partition, record.offset, record.delivery_count
        )
        .as_bytes(),
    );
    write_record(out, &record.value);
    out.push(b'}');
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettleBody {
    ack_tokens: Vec<String>,
    #[serde(default, rename = "delayMs")]
    delay_ms: Option<u64>,
}

#[derive(Serialize)]
struct TokenResult<'a> {
    ack_token: &'a str,
    result: SettleResult,
}

/// `ack`, `nack` or `extend`.
#[tracing::instrument(name = "queue settle", skip_all, fields(%group, %op))]
async fn settle(
    State(app): State<SharedState>,
    Path((group, op)): Path<(String, String)>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let endpoint = match op.as_str() {
        "ack" => "queue_ack",
        "nack" => "queue_nack",
        "extend" => "queue_extend",
        _ => return finish(&app, "queue_settle", Err(ApiError::NotFound(format!("/v1/queue/{group}/{op}")))),
    };
    let result = async {
        check_group(&group)?;
        let rules = BodyRules { limit: SETTLE_BODY_LIMIT, ..app.produce_body };
        let held = read_body(body, declared_length(&headers), rules, &app.memory.reads).await?;
        let request: SettleBody = serde_json::from_slice(&held.bytes).map_err(|e| {
            ApiError::BadRequest(format!("the body must be JSON {{\"ack_tokens\":[…]{}}}: {e}", delay_hint(endpoint)))
        })?;
        if request.ack_tokens.len() > app.queues.limits.max_batch {
            return Err(ApiError::BadRequest(format!("at most {} ack_tokens at once", app.queues.limits.max_batch)));
        }
        let settle = match (endpoint, request.delay_ms) {
            ("queue_nack", delay) => Settle::Nack { delay_ms: delay.unwrap_or(0).min(MAX_ACK_WAIT_MS) },
            (_, Some(_)) => return Err(ApiError::BadRequest("delayMs is for nack only".into())),
            ("queue_ack", None) => Settle::Ack,
            _ => Settle::Extend,
        };
        for token in request.ack_tokens.iter().filter_map(|t| AckToken::decode(t)) {
            access.require(Need::On { op: Op::Consume, topic: &token.topic, group: Some(&group) })?;
        }
        let results = app.queues.settle(&group, settle, &request.ack_tokens).await?;
        let results: Vec<TokenResult> =
            request.ack_tokens.iter().zip(results).map(|(t, result)| TokenResult { ack_token: t, result }).collect();
        Ok(Json(serde_json::json!({ "results": results })).into_response())
    }
    .await;
    finish(&app, endpoint, result)
}

fn delay_hint(endpoint: &str) -> &'static str {
    if endpoint == "queue_nack" {
        ", \"delayMs\":N"
    } else {
        ""
    }
}

/// `PUT /v1/queue/{group}`'s body: the topics, and the settings that differ from the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SettingsBody {
    topics: Vec<String>,
    ack_wait_ms: Option<u64>,
    max_deliver: Option<i64>,
    dead_letter_topic: Option<String>,
    ordered: Option<bool>,
}

impl SettingsBody {
    fn validate(self, max_topics: usize) -> Result<QueueSettings, ApiError> {
        let defaults = QueueSettings::defaults(Vec::new());
        let settings = QueueSettings {
            topics: self.topics,
            ack_wait_ms: self.ack_wait_ms.unwrap_or(defaults.ack_wait_ms),
            max_deliver: self.max_deliver.unwrap_or(defaults.max_deliver),
            dead_letter_topic: self.dead_letter_topic,
            ordered: self.ordered.unwrap_or(defaults.ordered),
        };
        if settings.topics.is_empty() || settings.topics.len() > max_topics {
            return Err(ApiError::BadRequest(format!("topics must name 1 to {max_topics} topics")));
        }
        let mut distinct = settings.topics.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != settings.topics.len() {
            return Err(ApiError::BadRequest("topics names a topic twice".into()));
        }
        for topic in settings.topics.iter().chain(&settings.dead_letter_topic) {
            validate_topic_name(topic)?;
        }
        if settings.dead_letter_topic.as_ref().is_some_and(|d| settings.topics.contains(d)) {
            return Err(ApiError::BadRequest("the dead-letter topic must not be one the group reads".into()));
        }
        if !(MIN_ACK_WAIT_MS..=MAX_ACK_WAIT_MS).contains(&settings.ack_wait_ms) {
            return Err(ApiError::BadRequest(format!(
                "ackWaitMs must be {MIN_ACK_WAIT_MS} to {MAX_ACK_WAIT_MS} (a day)"
            )));
        }
        if settings.max_deliver != -1 && !(1..=MAX_DELIVER).contains(&settings.max_deliver) {
            return Err(ApiError::BadRequest(format!("maxDeliver must be -1 (unlimited) or 1 to {MAX_DELIVER}")));
        }
        Ok(settings)
    }
}

#[tracing::instrument(name = "queue put", skip_all, fields(%group))]
async fn put_group(
    State(app): State<SharedState>,
    Path(group): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        check_group(&group)?;
        let held = super::read_small_body(&app, &headers, body).await?;
        let body: SettingsBody = serde_json::from_slice(&held.bytes)
            .map_err(|e| ApiError::BadRequest(format!("the body must be the group's settings as JSON: {e}")))?;
        let settings = body.validate(app.max_consumer_topics)?;
        // The topics it has now too: dropping one drops what is acknowledged of it.
        let current = app.queues.settings(&group);
        let current_topics = current.iter().flat_map(|c| c.topics.iter().chain(&c.dead_letter_topic));
        for topic in settings.topics.iter().chain(&settings.dead_letter_topic).chain(current_topics) {
            access.require(Need::On { op: Op::Admin, topic, group: Some(&group) })?;
        }
        let created = app.queues.put(&group, settings.clone()).await?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, Json(settings_view(&group, &settings))).into_response())
    }
    .await;
    finish(&app, "queue_put", result)
}

#[tracing::instrument(name = "queue get", skip_all, fields(%group))]
async fn get_group(State(app): State<SharedState>, Path(group): Path<String>, access: Access) -> Response {
    let result = async {
        check_group(&group)?;
        if !super::groups_api::may_see(&access, &group) {
            access.require(Need::Group { op: Op::Consume, group: &group })?;
        }
        let settings = app
            .queues
            .settings(&group)
            .ok_or_else(|| ApiError::NoSuch(format!("no queue group '{group}' (PUT /v1/queue/{group} creates it)")))?;
        let mut view = settings_view(&group, &settings);
        let mut partitions = Vec::new();
        let mut unacknowledged = 0u64;
        for topic in &settings.topics {
            for bounds in app.bounds.partition_bounds(topic, None).await {
                let (floor, above) = app.raft.read(|s| {
                    s.queues.acked(&group, topic, bounds.partition).map_or((0, 0), |a| (a.floor, a.above.len() as u64))
                });
                let end = bounds.offsets.map(|o| o.end);
                let open = end.map(|end| end.saturating_sub(floor).saturating_sub(above));
                unacknowledged += open.unwrap_or(0);
                partitions.push(serde_json::json!({
                    "topic": topic,
                    "partition": bounds.partition,
                    "acknowledgedBelow": floor.to_string(),
                    "end": end.map(|e| e.to_string()),
                    "unacknowledged": open,
                }));
            }
        }
        view["partitions"] = serde_json::Value::Array(partitions);
        view["numUnacknowledged"] = unacknowledged.into();
        Ok(Json(view).into_response())
    }
    .await;
    finish(&app, "queue_get", result)
}

fn settings_view(group: &str, settings: &QueueSettings) -> serde_json::Value {
    let mut view = serde_json::to_value(settings).unwrap_or_default();
    view["group"] = group.into();
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(body: &str) -> Result<QueueSettings, String> {
        let body: SettingsBody = serde_json::from_str(body).map_err(|e| e.to_string())?;
        body.validate(10).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_take_defaults_and_refuse_what_cannot_work() {
        let settings = validated(r#"{"topics":["jobs"]}"#).expect("defaults");
        assert_eq!(settings, QueueSettings::defaults(vec!["jobs".into()]));
        let all =
            validated(r#"{"topics":["a","b"],"ackWaitMs":500,"maxDeliver":3,"deadLetterTopic":"dead","ordered":true}"#)
                .expect("all set");
        assert_eq!(
            (all.ack_wait_ms, all.max_deliver, all.dead_letter_topic.as_deref(), all.ordered),
            (500, 3, Some("dead"), true)
        );
        for (body, says) in [
            (r#"{"topics":[]}"#, "1 to 10"),
            (r#"{"topics":["a","a"]}"#, "twice"),
            (r#"{"topics":["a"],"deadLetterTopic":"a"}"#, "dead-letter"),
            (r#"{"topics":["a"],"ackWaitMs":5}"#, "ackWaitMs"),
            (r#"{"topics":["a"],"maxDeliver":0}"#, "maxDeliver"),
            (r#"{"topics":["a/b"]}"#, "topic"),
            (r#"{"topics":["a"],"ackwait":5}"#, "unknown field"),
        ] {
            let refused = validated(body).expect_err(body);
            assert!(refused.contains(says), "{body}: {refused}");
        }
    }
}
