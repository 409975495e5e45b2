//! What the audit log and the work model cost per task: audit rows written, enqueue latency, and end-to-end
//! throughput through real gRPC workers, with and without `create_cwom`.
//!
//!     cargo bench --bench audit_cost                       # SQLite file in a temp dir
//!     BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench audit_cost
//!
//! BENCH_TASKS (default 2000) sets the tasks per run; each configuration runs 3 times and reports the median and
//! the spread.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use control_tower::{
    Server,
    clock::SystemClock,
    config::ServerConfig,
    pb::{self, task_service_client::TaskServiceClient},
    spec::Policy,
    worker::{self, EchoHandler, WorkerConfig},
};
use sea_orm::{ConnectionTrait, Database, Statement};
use tokio_util::sync::CancellationToken;

const RUNS: usize = 3;
const WORKERS: usize = 4;

struct Sample {
    enqueue_per_task: Duration,
    drain_tasks_per_s: f64,
    audit_rows_per_task: f64,
}

fn spec(i: usize) -> pb::TaskSpec {
    pb::TaskSpec {
        requested_by: Some(pb::Requester { kind: "agent".into(), id: "bench".into(), label: String::new() }),
        objective: format!("Benchmark task {i}"),
        operation: "analysis".into(),
        target: Some(pb::Target { repo: "acme/bench".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// A new database for one run: a SQLite file, or a PostgreSQL database (named, to be dropped afterwards).
async fn fresh_database(dir: &std::path::Path, run: usize) -> (String, Option<String>) {
    match admin_url() {
        None => (format!("sqlite://{}?mode=rwc", dir.join(format!("bench-{run}.db")).display()), None),
        Some(admin) => {
            let name = format!("ct_bench_{}", uuid::Uuid::new_v4().simple());
            let conn = Database::connect(&admin).await.expect("connect to BENCH_DATABASE_URL");
            conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            (format!("{base}/{name}"), Some(name))
        }
    }
}

fn admin_url() -> Option<String> {
    std::env::var("BENCH_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

async fn run_once(tasks: usize, create_cwom: bool, run: usize) -> Sample {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, postgres_db) = fresh_database(dir.path(), run).await;
    let mut config = ServerConfig::new(url, dir.path().join("traces"));
    config.policy = Policy::new(["acme/"]);
    let server = Server::build(config, Arc::new(SystemClock)).await.expect("server");
    let db = server.state().db.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let serving = tokio::spawn(server.run(listener, stop.clone().cancelled_owned()));
    let mut client = TaskServiceClient::connect(address.clone()).await.expect("connect");

    let started = Instant::now();
    for i in 0..tasks {
        let request = pb::EnqueueTaskRequest { spec: Some(spec(i)), create_cwom };
        client.enqueue_task(request).await.expect("enqueue");
    }
    let enqueue_per_task = started.elapsed() / tasks as u32;

    let workers_stop = CancellationToken::new();
    let started = Instant::now();
    let mut daemons = Vec::new();
    for w in 0..WORKERS {
        let config = WorkerConfig {
            server: address.clone(),
            worker_id: format!("bench-{w}"),
            concurrency: 8,
            prefetch: 0,
            operations: vec![],
            shutdown_grace: Duration::from_secs(5),
            token: None,
            tls: Default::default(),
        };
        daemons.push(tokio::spawn(worker::run(config, Arc::new(EchoHandler), workers_stop.clone())));
    }
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    while count("SELECT COUNT(*) FROM tasks WHERE status = 'completed'").await < tasks as i64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = started.elapsed();
    workers_stop.cancel();
    for daemon in daemons {
        let _ = daemon.await;
    }
    let audit_rows = count("SELECT COUNT(*) FROM audit_log").await;
    stop.cancel();
    let _ = serving.await;
    if let (Some(admin), Some(name)) = (admin_url(), postgres_db) {
        let conn = Database::connect(&admin).await.expect("connect to BENCH_DATABASE_URL");
        let _ = conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    }
    Sample {
        enqueue_per_task,
        drain_tasks_per_s: tasks as f64 / drain.as_secs_f64(),
        audit_rows_per_task: audit_rows as f64 / tasks as f64,
    }
}

fn median_and_spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let tasks: usize = std::env::var("BENCH_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let backend = if std::env::var("BENCH_DATABASE_URL").is_ok() { "postgres" } else { "sqlite" };
    println!("audit_cost: backend={backend} tasks={tasks} workers={WORKERS}x8 runs={RUNS}");
    println!(
        "{:<12} {:>12} {:>22} {:>26}",
        "create_cwom", "audit/task", "enqueue ms/task (min-max)", "drain tasks/s (min-max)"
    );
    for create_cwom in [false, true] {
        let mut samples = Vec::new();
        for run in 0..RUNS {
            samples.push(run_once(tasks, create_cwom, run).await);
        }
        let enqueue = median_and_spread(samples.iter().map(|s| s.enqueue_per_task.as_secs_f64() * 1e3).collect());
        let drain = median_and_spread(samples.iter().map(|s| s.drain_tasks_per_s).collect());
        println!(
            "{:<12} {:>12.1} {:>10.3} ({:.3}-{:.3}) {:>12.0} ({:.0}-{:.0})",
            create_cwom, samples[0].audit_rows_per_task, enqueue.0, enqueue.1, enqueue.2, drain.0, drain.1, drain.2
        );
    }
}
