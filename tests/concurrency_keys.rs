//! Concurrency keys: at most the configured number of tasks with one key run at once, across every stream, and
//! tasks waiting behind a full key do not hold up the others. The cap is checked by replaying the audit log.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use control_tower::{
    pb,
    worker::{self, BoxFuture, Handler, Outcome, TaskContext, WorkerConfig},
};
use tokio_util::sync::CancellationToken;

fn keyed(objective: &str, key: &str, priority: i32) -> pb::TaskSpec {
    let mut s = spec(objective);
    s.concurrency_key = key.into();
    s.priority = priority;
    s
}

#[tokio::test]
async fn a_full_key_holds_back_only_its_own_tasks() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    for i in 0..3 {
        enqueue(&mut tasks, keyed(&format!("Deploy A {i}"), "deploy-a", 10)).await;
    }
    for i in 0..2 {
        enqueue(&mut tasks, keyed(&format!("Deploy B {i}"), "deploy-b", 5)).await;
    }
    for i in 0..2 {
        enqueue(&mut tasks, spec(&format!("Unkeyed {i}"))).await;
    }
    let mut stream = pull(&mut workers, "keyed-worker", 10).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_assignment(&mut stream).await);
    }
    let keys: Vec<String> =
        got.iter().map(|a| a.task.as_ref().unwrap().spec.as_ref().unwrap().concurrency_key.clone()).collect();
    assert_eq!(keys, ["deploy-a", "deploy-b", "", ""], "one per key, and the unkeyed ones are not held up");
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks WHERE status = 'running'").await, 4);

    // Finishing the running deploy of A lets the next one of A go.
    workers.complete_task(pb::CompleteTaskRequest { lease_id: got[0].lease_id.clone(), result: None }).await.unwrap();
    let next = next_assignment(&mut stream).await;
    assert_eq!(next.task.unwrap().spec.unwrap().concurrency_key, "deploy-a");
    let running_a = "SELECT COUNT(*) FROM tasks WHERE status = 'running' AND concurrency_key = 'deploy-a'";
    assert_eq!(server.count(running_a).await, 1);

    let bad = tasks.enqueue_task(request(keyed("Bad key", "has space", 0))).await.unwrap_err();
    assert!(bad.message().starts_with("concurrency_key: "), "{}", bad.message());
    server.stop().await;
}

/// Completes every task after a short pause, so that tasks of one key would overlap if the cap leaked.
struct Slow;

impl Handler for Slow {
    fn handle(&self, _task: pb::Task, _ctx: TaskContext) -> BoxFuture<'static, Outcome> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Outcome::Completed(serde_json::json!({}))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cap_holds_across_workers_as_the_audit_log_shows() {
    const LIMIT: u32 = 2;
    let server = TestServer::configured(|c| c.dispatch.concurrency_limit = LIMIT).await;
    let mut tasks = server.tasks().await;
    let mut requests = Vec::new();
    for i in 0..120 {
        let key = ["alpha", "beta", "gamma", ""][i % 4];
        requests.push(request(keyed(&format!("Capped task {i}"), key, (i % 3) as i32)));
    }
    tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap();

    let stop = CancellationToken::new();
    let mut daemons = Vec::new();
    for w in 0..4 {
        let config = WorkerConfig {
            server: server.url(),
            worker_id: format!("capped-{w}"),
            concurrency: 6,
            prefetch: 0,
            operations: vec![],
            shutdown_grace: Duration::from_secs(5),
            token: None,
            tls: Default::default(),
        };
        daemons.push(tokio::spawn(worker::run(config, Arc::new(Slow), stop.clone())));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while server.count("SELECT COUNT(*) FROM tasks WHERE status = 'completed'").await < 120 {
        assert!(tokio::time::Instant::now() < deadline, "not all tasks completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    for daemon in daemons {
        daemon.await.unwrap().unwrap();
    }

    let most = peak_running_per_key(&server.state.db).await;
    for key in ["alpha", "beta", "gamma"] {
        assert!(most[key] <= i64::from(LIMIT), "{key} ran {} at once", most[key]);
        assert!(most[key] >= 1, "{key} ran");
    }
    server.stop().await;
}
