//! Reads by position (SPEC §10): `GET /v1/topic/{topic}/records?partition=P&offset=N|earliest|latest`
//! or `&timestamp=MS`, `&limit=L`, `&wait=MS`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::query::Params;
use super::{finish, stream_api, SharedState};
use crate::auth::{Access, Need, Op};
use crate::consumer::write_record;
use crate::error::ApiError;
use crate::memory;
use crate::reading::{ReadRequest, RecordsRead, Start};

/// Records one read returns when the request names no `limit`.
const DEFAULT_LIMIT: usize = 100;

/// The request a records URL describes.
pub fn read_request(topic: String, params: &Params) -> Result<ReadRequest, ApiError> {
    let number = |name: &str| params.number(name);
    let partition =
        number("partition")?.ok_or_else(|| ApiError::BadRequest("the partition query parameter is required".into()))?;
    let partition = u32::try_from(partition).map_err(|_| ApiError::BadRequest(format!("no partition {partition}")))?;
    let start = Start::parse(params.first(&["offset"]), params.first(&["timestamp"])).map_err(ApiError::BadRequest)?;
    let limit = number("limit")?.map_or(DEFAULT_LIMIT, |l| l.min(usize::MAX as u64) as usize);
    let wait = Duration::from_millis(number("wait")?.unwrap_or(0));
    Ok(ReadRequest { topic, partition, start, limit, max_bytes: usize::MAX, wait })
}

/// A read, or with `Accept: text/event-stream` or a WebSocket upgrade, a live stream.
#[tracing::instrument(name = "read", skip_all, fields(%topic))]
pub async fn records(
    State(app): State<SharedState>,
    Path(topic): Path<String>,
    access: Access,
    params: Params,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    if let Err(e) = access.require(Need::On { op: Op::Consume, topic: &topic, group: None }) {
        return finish(&app, "read", Err(e));
    }
    let (endpoint, result) = if stream_api::is_websocket(&parts.headers) {
        let result = async {
            let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &()).await.map_err(|rejection| {
                ApiError::Rejected { status: rejection.status(), message: rejection.body_text() }
            })?;
            stream_api::websocket(app.clone(), read_request(topic, &params)?, upgrade, access).await
        };
        ("websocket", result.await)
    } else if stream_api::wants_events(&parts.headers) {
        let result = async {
            let mut request = read_request(topic, &params)?;
            if let Some(next) = stream_api::last_event_id(&parts.headers)? {
                request.start = Start::Offset(next);
            }
            stream_api::sse(app.clone(), request, access).await
        };
        ("events", result.await)
    } else {
        let result = async {
            let request = read_request(topic, &params)?;
            let (read, held) = app.reads.read(&request).await?;
            let json = records_json(request.partition, &read);
            let body = memory::hold_until_sent(Body::from(json), held);
            Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
        };
        ("read", result.await)
    };
    finish(&app, endpoint, result)
}

/// `GET /v1/topic/{topic}`: every partition of every generation with its `start`, `end`
/// (decimal strings; null when its leader did not answer), `leader`, `epoch` and `generation`.
/// Topics come into being with their first record, so one never written is 0 to 0 everywhere.
#[tracing::instrument(name = "topic", skip_all, fields(%topic))]
pub async fn topic(State(app): State<SharedState>, Path(topic): Path<String>, access: Access) -> Response {
    let result = async {
        crate::store::validate_topic_name(&topic)?;
        access.require(Need::AnyOn { topic: &topic })?;
        let partitions = app.bounds.partition_bounds(&topic, None).await;
        let rows: Vec<serde_json::Value> = partitions
            .iter()
            .map(|p| {
                serde_json::json!({
                    "partition": p.partition,
                    "generation": p.generation,
                    "leader": p.leader,
                    "epoch": p.epoch,
                    "start": p.offsets.map(|o| o.start.to_string()),
                    "end": p.offsets.map(|o| o.end.to_string()),
                })
            })
            .collect();
        Ok::<_, ApiError>(axum::Json(serde_json::json!({"topic": topic, "partitions": rows})).into_response())
    }
    .await;
    finish(&app, "topic", result)
}

/// One record as a read or a stream shows it: `{"partition","offset","timestamp","value"}`.
pub fn write_record_json(out: &mut Vec<u8>, partition: u32, record: &crate::store::StoredRecord) {
    out.extend_from_slice(
        format!(
            "{{\"partition\":{partition},\"offset\":\"{}\",\"timestamp\":{},\"value\":",
            record.offset, record.timestamp_ms
        )
        .as_bytes(),
    );
    write_record(out, &record.value);
    out.push(b'}');
}

/// `{"records":[…],"nextOffset","end","upToDate"}`, written by hand so each stored record is
/// copied once, straight into the body.
fn records_json(partition: u32, read: &RecordsRead) -> Vec<u8> {
    let size: usize = read.records.iter().map(|r| r.value.len() + 80).sum();
    let mut out = Vec::with_capacity(size + 96);
    out.extend_from_slice(b"{\"records\":[");
    for (i, record) in read.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_record_json(&mut out, partition, record);
    }
    out.extend_from_slice(
        format!(
            "],\"nextOffset\":\"{}\",\"end\":\"{}\",\"upToDate\":{}}}",
            read.next_offset,
            read.end,
            read.up_to_date()
        )
        .as_bytes(),
    );
    out
}
