//! The worker's local queue (`prefetch`): tasks leased beyond the concurrency wait in the worker for a free slot.
//! They run within the concurrency and in the order they arrived, their leases are kept alive while they wait,
//! and a withdrawn one never starts.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use control_tower::{
    pb,
    worker::{self, BoxFuture, Handler, Outcome, TaskContext, WorkerConfig},
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Runs each task only when the test lets it through, and records which tasks started and how many ran at once.
struct Gate {
    open: Arc<Semaphore>,
    started: Arc<Mutex<Vec<String>>>,
    running: Arc<Mutex<(usize, usize)>>,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self { open: Arc::new(Semaphore::new(0)), started: Arc::default(), running: Arc::default() })
    }

    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }

    fn most_at_once(&self) -> usize {
        self.running.lock().unwrap().1
    }
}

impl Handler for Gate {
    fn handle(&self, task: pb::Task, _ctx: TaskContext) -> BoxFuture<'static, Outcome> {
        let (open, running) = (self.open.clone(), self.running.clone());
        self.started.lock().unwrap().push(task.spec.unwrap_or_default().objective);
        {
            let mut running = running.lock().unwrap();
            running.0 += 1;
            running.1 = running.1.max(running.0);
        }
        Box::pin(async move {
            open.acquire().await.unwrap().forget();
            running.lock().unwrap().0 -= 1;
            Outcome::Completed(serde_json::json!({}))
        })
    }
}

fn config(server: &TestServer, concurrency: usize, prefetch: usize) -> WorkerConfig {
    WorkerConfig {
        server: server.url(),
        worker_id: "prefetcher".into(),
        concurrency,
        prefetch,
        operations: vec![],
        shutdown_grace: Duration::from_secs(5),
        token: None,
        tls: Default::default(),
    }
}

async fn count(server: &TestServer, status: &str) -> i64 {
    server.count(&format!("SELECT COUNT(*) FROM tasks WHERE status = '{status}'")).await
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Enqueues tasks named `task 0`, `task 1`, ... one after the other, so that they are claimed in that order.
async fn enqueue_named(server: &TestServer, n: usize) -> Vec<pb::Task> {
    let mut tasks = server.tasks().await;
    let mut enqueued = Vec::new();
    for i in 0..n {
        enqueued.push(enqueue(&mut tasks, spec(&format!("task {i}"))).await);
    }
    enqueued
}

#[tokio::test]
async fn prefetched_tasks_are_leased_but_run_within_the_concurrency_in_order() {
    let server = TestServer::start().await;
    enqueue_named(&server, 6).await;
    let gate = Gate::new();
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(worker::run(config(&server, 2, 3), gate.clone(), stop.clone()));

    // Two run and three wait in the worker, all five leased; the sixth stays queued.
    wait_until("five tasks are leased", async || count(&server, "running").await == 5).await;
    wait_until("two handlers run", async || gate.started().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gate.started().len(), 2, "a prefetched task started without a free slot");
    assert_eq!(count(&server, "queued").await, 1);

    // Each finished handler hands its slot to the next task already here.
    for done in 1..=6 {
        gate.open.add_permits(1);
        wait_until("the next task completes", async || count(&server, "completed").await == done).await;
    }
    assert_eq!(gate.most_at_once(), 2, "handlers ran beyond the concurrency");
    let order: Vec<String> = (0..6).map(|i| format!("task {i}")).collect();
    assert_eq!(gate.started(), order, "tasks started out of their dispatch order");

    stop.cancel();
    daemon.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_waiting_task_keeps_its_lease_past_the_lease_timeout() {
    let server = TestServer::configured(|c| c.dispatch.lease_timeout = Duration::from_millis(600)).await;
    let enqueued = enqueue_named(&server, 2).await;
    let gate = Gate::new();
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(worker::run(config(&server, 1, 1), gate.clone(), stop.clone()));

    wait_until("both tasks are leased", async || count(&server, "running").await == 2).await;
    // Four lease timeouts with the second task waiting behind the first: only heartbeats keep its lease.
    tokio::time::sleep(Duration::from_millis(2_400)).await;
    assert_eq!(gate.started(), ["task 0"]);
    gate.open.add_permits(2);
    wait_until("both complete", async || count(&server, "completed").await == 2).await;

    let mut tasks = server.tasks().await;
    for task in &enqueued {
        let task = get(&mut tasks, &task.id).await;
        assert_eq!(task.attempt, 1, "{} lost its lease while it waited", task.spec.unwrap_or_default().objective);
    }
    stop.cancel();
    daemon.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_task_waiting_for_a_slot_never_starts() {
    let server = TestServer::start().await;
    let enqueued = enqueue_named(&server, 3).await;
    let gate = Gate::new();
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(worker::run(config(&server, 1, 2), gate.clone(), stop.clone()));

    wait_until("three tasks are leased", async || count(&server, "running").await == 3).await;
    let mut tasks = server.tasks().await;
    let cancel = pb::CancelTaskRequest { id: enqueued[1].id.clone(), reason: "no longer needed".into() };
    tasks.cancel_task(cancel).await.unwrap();
    wait_until("the task is cancelled", async || count(&server, "cancelled").await == 1).await;

    gate.open.add_permits(2);
    wait_until("the other two complete", async || count(&server, "completed").await == 2).await;
    assert_eq!(gate.started(), ["task 0", "task 2"]);

    stop.cancel();
    daemon.await.unwrap().unwrap();
    server.stop().await;
}
