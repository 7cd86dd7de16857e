//! The HTTP API: `GET /v1/brokers` (SPEC §5) and `GET /status`.

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use runnel_discovery::BrokerList;
use serde::Serialize;
use tokio::sync::watch;

/// What the handlers read: the watcher's current list and the ports to announce.
#[derive(Clone)]
pub struct Discovery {
    pub brokers: watch::Receiver<Vec<String>>,
    pub producer_port: u16,
    pub consumer_port: u16,
}

pub fn router(discovery: Discovery) -> Router {
    Router::new()
        .route("/v1/brokers", get(brokers))
        .route("/status", get(status))
        .fallback(|uri: Uri| async move {
            error(StatusCode::NOT_FOUND, "not_found", format!("no such endpoint: {}", uri.path()))
        })
        .with_state(discovery)
}

async fn brokers(State(discovery): State<Discovery>) -> Response {
    let names = discovery.brokers.borrow().clone();
    if names.is_empty() {
        return no_brokers();
    }
    Json(BrokerList {
        base_name: None,
        service_name: None,
        length: names.len(),
        names,
        producer_port: discovery.producer_port,
        consumer_port: discovery.consumer_port,
    })
    .into_response()
}

async fn status(State(discovery): State<Discovery>) -> Response {
    if discovery.brokers.borrow().is_empty() {
        no_brokers()
    } else {
        "OK".into_response()
    }
}

/// Until a broker is known there is nothing useful to answer: clients retry, Kubernetes waits.
fn no_brokers() -> Response {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "no brokers known yet (none found, or the first lookup has not answered): retry shortly".into(),
    );
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

/// The same `{"error","message"}` shape as the broker's errors.
fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    (status, Json(ErrorBody { error: code, message })).into_response()
}
