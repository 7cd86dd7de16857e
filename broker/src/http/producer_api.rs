//! `POST /v1/topic/{topic}/messages` (SPEC §3): parses the request and answers; the
//! [`crate::produce`] service chooses the partition and stores the records.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::query::Params;
use super::status::{livez, producer_status};
use super::{with_fallbacks, SharedState};
use crate::auth::{Access, Need, Op};
use crate::error::ApiError;
use crate::memory::{declared_length, read_body};
use crate::store::{validate_topic_name, Conditions, ProducerStamp};

pub fn router(app: SharedState) -> Router {
    let messages = post(produce).get(|| async {
        ApiError::MethodNotAllowed("the producer port only accepts writes: poll records on the consumer port".into())
    });
    with_fallbacks(
        Router::new()
            .route("/v1/topic/{topic}/messages", messages)
            .route("/status", get(producer_status))
            .route("/livez", get(livez)),
    )
    .with_state(app)
}

/// The JSON acknowledgement (with `Accept: application/json`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Produced {
    topic: String,
    partition: u32,
    token: String,
    range_index: u32,
    /// Offset of the first record; record i got `startOffset + i` (null for a repeat of a
    /// request older than the producer's last five here: stored, its offsets no longer known).
    start_offset: Option<String>,
    count: u32,
    /// A repeat of an idempotent request stored before: nothing new was stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

/// The answer header of a repeat (SPEC §12).
const PRODUCER_DUPLICATE: &str = "producer-duplicate";

/// The idempotence and condition headers of a produce (SPEC §12), checked before its body is read.
fn conditions(headers: &HeaderMap) -> Result<Conditions, ApiError> {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().map_err(|_| ApiError::BadRequest(format!("the {name} header is not text"))))
            .transpose()
    };
    let producer = match (text("producer-id")?, text("producer-epoch")?, text("producer-seq")?) {
        (None, None, None) => None,
        (Some(id), Some(epoch), Some(seq)) => Some(ProducerStamp::parse(id, epoch, seq).map_err(ApiError::BadRequest)?),
        _ => {
            return Err(ApiError::BadRequest(
                "Producer-Id, Producer-Epoch and Producer-Seq go together: send all three or none".into(),
            ))
        }
    };
    let expected_offset = text("expected-offset")?
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid Expected-Offset '{v}': an offset")))
        })
        .transpose()?;
    Ok(Conditions { producer, expected_offset, ..Conditions::default() })
}

#[tracing::instrument(name = "produce", skip_all, fields(topic = %topic))]
async fn produce(
    State(app): State<SharedState>,
    Path(topic): Path<String>,
    access: Access,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = async {
        access.require(Need::On { op: Op::Produce, topic: &topic, group: None })?;
        store(&app, &topic, params.first(&["partitionKey"]), &headers, body).await
    }
    .await;
    let response = match result {
        Ok(produced) => {
            app.metrics.produce_latency(started.elapsed());
            let duplicate = produced.duplicate;
            let mut response = if accepts_json(&headers) {
                Json(produced).into_response()
            } else {
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response()
            };
            if duplicate {
                response.headers_mut().insert(PRODUCER_DUPLICATE, header::HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => {
            tracing::debug!("produce rejected: {e}");
            e.into_response()
        }
    };
    app.metrics.request("produce", response.status().as_u16());
    response
}

async fn store(
    app: &SharedState,
    topic: &str,
    key: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Produced, ApiError> {
    validate_topic_name(topic)?;
    let conditions = conditions(headers)?;
    // Held until the request is answered: its records are slices of this body.
    let held = read_body(body, declared_length(headers), app.produce_body, &app.memory.produce).await?;
    let body = held.bytes;
    // Checked once the body is in: a request still uploading when shutdown begins is refused
    // (the client retries elsewhere), one already writing is finished.
    if !app.accepts_writes() {
        return Err(ApiError::Unavailable(
            app.ring_conflict()
                .unwrap_or_else(|| "the broker is not ready to accept writes (starting or shutting down)".into()),
        ));
    }
    let records = split_records(&body, is_ndjson(headers));
    if records.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    let bytes: usize = records.iter().map(Bytes::len).sum();
    let stored = app.produce.produce(topic, key.map(str::as_bytes), records, conditions).await?;
    let appended = stored.appended;
    if stored.forwarded {
        app.metrics.produce_forwarded.inc();
    }
    if appended.duplicate {
        app.metrics.produce_duplicates.inc();
    } else {
        app.metrics.produce_records.inc_by(appended.count as u64);
        app.metrics.produce_bytes.inc_by(bytes as u64);
    }
    let info = app.replication.leadership().layout(|l| l.info(stored.partition)).unwrap_or_default();
    Ok(Produced {
        topic: topic.to_string(),
        partition: stored.partition,
        token: info.token.to_string(),
        range_index: info.range_index,
        start_offset: (appended.count > 0 || !appended.duplicate).then(|| appended.base_offset.to_string()),
        count: appended.count,
        duplicate: appended.duplicate,
    })
}

fn media_type(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .collect()
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    media_type(headers, header::CONTENT_TYPE).iter().any(|m| m == "application/x-ndjson")
}

pub(super) fn accepts_json(headers: &HeaderMap) -> bool {
    media_type(headers, header::ACCEPT).iter().any(|m| m == "application/json")
}

/// NDJSON: one record per non-empty line (`\n` or `\r\n`); otherwise the body is one record.
/// Records are slices of the body, not copies.
fn split_records(body: &Bytes, ndjson: bool) -> Vec<Bytes> {
    if !ndjson {
        return if body.is_empty() { Vec::new() } else { vec![body.clone()] };
    }
    let mut records = Vec::new();
    let mut start = 0;
    while start < body.len() {
        let end = body[start..].iter().position(|&b| b == b'\n').map_or(body.len(), |i| start + i);
        let mut line_end = end;
        if line_end > start && body[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        if line_end > start {
            records.push(body.slice(start..line_end));
        }
        start = end + 1;
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_splits_on_lf_and_crlf_and_skips_blank_lines() {
        let body = Bytes::from_static(b"{\"a\":1}\r\n\n{\"b\":2}\n  \nlast");
        let records = split_records(&body, true);
        assert_eq!(records, vec![&b"{\"a\":1}"[..], b"{\"b\":2}", b"  ", b"last"]);
        assert_eq!(split_records(&body, false).len(), 1);
        assert!(split_records(&Bytes::from_static(b"\n\r\n"), true).is_empty());
    }

    #[test]
    fn content_type_parameters_and_case_are_ignored() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "Application/X-NDJSON; charset=utf-8".parse().expect("header"));
        h.insert(header::ACCEPT, "text/plain, application/json;q=0.9".parse().expect("header"));
        assert!(is_ndjson(&h));
        assert!(accepts_json(&h));
    }
}
