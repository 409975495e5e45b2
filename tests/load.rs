//! Many workers, many tasks: 8 concurrent workers (the worker daemon, each over its own connection) drain 2,000
//! tasks, and every task is completed exactly once.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::*;
use control_tower::{
    pb,
    worker::{self, BoxFuture, Handler, Outcome, TaskContext, WorkerConfig},
};
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 8;
const TASKS: usize = 2_000;

/// Records which worker ran which task, how many times.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<HashMap<String, Vec<String>>>>);

impl Handler for Recorder {
    fn handle(&self, task: pb::Task, ctx: TaskContext) -> BoxFuture<'static, Outcome> {
        if let Ok(mut runs) = self.0.lock() {
            runs.entry(task.id.clone()).or_default().push(ctx.worker_id.clone());
        }
        Box::pin(async move {
            ctx.log.line(format!("ran {}", task.id));
            Outcome::Completed(serde_json::json!({ "task": task.id }))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_complete_two_thousand_tasks_exactly_once() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let recorder = Recorder::default();
    let stop = CancellationToken::new();
    let mut daemons = Vec::new();
    for i in 0..WORKERS {
        let config = WorkerConfig {
            server: server.url(),
            worker_id: format!("load-{i}"),
            concurrency: 4,
            prefetch: 0,
            operations: vec![],
            shutdown_grace: Duration::from_secs(5),
            token: None,
            tls: Default::default(),
        };
        daemons.push(tokio::spawn(worker::run(config, Arc::new(recorder.clone()), stop.clone())));
    }

    let started = Instant::now();
    let mut ids = Vec::with_capacity(TASKS);
    for batch in 0..TASKS / 1000 {
        let requests = (0..1000).map(|i| request(spec(&format!("Load task {batch}-{i}")))).collect();
        let results = tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap().into_inner().results;
        for result in results {
            let Some(pb::enqueue_task_result::Outcome::Enqueued(e)) = result.outcome else { panic!("{result:?}") };
            ids.push(e.task.unwrap().id);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while server.count("SELECT COUNT(*) FROM tasks WHERE status = 'completed'").await < TASKS as i64 {
        assert!(Instant::now() < deadline, "not all tasks completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    for daemon in daemons {
        daemon.await.unwrap().unwrap();
    }
    println!(
        "{TASKS} tasks through {WORKERS} workers in {elapsed:?} ({:.0} tasks/s)",
        TASKS as f64 / elapsed.as_secs_f64()
    );

    let runs = recorder.0.lock().unwrap().clone();
    assert_eq!(runs.len(), TASKS, "every task ran");
    for id in &ids {
        assert_eq!(runs.get(id).map(Vec::len), Some(1), "task {id} ran exactly once");
    }
    let busy_workers: std::collections::HashSet<_> = runs.values().flatten().collect();
    assert!(busy_workers.len() > 1, "work was spread over the workers");
    assert_eq!(
        server.count("SELECT COUNT(*) FROM tasks WHERE status = 'completed' AND attempt = 1").await,
        TASKS as i64
    );
    let completions = server
        .count("SELECT COUNT(*) FROM (SELECT entity_id FROM audit_log WHERE note LIKE '%-> completed%' GROUP BY entity_id HAVING COUNT(*) = 1) once")
        .await;
    assert_eq!(completions, TASKS as i64, "one completion recorded per task");
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_log WHERE note LIKE '%-> completed%'").await, TASKS as i64);
    server.stop().await;
}
