//! Several servers on one PostgreSQL database: a worker connected to any of them gets work enqueued through any
//! other, and settlements and cancellations reach the stream holding the lease wherever it lives. The periodic
//! sweep is turned off here, so only the servers' signals to each other can deliver. (SQLite serves one server:
//! these tests pass trivially there.)

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use control_tower::{
    pb::{self, pull_tasks_response::Event},
    store::tasks::Backoff,
    worker::{self, BoxFuture, Handler, Outcome, TaskContext, WorkerConfig},
};
use tokio_util::sync::CancellationToken;

fn without_sweep(config: &mut control_tower::config::ServerConfig) {
    config.dispatch.sweep_interval = Duration::from_secs(3600);
}

/// Two servers on one database, both hearing each other; `None` on SQLite.
async fn replicas() -> Option<(TestServer, TestServer)> {
    postgres_admin_url()?;
    let a = TestServer::configured(without_sweep).await;
    let b = TestServer::replica_of(&a, without_sweep).await;
    for server in [&a, &b] {
        let dispatcher = server.state.dispatcher.clone();
        eventually("the servers to listen to each other", move || dispatcher.listening()).await;
    }
    Some((a, b))
}

#[tokio::test]
async fn work_settlements_and_cancellations_cross_servers() {
    let Some((a, b)) = replicas().await else { return };
    let mut workers_on_a = a.workers().await;
    let mut workers_on_b = b.workers().await;
    let mut tasks_on_b = b.tasks().await;

    // A worker on A, work enqueued through B.
    let mut stream = pull(&mut workers_on_a, "on-a", 1).await;
    let first = enqueue(&mut tasks_on_b, spec("Enqueued on B, run on A")).await;
    let second = enqueue(&mut tasks_on_b, spec("Second, after a slot frees up")).await;
    let lease = next_assignment(&mut stream).await;
    assert_eq!(lease.task.as_ref().unwrap().id, first.id);

    // Completed through B: A's stream frees its slot and takes the next task.
    workers_on_b.complete_task(pb::CompleteTaskRequest { lease_id: lease.lease_id, result: None }).await.unwrap();
    let next = next_assignment(&mut stream).await;
    assert_eq!(next.task.as_ref().unwrap().id, second.id);

    // Cancelled through B: the worker on A is told over its stream.
    tasks_on_b.cancel_task(pb::CancelTaskRequest { id: second.id.clone(), reason: "stop".into() }).await.unwrap();
    let cancelled = loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.unwrap().unwrap().unwrap();
        if let Some(Event::Cancelled(cancelled)) = message.event {
            break cancelled;
        }
    };
    assert_eq!((cancelled.lease_id, cancelled.task_id), (next.lease_id, second.id));
    b.stop().await;
    a.stop().await;
}

/// Fails a task's first attempt (retryably) when its inputs say `flaky`, completes everything else.
struct FlakyOnce;

impl Handler for FlakyOnce {
    fn handle(&self, task: pb::Task, ctx: TaskContext) -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            let inputs = control_tower::json::struct_to_json(task.spec.unwrap_or_default().inputs.unwrap_or_default());
            ctx.log.line("working");
            if inputs["flaky"] == true && task.attempt == 1 {
                return Outcome::Failed { error: "transient trouble".into(), retryable: true };
            }
            Outcome::Completed(serde_json::json!({ "attempt": task.attempt }))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_and_eight_workers_finish_every_task_exactly_once() {
    let tasks_total: usize = std::env::var("REPLICA_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    if postgres_admin_url().is_none() {
        return;
    }
    let tune = |c: &mut control_tower::config::ServerConfig| {
        c.dispatch.concurrency_limit = 2;
        c.dispatch.backoff = Backoff { base: 10_000, max: 100_000 };
    };
    let a = TestServer::configured(tune).await;
    let b = TestServer::replica_of(&a, tune).await;

    let stop = CancellationToken::new();
    let mut daemons = Vec::new();
    for w in 0..8 {
        let server = if w % 2 == 0 { &a } else { &b };
        let config = WorkerConfig {
            server: server.url(),
            worker_id: format!("fleet-{w}"),
            concurrency: 8,
            prefetch: 0,
            operations: vec![],
            shutdown_grace: Duration::from_secs(5),
            token: None,
            tls: Default::default(),
        };
        daemons.push(tokio::spawn(worker::run(config, Arc::new(FlakyOnce), stop.clone())));
    }
    let (mut to_a, mut to_b) = (a.tasks().await, b.tasks().await);
    for batch in 0..tasks_total.div_ceil(1000) {
        let requests = (batch * 1000..((batch + 1) * 1000).min(tasks_total))
            .map(|i| {
                let mut s = spec(&format!("Fleet task {i}"));
                s.priority = (i % 4) as i32;
                if i % 3 == 0 {
                    s.concurrency_key = format!("key-{}", i % 10);
                }
                s.inputs = Some(json_struct(serde_json::json!({ "flaky": i % 7 == 0 })));
                request(s)
            })
            .collect();
        let client = if batch % 2 == 0 { &mut to_a } else { &mut to_b };
        client.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap();
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    while a.count("SELECT COUNT(*) FROM tasks WHERE status IN ('completed', 'failed', 'cancelled')").await
        < tasks_total as i64
    {
        assert!(tokio::time::Instant::now() < deadline, "not every task reached an end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    for daemon in daemons {
        daemon.await.unwrap().unwrap();
    }

    let total = tasks_total as i64;
    assert_eq!(a.count("SELECT COUNT(*) FROM tasks WHERE status = 'completed'").await, total);
    let ends = "SELECT COUNT(*) FROM (SELECT entity_id FROM audit_log \
                WHERE entity_kind = 'Task' AND (note LIKE '%-> completed%' OR note LIKE '%-> failed%') \
                GROUP BY entity_id HAVING COUNT(*) = 1) once";
    assert_eq!(a.count(ends).await, total, "exactly one terminal state per task");
    let flaky = (0..tasks_total).filter(|i| i % 7 == 0).count() as i64;
    // Leases taken back (a lease that expired, a stream that closed) would explain a second attempt of a task
    // that is not flaky: the message names them.
    let expired = a.count("SELECT COUNT(*) FROM audit_log WHERE note LIKE '%lease expired%'").await;
    let stream_closed = a.count("SELECT COUNT(*) FROM audit_log WHERE note LIKE '%stream closed%'").await;
    assert_eq!(
        a.count("SELECT COUNT(*) FROM tasks WHERE attempt = 2").await,
        flaky,
        "flaky tasks retried once; leases taken back: {expired} expired, {stream_closed} of closed streams"
    );
    let used: i64 = a.count("SELECT COUNT(DISTINCT worker_id) FROM tasks").await;
    assert!(used > 4, "work was spread over the fleet, got {used} workers");
    for (key, peak) in peak_running_per_key(&a.state.db).await {
        assert!(peak <= 2, "{key} ran {peak} at once");
    }
    println!("{tasks_total} tasks over 2 replicas and 8 workers: every task ended exactly once");
    b.stop().await;
    a.stop().await;
}
