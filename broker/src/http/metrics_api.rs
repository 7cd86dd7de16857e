use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::{with_fallbacks, SharedState};
use crate::metrics::{BudgetUse, PartitionLag, StateSizes};

pub fn router(app: SharedState) -> Router {
    with_fallbacks(Router::new().route("/metrics", get(metrics))).with_state(app)
}

async fn metrics(State(app): State<SharedState>) -> impl IntoResponse {
    let consumers = app.consumers.counts();
    let standing = app.replication.leadership().raft().standing();
    let sizes = StateSizes {
        consumers: consumers.registered,
        groups: consumers.groups,
        consumers_tracked: consumers.tracked,
        cursor_groups: consumers.cursor_groups,
        offset_groups: consumers.offset_groups,
        replicated_partitions: app.replication.replicated_partitions(),
        connections_open: app.connections.open.load(Ordering::Relaxed),
        connections_limit: app.memory.client_connections,
        memory: app
            .memory
            .budgets()
            .iter()
            .map(|b| BudgetUse { class: b.class(), size: b.size(), reserved: b.in_use() })
            .collect(),
        disk_free_bytes: app.storage.disk().free_bytes(),
        disk_reserve_bytes: app.storage.disk().reserve_bytes(),
        raft_term: standing.term,
        raft_has_leader: standing.has_leader,
        raft_is_leader: standing.is_leader,
        partitions_led: app.replication.leadership().served().len(),
        group_lag: app
            .groups
            .led_lag()
            .into_iter()
            .map(|l| PartitionLag { group: l.group, topic: l.topic, partition: l.partition, lag: l.lag })
            .collect(),
        under_replicated: app.replication.under_replicated(),
        series_limit: app.max_lag_series,
    };
    let body = app.metrics.render(sizes);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}
