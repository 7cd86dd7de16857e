use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::{with_fallbacks, SharedState};
use crate::metrics::{BudgetUse, GroupLag, PartitionLag, StateSizes};

pub fn router(app: SharedState) -> Router {
    with_fallbacks(Router::new().route("/metrics", get(metrics))).with_state(app)
}

async fn metrics(State(app): State<SharedState>) -> impl IntoResponse {
    let consumers = app.consumers.counts();
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
        group_lag: GroupLag {
            partitions: app
                .groups
                .led_lag()
                .into_iter()
                .map(|l| PartitionLag { group: l.group, topic: l.topic, partition: l.partition, lag: l.lag })
                .collect(),
            series_limit: app.max_lag_series,
        },
    };
    let body = app.metrics.render(sizes);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}
