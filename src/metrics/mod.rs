//! Prometheus metrics, served as OpenMetrics text on a port of their own (`--metrics-addr`), apart from the gRPC
//! port, so that a scraper needs no token and reaches nothing else.
//!
//! Counters and histograms are recorded where things happen; the gauges that describe state (queue depth, open
//! streams, database pool) are read at scrape time, so they are never stale. Names, all prefixed `control_tower_`:
//! - `tasks{status, operation}`: queued and running tasks.
//! - `dispatch_latency_seconds`: from a task becoming due (enqueued, or its `run_after`) to its lease being pushed.
//! - `lease_expiries_total`: leases taken back because their worker stopped heartbeating.
//! - `task_retries_total{reason}`: tasks sent back to the queue: `failure` (a retryable FailTask) or `lease_lost`.
//! - `worker_streams`: open PullTasks streams.
//! - `rpc_duration_seconds{method, code}`: from a request's arrival to its response headers (for a stream, to the
//!   moment it starts), by method and gRPC status code.
//! - `db_pool_connections{state}` (`idle`, `in_use`) and `db_pool_max_connections`.

mod exporter;
mod layer;

use std::sync::OnceLock;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

pub use exporter::spawn_exporter;
pub use layer::RpcMetricsLayer;

use crate::server::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub status: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub tasks: Family<TaskLabels, Gauge>,
    pub dispatch_latency: Histogram,
    pub lease_expiries: Counter,
    pub retries: Family<ReasonLabels, Counter>,
    pub worker_streams: Gauge,
    pub rpc_duration: Histograms<RpcLabels>,
    pub db_pool: Family<PoolLabels, Gauge>,
    pub db_pool_max: Gauge,
}

/// 100 µs to ~100 s: dispatch and RPC latencies span that range.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("control_tower");
        let tasks = Family::<TaskLabels, Gauge>::default();
        registry.register("tasks", "Queued and running tasks, by status and operation", tasks.clone());
        let dispatch_latency = latency_histogram();
        registry.register_with_unit(
            "dispatch_latency",
            "From a task becoming due to its lease being pushed to a worker",
            Unit::Seconds,
            dispatch_latency.clone(),
        );
        let lease_expiries = Counter::default();
        registry.register("lease_expiries", "Leases taken back after their deadline passed", lease_expiries.clone());
        let retries = Family::<ReasonLabels, Counter>::default();
        registry.register("task_retries", "Tasks sent back to the queue for another attempt", retries.clone());
        let worker_streams = Gauge::default();
        registry.register("worker_streams", "Open PullTasks streams", worker_streams.clone());
        let rpc_duration: Histograms<RpcLabels> = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "rpc_duration",
            "From a request's arrival to its response headers, by method and status code",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        let db_pool = Family::<PoolLabels, Gauge>::default();
        registry.register("db_pool_connections", "Database connections by state", db_pool.clone());
        let db_pool_max = Gauge::default();
        registry.register("db_pool_max_connections", "Connections the database pool may open", db_pool_max.clone());
        Self {
            registry,
            tasks,
            dispatch_latency,
            lease_expiries,
            retries,
            worker_streams,
            rpc_duration,
            db_pool,
            db_pool_max,
        }
    }
}

/// The process's metrics (one server per process in production; tests share them).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Reads the state gauges of this server, then encodes everything.
pub async fn render(state: &AppState) -> Result<String, String> {
    let metrics = global();
    let db = &state.db;
    // Only the live statuses, each counted through its own partial index (the queue's, the leases'): terminal tasks
    // grow without bound, and no one index holds both live statuses.
    let sql = "SELECT status, operation, COUNT(*) AS n FROM tasks WHERE status = 'queued' GROUP BY status, operation \
               UNION ALL \
               SELECT status, operation, COUNT(*) AS n FROM tasks WHERE status = 'running' GROUP BY status, operation";
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .map_err(|e| format!("could not count the tasks: {e}"))?;
    metrics.tasks.clear();
    for status in ["queued", "running"] {
        // Present even when zero, so a graph of the queue does not break off when it empties.
        metrics.tasks.get_or_create(&TaskLabels { status: status.into(), operation: "all".into() }).set(0);
    }
    for row in rows {
        let (status, operation, n): (String, String, i64) = (
            row.try_get("", "status").map_err(|e| e.to_string())?,
            row.try_get("", "operation").map_err(|e| e.to_string())?,
            row.try_get("", "n").map_err(|e| e.to_string())?,
        );
        metrics.tasks.get_or_create(&TaskLabels { status: status.clone(), operation }).set(n);
        metrics.tasks.get_or_create(&TaskLabels { status, operation: "all".into() }).inc_by(n);
    }
    metrics.worker_streams.set(state.dispatcher.stream_count() as i64);
    let (size, idle, max) = match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle(), pool.options().get_max_connections())
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle(), pool.options().get_max_connections())
        }
    };
    metrics.db_pool.get_or_create(&PoolLabels { state: "idle" }).set(idle as i64);
    metrics.db_pool.get_or_create(&PoolLabels { state: "in_use" }).set(i64::from(size) - idle as i64);
    metrics.db_pool_max.set(i64::from(max));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics.registry).map_err(|e| e.to_string())?;
    Ok(text)
}
