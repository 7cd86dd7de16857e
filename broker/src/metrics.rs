//! Prometheus metrics (served on the metrics port as text exposition format).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    /// Queue groups' counts (SPEC §14), by group.
    pub queue: Arc<QueueMetrics>,
    requests: Family<Labels, Counter>,
    pub produce_bytes: Counter,
    pub produce_records: Counter,
    /// Repeats of idempotent requests answered without storing anything (SPEC §12).
    pub produce_duplicates: Counter,
    /// Produce requests this broker passed on to the partition's leader (a client that knows
    /// the leaders sends there directly).
    pub produce_forwarded: Counter,
    pub consume_bytes: Counter,
    pub consume_records: Counter,
    produce_latency: Histogram,
    fsync_latency: Histogram,
    consumers: Gauge,
    groups: Gauge,
    consumers_tracked: Gauge,
    cursor_groups: Gauge,
    replicated_partitions: Gauge,
    disk_free: Gauge,
    disk_reserve: Gauge,
    offset_groups: Gauge,
    /// Connections refused at the client ports' connection limit.
    pub connections_refused: Counter,
    /// Client-port requests refused by access control (SPEC §13), by reason.
    auth_refused: Family<Labels, Counter>,
    connections_open: Gauge,
    connections_limit: Gauge,
    memory_reserved: Family<Labels, Gauge>,
    memory_budget: Family<Labels, Gauge>,
    resident: Gauge,
    resident_peak: Gauge,
    group_lag: Family<Labels, Gauge>,
    group_lag_total: Family<Labels, Gauge>,
    group_lag_omitted: Gauge,
    raft_term: Gauge,
    raft_has_leader: Gauge,
    raft_is_leader: Gauge,
    partitions_led: Gauge,
    under_replicated: Family<Labels, Gauge>,
    under_replicated_count: Gauge,
    /// One render at a time: the lag families are cleared and filled again on each.
    rendering: Mutex<()>,
}

/// One memory budget's size and what is reserved from it.
pub struct BudgetUse {
    pub class: &'static str,
    pub size: usize,
    pub reserved: usize,
}

/// The lag of one group in one partition this broker leads.
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub lag: u64,
}

/// The sizes [`Metrics::render`] reports as gauges (plain numbers, so metrics depend on no
/// other module).
#[derive(Default)]
pub struct StateSizes {
    /// Consumers registered (replicated state).
    pub consumers: usize,
    /// Groups with at least one member.
    pub groups: usize,
    /// Consumers whose last request this broker remembers.
    pub consumers_tracked: usize,
    /// Groups this broker keeps read cursors for.
    pub cursor_groups: usize,
    /// Topic partitions this broker leads with replication state (replicators, tail).
    pub replicated_partitions: usize,
    /// Connections open on the client ports, and their limit.
    pub connections_open: usize,
    pub connections_limit: usize,
    /// The memory budgets.
    pub memory: Vec<BudgetUse>,
    /// Groups with committed offsets, members or not (replicated state).
    pub offset_groups: usize,
    /// Free bytes on the data disk (at most a second old).
    pub disk_free_bytes: u64,
    /// Free space below which produces are refused.
    pub disk_reserve_bytes: u64,
    /// This broker's Raft term, and whether it knows a leader and is the leader.
    pub raft_term: u64,
    pub raft_has_leader: bool,
    pub raft_is_leader: bool,
    /// Partitions (of every generation) this broker leads and serves.
    pub partitions_led: usize,
    /// The groups' lag in the partitions this broker leads, sorted by group, topic and
    /// partition: the series kept under the limit are the first.
    pub group_lag: Vec<PartitionLag>,
    /// Topic partitions led here with a follower that does not keep up, sorted.
    pub under_replicated: Vec<(String, u32)>,
    /// Most series of each per-partition kind (lag, under-replication) this broker exports
    /// (`RUNNEL_MAX_LAG_SERIES`).
    pub series_limit: usize,
}

/// Queue groups' series, labelled by group (at most `MAX_QUEUE_GROUPS` of them).
#[derive(Default)]
pub struct QueueMetrics {
    leased: Family<Labels, Counter>,
    redelivered: Family<Labels, Counter>,
    acked: Family<Labels, Counter>,
    dead_lettered: Family<Labels, Counter>,
    pending: Family<Labels, Gauge>,
    ack_pending: Family<Labels, Gauge>,
}

impl QueueMetrics {
    fn register(&self, registry: &mut Registry) {
        let families = [
            ("queue_leased", "Records leased by queue groups (deliveries)", &self.leased),
            ("queue_redelivered", "Leases of records delivered before", &self.redelivered),
            ("queue_acked", "Records acknowledged in queue groups", &self.acked),
            (
                "queue_dead_lettered",
                "Records over maxDeliver, appended to the dead-letter topic (or dropped without one) and acknowledged",
                &self.dead_lettered,
            ),
        ];
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "queue_pending",
            "Records of the partitions this broker leads not leased yet, per queue group",
            self.pending.clone(),
        );
        registry.register(
            "queue_ack_pending",
            "Records leased and not acknowledged on the partitions this broker leads, per queue group",
            self.ack_pending.clone(),
        );
    }

    fn labels(group: &str) -> Labels {
        vec![("group", group.to_string())]
    }

    pub fn leased(&self, group: &str) -> Counter {
        self.leased.get_or_create(&Self::labels(group)).clone()
    }

    pub fn redelivered(&self, group: &str) -> Counter {
        self.redelivered.get_or_create(&Self::labels(group)).clone()
    }

    pub fn acked(&self, group: &str) -> Counter {
        self.acked.get_or_create(&Self::labels(group)).clone()
    }

    pub fn dead_lettered(&self, group: &str) -> Counter {
        self.dead_lettered.get_or_create(&Self::labels(group)).clone()
    }

    pub fn set_counts(&self, group: &str, pending: u64, ack_pending: u64) {
        let labels = Self::labels(group);
        self.pending.get_or_create(&labels).set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.ack_pending.get_or_create(&labels).set(i64::try_from(ack_pending).unwrap_or(i64::MAX));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("runnel");
        let queue = Arc::new(QueueMetrics::default());
        queue.register(&mut registry);
        let requests = Family::<Labels, Counter>::default();
        registry.register("http_requests", "HTTP requests by endpoint and status code", requests.clone());
        let produce_bytes = Counter::default();
        registry.register("produce_bytes", "Record bytes acknowledged to producers", produce_bytes.clone());
        let produce_records = Counter::default();
        registry.register("produce_records", "Records acknowledged to producers", produce_records.clone());
        let produce_duplicates = Counter::default();
        registry.register(
            "produce_duplicates",
            "Repeats of idempotent produce requests answered with their original offsets, storing nothing",
            produce_duplicates.clone(),
        );
        let produce_forwarded = Counter::default();
        registry.register(
            "produce_forwarded",
            "Produce requests passed on to the broker leading their partition",
            produce_forwarded.clone(),
        );
        let consume_bytes = Counter::default();
        registry.register("consume_bytes", "Record bytes delivered to consumers", consume_bytes.clone());
        let consume_records = Counter::default();
        registry.register("consume_records", "Records delivered to consumers", consume_records.clone());
        let produce_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "produce_latency_seconds",
            "Time from receiving a produce request to its acknowledgement",
            produce_latency.clone(),
        );
        let fsync_latency = Histogram::new(exponential_buckets(0.00005, 2.0, 18));
        registry.register("fsync_latency_seconds", "Duration of each segment fsync", fsync_latency.clone());
        let consumers = Gauge::default();
        registry.register("consumers", "Registered consumers", consumers.clone());
        let groups = Gauge::default();
        registry.register("consumer_groups", "Consumer groups with at least one member", groups.clone());
        let consumers_tracked = Gauge::default();
        registry.register(
            "consumers_tracked",
            "Consumers whose last request this broker remembers (for the inactivity timeout)",
            consumers_tracked.clone(),
        );
        let cursor_groups = Gauge::default();
        registry.register("cursor_groups", "Consumer groups with read cursors on this broker", cursor_groups.clone());
        let replicated_partitions = Gauge::default();
        registry.register(
            "replicated_partitions",
            "Topic partitions this broker leads and replicates to followers (one replicator task per follower)",
            replicated_partitions.clone(),
        );
        let auth_refused = Family::<Labels, Counter>::default();
        registry.register(
            "auth_refused",
            "Client-port requests refused by access control: 401 by the token's fault (missing, expired, \
             bad_signature, revoked, malformed, not_yet_valid) or 403 (forbidden: outside its scopes)",
            auth_refused.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections refused with a 503 because the client ports had RUNNEL_MAX_CONNECTIONS open",
            connections_refused.clone(),
        );
        let connections_open = Gauge::default();
        registry.register("connections_open", "Connections open on the client ports", connections_open.clone());
        let connections_limit = Gauge::default();
        registry.register("connections_limit", "RUNNEL_MAX_CONNECTIONS", connections_limit.clone());
        let memory_reserved = Family::<Labels, Gauge>::default();
        registry.register(
            "memory_reserved_bytes",
            "Bytes reserved from each memory budget (class)",
            memory_reserved.clone(),
        );
        let memory_budget = Family::<Labels, Gauge>::default();
        registry.register(
            "memory_budget_bytes",
            "Size of each memory budget (class), cut from RUNNEL_MEMORY_LIMIT",
            memory_budget.clone(),
        );
        let offset_groups = Gauge::default();
        registry.register(
            "offset_groups",
            "Consumer groups with committed offsets, kept until RUNNEL_GROUP_RETENTION without a member or commit",
            offset_groups.clone(),
        );
        let resident = Gauge::default();
        registry.register("process_resident_bytes", "Resident memory of the broker process (VmRSS)", resident.clone());
        let resident_peak = Gauge::default();
        registry.register(
            "process_resident_peak_bytes",
            "Peak resident memory of the broker process since it started (VmHWM)",
            resident_peak.clone(),
        );
        let disk_free = Gauge::default();
        registry.register("disk_free_bytes", "Free bytes on the data disk's filesystem", disk_free.clone());
        let disk_reserve = Gauge::default();
        registry.register(
            "disk_reserve_bytes",
            "Free space kept for Raft and metadata: below it, produces get 507 (RUNNEL_DISK_RESERVE)",
            disk_reserve.clone(),
        );
        let group_lag = Family::<Labels, Gauge>::default();
        registry.register(
            "group_lag_records",
            "Records a group has yet to read in a partition this broker leads (end minus committed offset)",
            group_lag.clone(),
        );
        let group_lag_total = Family::<Labels, Gauge>::default();
        registry.register(
            "group_lag_records_total",
            "A group's lag summed over the partitions this broker leads (sum over the brokers for the group's)",
            group_lag_total.clone(),
        );
        let group_lag_omitted = Gauge::default();
        registry.register(
            "group_lag_series_omitted",
            "Group partitions led here whose runnel_group_lag_records series RUNNEL_MAX_LAG_SERIES left out \
             (they still count in runnel_group_lag_records_total)",
            group_lag_omitted.clone(),
        );
        let raft_term = Gauge::default();
        registry.register("raft_term", "The Raft term this broker is in", raft_term.clone());
        let raft_has_leader = Gauge::default();
        registry.register(
            "raft_has_leader",
            "1 while this broker knows a Raft leader, 0 during an election or when cut off from a majority",
            raft_has_leader.clone(),
        );
        let raft_is_leader = Gauge::default();
        registry.register(
            "raft_is_leader",
            "1 on the Raft leader (the controller that moves partitions and orders resizes), else 0",
            raft_is_leader.clone(),
        );
        let partitions_led = Gauge::default();
        registry.register(
            "partitions_led",
            "Partitions this broker leads and serves, each across every topic (of every generation while a resize runs)",
            partitions_led.clone(),
        );
        let under_replicated = Family::<Labels, Gauge>::default();
        registry.register(
            "partition_under_replicated",
            "1 for each topic partition led here with a follower that has not caught up for 10 s (down, cut off \
             or slower than the writes); only such partitions have a series, at most RUNNEL_MAX_LAG_SERIES",
            under_replicated.clone(),
        );
        let under_replicated_count = Gauge::default();
        registry.register(
            "partitions_under_replicated",
            "Topic partitions led here that are under-replicated (all of them, series or not)",
            under_replicated_count.clone(),
        );
        Metrics {
            raft_term,
            raft_has_leader,
            raft_is_leader,
            partitions_led,
            under_replicated,
            under_replicated_count,
            group_lag,
            group_lag_total,
            group_lag_omitted,
            rendering: Mutex::new(()),
            registry,
            queue,
            resident,
            resident_peak,
            connections_refused,
            auth_refused,
            connections_open,
            connections_limit,
            memory_reserved,
            memory_budget,
            requests,
            produce_bytes,
            produce_records,
            produce_duplicates,
            produce_forwarded,
            consume_bytes,
            consume_records,
            produce_latency,
            fsync_latency,
            consumers,
            groups,
            consumers_tracked,
            cursor_groups,
            replicated_partitions,
            offset_groups,
            disk_free,
            disk_reserve,
        }
    }

    pub fn request(&self, endpoint: &'static str, status: u16) {
        self.requests.get_or_create(&vec![("endpoint", endpoint.to_string()), ("status", status.to_string())]).inc();
    }

    pub fn auth_refused(&self, reason: &'static str) {
        self.auth_refused.get_or_create(&vec![("reason", reason.to_string())]).inc();
    }

    pub fn produce_latency(&self, d: Duration) {
        self.produce_latency.observe(d.as_secs_f64());
    }

    pub fn fsync(&self, d: Duration) {
        self.fsync_latency.observe(d.as_secs_f64());
    }

    /// Text exposition, with the gauges set to `sizes` first.
    pub fn render(&self, sizes: StateSizes) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        self.set_group_lag(&sizes.group_lag, sizes.series_limit);
        self.under_replicated.clear();
        for (topic, partition) in sizes.under_replicated.iter().take(sizes.series_limit) {
            let labels = vec![("topic", topic.clone()), ("partition", partition.to_string())];
            self.under_replicated.get_or_create(&labels).set(1);
        }
        self.under_replicated_count.set(sizes.under_replicated.len() as i64);
        self.raft_term.set(i64::try_from(sizes.raft_term).unwrap_or(i64::MAX));
        self.raft_has_leader.set(i64::from(sizes.raft_has_leader));
        self.raft_is_leader.set(i64::from(sizes.raft_is_leader));
        self.partitions_led.set(sizes.partitions_led as i64);
        self.consumers.set(sizes.consumers as i64);
        self.groups.set(sizes.groups as i64);
        self.consumers_tracked.set(sizes.consumers_tracked as i64);
        self.cursor_groups.set(sizes.cursor_groups as i64);
        self.replicated_partitions.set(sizes.replicated_partitions as i64);
        let (resident, peak) = resident_memory();
        self.resident.set(resident as i64);
        self.resident_peak.set(peak as i64);
        self.connections_open.set(sizes.connections_open as i64);
        self.connections_limit.set(sizes.connections_limit as i64);
        for budget in &sizes.memory {
            let labels = vec![("class", budget.class.to_string())];
            self.memory_reserved.get_or_create(&labels).set(budget.reserved as i64);
            self.memory_budget.get_or_create(&labels).set(budget.size as i64);
        }
        self.offset_groups.set(sizes.offset_groups as i64);
        self.disk_free.set(i64::try_from(sizes.disk_free_bytes).unwrap_or(i64::MAX));
        self.disk_reserve.set(i64::try_from(sizes.disk_reserve_bytes).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Replaces the lag series with `lag`'s, so a partition no longer led here, a group gone
    /// and a topic it stopped reading leave no series behind. Beyond the limit only the
    /// group totals have them.
    fn set_group_lag(&self, lag: &[PartitionLag], series_limit: usize) {
        self.group_lag.clear();
        self.group_lag_total.clear();
        let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
        for (i, p) in lag.iter().enumerate() {
            *totals.entry(&p.group).or_default() += p.lag;
            if i < series_limit {
                let labels = vec![
                    ("group", p.group.clone()),
                    ("topic", p.topic.clone()),
                    ("partition", p.partition.to_string()),
                ];
                self.group_lag.get_or_create(&labels).set(i64::try_from(p.lag).unwrap_or(i64::MAX));
            }
        }
        for (group, total) in totals {
            let labels = vec![("group", group.to_string())];
            self.group_lag_total.get_or_create(&labels).set(i64::try_from(total).unwrap_or(i64::MAX));
        }
        self.group_lag_omitted.set(lag.len().saturating_sub(series_limit) as i64);
    }
}

/// This process' resident memory and its peak, in bytes (0 where /proc does not say).
fn resident_memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let m = Metrics::new();
        m.request("produce", 200);
        m.produce_records.inc_by(3);
        m.fsync(Duration::from_millis(2));
        let memory = vec![BudgetUse { class: "produce", size: 100, reserved: 40 }];
        let sizes = StateSizes {
            consumers: 2,
            groups: 1,
            consumers_tracked: 2,
            cursor_groups: 1,
            replicated_partitions: 0,
            connections_open: 3,
            connections_limit: 10,
            memory,
            offset_groups: 3,
            disk_free_bytes: 5 << 30,
            disk_reserve_bytes: 256 << 20,
            raft_term: 4,
            raft_has_leader: true,
            partitions_led: 5,
            under_replicated: vec![("t".into(), 2)],
            series_limit: 10,
            ..StateSizes::default()
        };
        let text = m.render(sizes);
        assert!(text.contains("runnel_memory_reserved_bytes{class=\"produce\"} 40"), "{text}");
        assert!(text.contains("runnel_http_requests_total{endpoint=\"produce\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("runnel_produce_records_total 3"));
        assert!(text.contains("runnel_consumers 2"));
        let (resident, peak) = resident_memory();
        assert!(resident > 0 && peak >= resident, "{resident} {peak}");
        assert!(text.contains("runnel_offset_groups 3"));
        assert!(text.contains("runnel_disk_free_bytes 5368709120"), "{text}");
        assert!(text.contains("runnel_disk_reserve_bytes 268435456"));
        assert!(text.contains("runnel_fsync_latency_seconds_count 1"));
        assert!(text.contains("runnel_raft_term 4") && text.contains("runnel_raft_has_leader 1"), "{text}");
        assert!(text.contains("runnel_raft_is_leader 0") && text.contains("runnel_partitions_led 5"), "{text}");
        assert!(text.contains(r#"runnel_partition_under_replicated{topic="t",partition="2"} 1"#), "{text}");
        assert!(text.contains("runnel_partitions_under_replicated 1"), "{text}");
    }

    fn sizes_with(lag: Vec<(&str, &str, u32, u64)>, series_limit: usize) -> StateSizes {
        let partitions = lag
            .into_iter()
            .map(|(group, topic, partition, lag)| PartitionLag {
                group: group.into(),
                topic: topic.into(),
                partition,
                lag,
            })
            .collect();
        StateSizes { group_lag: partitions, series_limit, ..StateSizes::default() }
    }

    #[test]
    fn lag_series_follow_what_is_led_now_and_stop_at_the_limit() {
        let m = Metrics::new();
        let text = m.render(sizes_with(vec![("a", "t", 0, 5), ("a", "t", 3, 7), ("b", "u", 1, 2)], 10));
        assert!(text.contains(r#"runnel_group_lag_records{group="a",topic="t",partition="3"} 7"#), "{text}");
        assert!(text.contains(r#"runnel_group_lag_records_total{group="a"} 12"#), "{text}");
        assert!(text.contains(r#"runnel_group_lag_records_total{group="b"} 2"#), "{text}");
        assert!(text.contains("runnel_group_lag_series_omitted 0"), "{text}");

        // Partition 3 moved away and group b is gone: their series go with them.
        let text = m.render(sizes_with(vec![("a", "t", 0, 6)], 10));
        assert!(!text.contains(r#"partition="3""#) && !text.contains(r#"group="b""#), "{text}");
        assert!(text.contains(r#"runnel_group_lag_records_total{group="a"} 6"#), "{text}");

        // Past the limit, only the first series are kept; the totals still count every partition.
        let text = m.render(sizes_with(vec![("a", "t", 0, 1), ("a", "t", 1, 2), ("a", "t", 2, 3)], 2));
        assert_eq!(text.matches("runnel_group_lag_records{").count(), 2, "{text}");
        assert!(!text.contains(r#"partition="2""#), "{text}");
        assert!(text.contains(r#"runnel_group_lag_records_total{group="a"} 6"#), "{text}");
        assert!(text.contains("runnel_group_lag_series_omitted 1"), "{text}");
    }
}
