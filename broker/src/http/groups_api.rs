//! Group offsets and lag on the consumer port (SPEC §11): `GET /v1/groups`,
//! `GET /v1/groups/{group}`, `POST /v1/groups/{group}/offsets`. Offsets are decimal strings,
//! as everywhere in the API (SPEC §4).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::consumer_api::check_name;
use super::query::Params;
use super::{finish, read_small_body, SharedState};
use crate::auth::{Access, Need, Op};
use crate::consumer::{GroupDescription, PartitionOffsets, PlannedOffset, ResetRequest, ResetTo};
use crate::error::ApiError;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/v1/groups", get(list))
        .route("/v1/groups/{group}", get(describe))
        .route("/v1/groups/{group}/offsets", post(reset))
}

#[derive(Serialize)]
struct GroupList {
    groups: Vec<GroupEntry>,
}

#[derive(Serialize)]
struct GroupEntry {
    group: String,
    members: usize,
}

/// Lists the groups the caller may look at (SPEC §13): those its token may consume as or administer.
async fn list(State(app): State<SharedState>, access: Access) -> Response {
    let result = async {
        let groups = app.groups.list().await?;
        let groups = groups
            .into_iter()
            .filter(|g| may_see(&access, &g.group))
            .map(|g| GroupEntry { group: g.group, members: g.members })
            .collect();
        Ok(Json(GroupList { groups }).into_response())
    }
    .await;
    finish(&app, "groups", result)
}

#[derive(Serialize)]
struct GroupView {
    group: String,
    members: Vec<MemberView>,
    /// The sum of the partitions' lags whose end is known.
    lag: String,
    topics: Vec<TopicView>,
}

#[derive(Serialize)]
struct MemberView {
    id: String,
    topics: Vec<String>,
}

#[derive(Serialize)]
struct TopicView {
    topic: String,
    lag: String,
    partitions: Vec<PartitionView>,
}

/// `committed` is null until the group commits the partition; `start`, `end` and `lag` are
/// null when its leader did not answer in time.
#[derive(Serialize)]
struct PartitionView {
    partition: u32,
    generation: u32,
    leader: u32,
    member: Option<String>,
    committed: Option<String>,
    start: Option<String>,
    end: Option<String>,
    lag: Option<String>,
}

impl From<PartitionOffsets> for PartitionView {
    fn from(p: PartitionOffsets) -> PartitionView {
        PartitionView {
            partition: p.partition,
            generation: p.generation,
            leader: p.leader,
            lag: p.lag().map(|l| l.to_string()),
            member: p.member,
            committed: p.committed.map(|c| c.to_string()),
            start: p.bounds.map(|b| b.start.to_string()),
            end: p.bounds.map(|b| b.end.to_string()),
        }
    }
}

fn group_view(description: GroupDescription) -> GroupView {
    let mut total = 0u64;
    let topics = description
        .topics
        .into_iter()
        .map(|(topic, partitions)| {
            let lag: u64 = partitions.iter().filter_map(PartitionOffsets::lag).sum();
            total += lag;
            let partitions = partitions.into_iter().map(PartitionView::from).collect();
            TopicView { topic, lag: lag.to_string(), partitions }
        })
        .collect();
    GroupView {
        group: description.group,
        members: description.members.into_iter().map(|m| MemberView { id: m.id, topics: m.topics }).collect(),
        lag: total.to_string(),
        topics,
    }
}

pub(super) fn may_see(access: &Access, group: &str) -> bool {
    access.allows(Need::Group { op: Op::Consume, group }) || access.allows(Need::Group { op: Op::Admin, group })
}

/// Of a group it may see, the caller sees the topics it may consume or administer as that
/// group: a token for `orders` learns nothing of the group's other topics.
fn may_see_topic(access: &Access, group: &str, topic: &str) -> bool {
    [Op::Consume, Op::Admin].into_iter().any(|op| access.allows(Need::On { op, topic, group: Some(group) }))
}

async fn describe(State(app): State<SharedState>, Path(group): Path<String>, access: Access) -> Response {
    let result = async {
        check_name("group", &group)?;
        if !may_see(&access, &group) {
            access.require(Need::Group { op: Op::Consume, group: &group })?;
        }
        let mut description = app.groups.describe(&group).await?;
        description.topics.retain(|topic, _| may_see_topic(&access, &group, topic));
        for member in &mut description.members {
            member.topics.retain(|topic| may_see_topic(&access, &group, topic));
        }
        Ok(Json(group_view(description)).into_response())
    }
    .await;
    finish(&app, "group", result)
}

/// The body of a reset: `{"topic","partitions"?,"to","value"?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    topic: String,
    #[serde(default)]
    partitions: Option<Vec<u32>>,
    to: String,
    /// A JSON integer, or one written as a decimal string like the API's own offsets.
    #[serde(default)]
    value: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResetView {
    group: String,
    topic: String,
    /// True when nothing was applied.
    dry_run: bool,
    partitions: Vec<PlannedView>,
}

#[derive(Serialize)]
struct PlannedView {
    partition: u32,
    /// The committed offset before the reset (null when there was none).
    current: Option<String>,
    new: String,
}

impl From<PlannedOffset> for PlannedView {
    fn from(p: PlannedOffset) -> PlannedView {
        PlannedView { partition: p.partition, current: p.current.map(|c| c.to_string()), new: p.new.to_string() }
    }
}

/// The reset a body asks for.
fn reset_request(body: &[u8]) -> Result<ResetRequest, ApiError> {
    let body: ResetBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be JSON {{\"topic\":…,\"partitions\":[…]?,\"to\":…,\"value\":…?}}: {e}"
        ))
    })?;
    let value = match &body.value {
        None | Some(serde_json::Value::Null) => None,
        // JSON Schema's integers include 5401.0; beyond 2^53 a float is no exact offset.
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => {
                Some((f as i64).to_string())
            }
            _ => Some(n.to_string()),
        },
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(ApiError::BadRequest(format!("value must be an integer, not {other}"))),
    };
    let to = match (body.to.as_str(), value) {
        ("earliest", None) => ResetTo::Earliest,
        ("latest", None) => ResetTo::Latest,
        (to @ ("earliest" | "latest"), Some(_)) => {
            return Err(ApiError::BadRequest(format!("to={to} takes no value")));
        }
        (to @ ("offset" | "timestamp" | "shift"), None) => {
            return Err(ApiError::BadRequest(format!("to={to} needs a value")));
        }
        ("offset", Some(v)) => ResetTo::Offset(
            v.parse().map_err(|_| ApiError::BadRequest(format!("invalid offset '{v}': a whole number from 0")))?,
        ),
        ("timestamp", Some(v)) => match v.parse::<i64>() {
            Ok(ms) if ms >= 0 => ResetTo::Timestamp(ms),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "invalid timestamp '{v}': a whole number of milliseconds since the Unix epoch"
                )))
            }
        },
        ("shift", Some(v)) => ResetTo::Shift(v.parse().map_err(|_| {
            ApiError::BadRequest(format!("invalid shift '{v}': a whole number of records, negative to go back"))
        })?),
        (other, _) => {
            return Err(ApiError::BadRequest(format!(
                "invalid to '{other}': use earliest, latest, offset, timestamp or shift"
            )))
        }
    };
    Ok(ResetRequest { topic: body.topic, partitions: body.partitions, to })
}

/// A `true`/`false` query flag, false when absent.
fn flag(params: &Params, name: &str) -> Result<bool, ApiError> {
    match params.first(&[name]) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!("invalid {name} '{other}': use true or false"))),
    }
}

#[tracing::instrument(name = "reset offsets", skip_all, fields(%group))]
async fn reset(
    State(app): State<SharedState>,
    Path(group): Path<String>,
    access: Access,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        check_name("group", &group)?;
        let (dry_run, force) = (flag(&params, "dryRun")?, flag(&params, "force")?);
        // A reset names one topic and a few partitions.
        let held = read_small_body(&app, &headers, body).await?;
        let request = reset_request(&held.bytes)?;
        access.require(Need::On { op: Op::Admin, topic: &request.topic, group: Some(&group) })?;
        let planned = app.groups.reset(&group, &request, dry_run, force).await?;
        let partitions = planned.into_iter().map(PlannedView::from).collect();
        Ok(Json(ResetView { group, topic: request.topic, dry_run, partitions }).into_response())
    }
    .await;
    finish(&app, "reset_offsets", result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Result<ResetRequest, String> {
        reset_request(body.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_reset_body_names_where_to_and_a_value_only_when_it_needs_one() {
        let request = parsed(r#"{"topic":"t","to":"earliest"}"#).expect("earliest");
        assert_eq!((request.to, request.partitions), (ResetTo::Earliest, None));
        let request = parsed(r#"{"topic":"t","partitions":[1,2],"to":"offset","value":"42"}"#).expect("offset");
        assert_eq!((request.to, request.partitions), (ResetTo::Offset(42), Some(vec![1, 2])));
        assert_eq!(parsed(r#"{"topic":"t","to":"shift","value":-3}"#).map(|r| r.to), Ok(ResetTo::Shift(-3)));
        let at = parsed(r#"{"topic":"t","to":"timestamp","value":1700000000000}"#).map(|r| r.to);
        assert_eq!(at, Ok(ResetTo::Timestamp(1_700_000_000_000)));
        assert_eq!(parsed(r#"{"topic":"t","to":"latest","value":null}"#).map(|r| r.to), Ok(ResetTo::Latest));
        assert_eq!(parsed(r#"{"topic":"t","to":"offset","value":5401.0}"#).map(|r| r.to), Ok(ResetTo::Offset(5401)));
        assert_eq!(parsed(r#"{"topic":"t","to":"shift","value":-2e1}"#).map(|r| r.to), Ok(ResetTo::Shift(-20)));
        for (body, says) in [
            (r#"{"topic":"t","to":"sometime"}"#, "invalid to"),
            (r#"{"topic":"t","to":"offset"}"#, "needs a value"),
            (r#"{"topic":"t","to":"latest","value":3}"#, "takes no value"),
            (r#"{"topic":"t","to":"offset","value":-1}"#, "invalid offset"),
            (r#"{"topic":"t","to":"offset","value":1.5}"#, "invalid offset"),
            (r#"{"topic":"t","to":"offset","value":1e300}"#, "invalid offset"),
            (r#"{"topic":"t","to":"timestamp","value":-5}"#, "invalid timestamp"),
            (r#"{"topic":"t","to":"shift","value":[1]}"#, "must be an integer"),
            (r#"{"topic":"t","to":"earliest","partition":[1]}"#, "unknown field"),
            (r#"{"to":"earliest"}"#, "missing field"),
            ("not json", "must be JSON"),
        ] {
            let refused = parsed(body).expect_err(body);
            assert!(refused.contains(says), "{body}: {refused}");
        }
    }
}
