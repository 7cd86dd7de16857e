//! Topics as objects on the discovery port (SPEC §15): `GET /v1/topics`, and `GET`, `PUT`,
//! `PATCH`, `DELETE /v1/topics/{topic}`. Creating, changing and deleting need `admin` on the
//! topic; looking needs any scope on it (the list shows the topics the token covers).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{finish, read_small_body, SharedState};
use crate::auth::{Access, Need, Op};
use crate::consensus::topics::{TopicEntry, TopicState};
use crate::error::ApiError;
use crate::store::validate_topic_name;
use crate::topics::{patch_from_json, settings_from_json, settings_json};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/topics", get(list))
        .route("/v1/topics/{topic}", get(describe).put(create).patch(change).delete(delete))
}

/// `{"topic", "state", "settings", "set"}` (and the brokers a deletion waits for).
fn entry_json(app: &SharedState, topic: &str, entry: &TopicEntry) -> Value {
    let mut view = settings_json(&entry.settings, app.topics.defaults());
    view["topic"] = topic.into();
    match &entry.state {
        TopicState::Live => view["state"] = "live".into(),
        TopicState::Deleting { pending } => {
            view["state"] = "deleting".into();
            view["pendingBrokers"] = json!(pending);
        }
    }
    view
}

/// The settings of a body (`{}` when it is empty).
async fn body_json(app: &SharedState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let held = read_small_body(app, headers, body).await?;
    if held.bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&held.bytes).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))
}

fn not_found(topic: &str) -> ApiError {
    ApiError::TopicNotFound(format!("no topic '{topic}'"))
}

async fn list(State(app): State<SharedState>, access: Access) -> Response {
    let topics: Vec<Value> = app
        .topics
        .list()
        .iter()
        .filter(|(topic, _)| access.allows(Need::AnyOn { topic }))
        .map(|(topic, entry)| entry_json(&app, topic, entry))
        .collect();
    finish(&app, "topics", Ok(Json(json!({ "topics": topics })).into_response()))
}

/// The topic with every partition: bounds, leader, copies and bytes on the leader's disk
/// (`null` where the leader did not answer in time).
async fn describe(State(app): State<SharedState>, Path(topic): Path<String>, access: Access) -> Response {
    let result = async {
        validate_topic_name(&topic)?;
        access.require(Need::AnyOn { topic: &topic })?;
        let entry = match app.topics.get(&topic) {
            Some(entry) => entry,
            // Created through another broker a moment ago, it may not be applied here yet.
            None => app.topics.get_current(&topic).await?.ok_or_else(|| not_found(&topic))?,
        };
        let partitions: Vec<Value> = app
            .bounds
            .partition_bounds(&topic, None)
            .await
            .iter()
            .map(|p| {
                json!({
                    "partition": p.partition,
                    "generation": p.generation,
                    "leader": p.leader,
                    "epoch": p.epoch,
                    "copies": app.raft.read(|s| s.replicas(p.partition)),
                    "start": p.offsets.map(|o| o.start.to_string()),
                    "end": p.offsets.map(|o| o.end.to_string()),
                    "bytes": p.offsets.map(|o| o.bytes),
                })
            })
            .collect();
        let mut view = entry_json(&app, &topic, &entry);
        view["partitions"] = partitions.into();
        Ok(Json(view).into_response())
    };
    finish(&app, "topic_describe", result.await)
}

/// The settings a PUT or PATCH of `topic` sends, once the caller may administer it.
async fn admin_body(
    app: &SharedState,
    topic: &str,
    access: &Access,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    validate_topic_name(topic)?;
    access.require(Need::On { op: Op::Admin, topic, group: None })?;
    body_json(app, headers, body).await
}

/// 201 created, 200 if it exists with these settings, 409 if with others.
async fn create(
    State(app): State<SharedState>,
    Path(topic): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let settings = settings_from_json(&admin_body(&app, &topic, &access, &headers, body).await?)?;
        let created = app.topics.create(&topic, settings).await?;
        let view = entry_json(&app, &topic, &TopicEntry { settings, state: TopicState::Live });
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, Json(view)).into_response())
    };
    finish(&app, "topic_create", result.await)
}

async fn change(
    State(app): State<SharedState>,
    Path(topic): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let patch = patch_from_json(&admin_body(&app, &topic, &access, &headers, body).await?)?;
        let settings = app.topics.change(&topic, patch).await?;
        Ok(Json(entry_json(&app, &topic, &TopicEntry { settings, state: TopicState::Live })).into_response())
    };
    finish(&app, "topic_change", result.await)
}

/// 202: the deletion is under way (every broker removes the files; `GET` shows it until then).
async fn delete(State(app): State<SharedState>, Path(topic): Path<String>, access: Access) -> Response {
    let result = async {
        validate_topic_name(&topic)?;
        access.require(Need::On { op: Op::Admin, topic: &topic, group: None })?;
        app.topics.delete(&topic).await?;
        let view = match app.topics.get_current(&topic).await? {
            Some(entry) => entry_json(&app, &topic, &entry),
            None => json!({ "topic": topic, "state": "deleted" }),
        };
        Ok((StatusCode::ACCEPTED, Json(view)).into_response())
    };
    finish(&app, "topic_delete", result.await)
}
