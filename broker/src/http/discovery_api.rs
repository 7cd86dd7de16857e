use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use runnel_discovery::BrokerList;

use super::{status::status, with_fallbacks, SharedState};

pub fn router(app: SharedState) -> Router {
    with_fallbacks(Router::new().route("/v1/brokers", get(brokers)).route("/status", get(status))).with_state(app)
}

async fn brokers(State(app): State<SharedState>) -> Json<BrokerList> {
    Json(BrokerList {
        base_name: None,
        service_name: None,
        length: app.peers.names().len(),
        names: app.peers.names().to_vec(),
        producer_port: app.producer_port,
        consumer_port: app.consumer_port,
    })
}
