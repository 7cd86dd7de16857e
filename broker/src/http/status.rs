//! Readiness and liveness on every client port.
//!
//! `GET /status` (readiness, SPEC §5): 200 when this port can serve, else 503 with
//! `Retry-After`; either way a JSON body names every condition that stops it. Conditions that
//! stop every port: starting, shutting down, a ring other than the cluster's agreed one, Raft
//! stopped, no Raft leader, the Raft quorum lost, Raft waiting for disk space.
//! The producer port also reports its produce memory refusing requests and a full disk, the
//! consumer port its read memory; the discovery port reports all of them.
//!
//! `GET /livez` (liveness): 503 only when the process cannot recover by itself (Raft stopped
//! for good); an answer at all shows the runtime is not wedged. Kubernetes restarts on this
//! one, and takes a broker out of the client Service on `/status`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::SharedState;
use crate::consensus::RaftHealth;
use crate::memory::Budget;
use crate::timing::MEMORY_PRESSURE;

/// Which port asks: each reports the conditions that stop what it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Discovery,
    Producer,
    Consumer,
}

/// One reason the broker cannot serve.
#[derive(Debug, Serialize)]
pub struct Condition {
    pub condition: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct StatusBody {
    ready: bool,
    conditions: Vec<Condition>,
}

fn condition(condition: &'static str, message: impl Into<String>) -> Condition {
    Condition { condition, message: message.into() }
}

/// What stops `port` from serving now (nothing: ready).
pub fn conditions(app: &SharedState, port: Port) -> Vec<Condition> {
    let mut found = Vec::new();
    if app.shutting_down() {
        found.push(condition("shutting_down", "the broker is shutting down"));
    }
    if let Some(why) = app.ring_conflict() {
        found.push(condition("ring_mismatch", why));
    }
    match app.raft.health() {
        RaftHealth::Healthy if !app.raft.read(|s| s.layout.is_agreed()) => found.push(condition(
            "starting",
            "the cluster has not agreed on its ring yet (its first Raft leader proposes it at once)",
        )),
        RaftHealth::Healthy => {}
        RaftHealth::Starting => {
            found.push(condition("starting", "the broker is applying the Raft log it had at start"))
        }
        RaftHealth::NoLeader => found.push(condition(
            "no_raft_leader",
            "no Raft leader is known: an election is under way, or this broker is cut off from a majority",
        )),
        RaftHealth::QuorumLost { ms_since_ack } => found.push(condition(
            "raft_quorum_lost",
            match ms_since_ack {
                Some(ms) => format!("this broker leads Raft but a majority has not answered for {ms} ms"),
                None => "this broker leads Raft but a majority has never answered".to_string(),
            },
        )),
        RaftHealth::WaitingForDisk => found.push(condition(
            "raft_waiting_for_disk",
            "Raft waits for disk space to write (registrations and commits wait): free space on the data disk",
        )),
        RaftHealth::Stopped(reason) => found.push(condition("raft_stopped", format!("Raft stopped: {reason}"))),
    }
    let refusing = |budget: &Budget| {
        budget.refused_within(MEMORY_PRESSURE).then(|| {
            condition(
                "memory_exhausted",
                format!("the {} memory ({} bytes) is refusing requests", budget.class(), budget.size()),
            )
        })
    };
    if matches!(port, Port::Producer | Port::Discovery) {
        found.extend(refusing(&app.memory.produce));
        let disk = app.storage.disk();
        if disk.disk_full() {
            found.push(condition(
                "disk_full",
                format!(
                    "the data disk has {} bytes free (reserve {}), or a write is waiting for space: produces get 507",
                    disk.free_bytes(),
                    disk.reserve_bytes()
                ),
            ));
        }
    }
    if matches!(port, Port::Consumer | Port::Discovery) {
        found.extend(refusing(&app.memory.reads));
    }
    found
}

async fn answer(app: SharedState, port: Port) -> Response {
    let conditions = conditions(&app, port);
    let ready = conditions.is_empty();
    let mut response = Json(StatusBody { ready, conditions }).into_response();
    if !ready {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

pub async fn discovery_status(State(app): State<SharedState>) -> Response {
    answer(app, Port::Discovery).await
}

pub async fn producer_status(State(app): State<SharedState>) -> Response {
    answer(app, Port::Producer).await
}

pub async fn consumer_status(State(app): State<SharedState>) -> Response {
    answer(app, Port::Consumer).await
}

pub async fn livez(State(app): State<SharedState>) -> Response {
    #[derive(Serialize)]
    struct LiveBody {
        alive: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    }
    match app.raft.health() {
        RaftHealth::Stopped(reason) => {
            let body = LiveBody {
                alive: false,
                message: Some(format!("Raft stopped for good ({reason}): restart the broker")),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        _ => Json(LiveBody { alive: true, message: None }).into_response(),
    }
}
