use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::{with_fallbacks, SharedState};

pub fn router(app: SharedState) -> Router {
    with_fallbacks(Router::new().route("/metrics", get(metrics))).with_state(app)
}

async fn metrics(State(app): State<SharedState>) -> impl IntoResponse {
    let body = app.metrics.render(app.consumers.counts());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}
