//! The HTTP listeners: one router per port (SPEC §2), sharing one [`AppState`].

mod consumer_api;
mod discovery_api;
mod groups_api;
mod metrics_api;
mod openapi_api;
mod producer_api;
mod query;
mod queue_api;
mod records_api;
mod request_limits;
mod status;
mod stream_api;
mod tokens_api;
mod topics_api;

use std::sync::Arc;

use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::watch;

use crate::cluster::Peers;
use crate::consensus::RaftNode;
use crate::consumer::{ConsumerService, GroupOffsets};
use crate::error::ApiError;
use crate::memory::{declared_length, read_body, BodyRules, HeldBody, MemoryPlan, BODY_LOOKAHEAD};
use crate::metrics::Metrics;
use crate::peer::plain_error;
use crate::produce::ProduceService;
use crate::reading::PositionReads;
use crate::replication::Replication;
use crate::serving::ConnectionStats;
use crate::store::Storage;

pub use consumer_api::router as consumer_router;
pub use discovery_api::router as discovery_router;
pub use metrics_api::router as metrics_router;
pub use producer_api::router as producer_router;

/// Everything a request handler needs.
pub struct AppState {
    pub storage: Storage,
    pub raft: RaftNode,
    pub consumers: Arc<ConsumerService>,
    /// Group offsets and lag for operators.
    pub groups: Arc<GroupOffsets>,
    pub produce: Arc<ProduceService>,
    pub reads: Arc<PositionReads>,
    /// Queue groups' leases (SPEC §14).
    pub queues: Arc<crate::queue::QueueService>,
    /// Topics' settings and deletion (SPEC §15).
    pub topics: Arc<crate::topics::TopicService>,
    /// Every partition's bounds, from their leaders.
    pub bounds: Arc<crate::bounds::Bounds>,
    /// A permit per live stream (`RUNNEL_MAX_STREAMS`).
    pub streams: Arc<tokio::sync::Semaphore>,
    pub replication: Arc<Replication>,
    pub metrics: Arc<Metrics>,
    pub peers: Peers,
    pub producer_port: u16,
    pub consumer_port: u16,
    pub max_consumer_topics: usize,
    /// Most `runnel_group_lag_records` series the metrics port exports.
    pub max_lag_series: usize,
    /// The budgets every buffer draws from.
    pub memory: MemoryPlan,
    /// How a produce body must arrive (its limit is `RUNNEL_MAX_REQUEST_SIZE`).
    pub produce_body: BodyRules,
    /// The client ports' connections.
    pub connections: Arc<ConnectionStats>,
    /// Why the cluster refused this broker's join, if it did (its ring is not the agreed one).
    pub join_refused: watch::Receiver<Option<String>>,
}

impl AppState {
    /// The broker may take writes: it is not shutting down and its cluster state is current.
    /// Unlike [`AppState::ready`], a Raft election does not stop writes: partition leadership
    /// is already known here.
    pub fn accepts_writes(&self) -> bool {
        !self.shutting_down() && self.raft.has_caught_up() && self.ring_conflict().is_none()
    }

    /// Why this broker must not serve the cluster's partitions: it is configured for another
    /// ring than the one agreed in Raft (or the cluster refused its join for that).
    pub fn ring_conflict(&self) -> Option<String> {
        self.join_refused.borrow().clone().or_else(|| self.replication.ring_conflict())
    }

    /// Set once, by the shutdown (see [`Replication::begin_draining`]).
    pub fn shutting_down(&self) -> bool {
        self.replication.draining()
    }
}

pub type SharedState = Arc<AppState>;

/// JSON 404/405 for every router, JSON for the errors axum's extractors answer themselves (a
/// bad path parameter, say), and our limits on the request head, so no client gets an empty
/// or plain-text error from us (what hyper refuses before any router runs is listed in
/// [`crate::limits`]).
fn with_fallbacks(router: Router<SharedState>) -> Router<SharedState> {
    router
        .fallback(|uri: Uri| async move { ApiError::NotFound(uri.path().to_string()) })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
        })
        .layer(axum::middleware::map_response(errors_as_json))
        .layer(axum::middleware::from_fn(request_limits::within_request_limits))
}

/// The answer to a request (an error as its JSON response), counted in the request metrics
/// under `endpoint`.
fn finish(app: &SharedState, endpoint: &'static str, result: Result<Response, ApiError>) -> Response {
    let response = result.unwrap_or_else(IntoResponse::into_response);
    app.metrics.request(endpoint, response.status().as_u16());
    response
}

/// The body of a small admin request (a reset, a revocation): at most 16 KiB, within the
/// connection's own lookahead, so it takes nothing from a memory budget.
async fn read_small_body(
    app: &SharedState,
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<HeldBody, ApiError> {
    let rules = BodyRules { limit: BODY_LOOKAHEAD, ..app.produce_body };
    Ok(read_body(body, declared_length(headers), rules, &app.memory.reads).await?)
}

/// Rewrites an error response that is not JSON into [`ApiError::Rejected`] with its text.
pub async fn errors_as_json(response: Response) -> Response {
    plain_error(response)
        .await
        .unwrap_or_else(|(status, message)| ApiError::Rejected { status, message }.into_response())
}
