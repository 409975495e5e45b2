//! Several servers on one PostgreSQL database: a worker connected to any of them gets work enqueued through any
//! other, and settlements and cancellations reach the stream holding the lease wherever it lives. The periodic
//! sweep is turned off here, so only the servers' signals to each other can deliver. (SQLite serves one server:
//! these tests pass trivially there.)

mod common;

use std::time::Duration;

use common::*;
use control_tower::pb::{self, pull_tasks_response::Event};

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
