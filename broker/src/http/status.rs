//! `GET /status` on every client port: 200 when the broker can serve, else 503 + Retry-After.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::SharedState;
use crate::error::ApiError;

pub async fn status(State(app): State<SharedState>) -> Response {
    if app.ready() {
        "OK".into_response()
    } else {
        ApiError::Unavailable("the broker is not ready (starting, electing a Raft leader, or shutting down)".into())
            .into_response()
    }
}
