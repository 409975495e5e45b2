//! Leases: release on disconnect, expiry without heartbeats (injected clock), heartbeats, the in-flight cap,
//! fencing of stale leases, retries, cancellation of running tasks, and draining on shutdown.

mod common;

use std::{collections::HashMap, time::Duration};

use common::*;
use control_tower::pb::{self, pull_tasks_response::Event};
use tonic::Code;
use tonic_types::StatusExt;

async fn complete(workers: &mut Workers, lease_id: &str, result: serde_json::Value) -> Result<pb::Task, tonic::Status> {
    workers
        .complete_task(pb::CompleteTaskRequest { lease_id: lease_id.into(), result: Some(json_struct(result)) })
        .await
        .map(|r| r.into_inner())
}

async fn fail(workers: &mut Workers, lease_id: &str, retryable: bool) -> Result<pb::Task, tonic::Status> {
    workers
        .fail_task(pb::FailTaskRequest { lease_id: lease_id.into(), error: "boom".into(), retryable })
        .await
        .map(|r| r.into_inner())
}

async fn heartbeat(workers: &mut Workers, worker_id: &str, leases: &[&str]) -> pb::HeartbeatResponse {
    workers
        .heartbeat(pb::HeartbeatRequest {
            worker_id: worker_id.into(),
            lease_ids: leases.iter().map(|l| l.to_string()).collect(),
            draining: false,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn next_event(stream: &mut tonic::Streaming<pb::PullTasksResponse>) -> Event {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("a message in time")
        .expect("stream ok")
        .expect("stream open")
        .event
        .expect("an event")
}

/// A server on a manual clock whose own reaper never runs: the test decides when time passes and leases expire.
async fn with_time_in_hand() -> TestServer {
    TestServer::start_with(Options {
        manual_clock: true,
        configure: Some(Box::new(|c| c.dispatch.sweep_interval = Duration::from_secs(3600))),
        ..Default::default()
    })
    .await
}

fn reason(status: &tonic::Status) -> String {
    status.get_details_error_info().map(|i| i.reason).unwrap_or_default()
}

#[tokio::test]
async fn a_dropped_stream_releases_its_lease_and_the_stale_lease_cannot_complete() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let task = enqueue(&mut tasks, spec("Survive a worker that leaves")).await;

    let mut first = pull(&mut workers, "worker-a", 1).await;
    let lease_a = next_assignment(&mut first).await;
    assert_eq!((lease_a.task.as_ref().unwrap().id.as_str(), lease_a.attempt), (task.id.as_str(), 1));
    assert_eq!(get(&mut tasks, &task.id).await.status(), pb::TaskStatus::Running);
    drop(first); // the worker disconnects mid-task

    let requeued = wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Queued).await;
    assert_eq!(requeued.attempt, 1);
    let mut second = pull(&mut workers, "worker-b", 1).await;
    let lease_b = next_assignment(&mut second).await;
    assert_eq!((lease_b.task.as_ref().unwrap().id.as_str(), lease_b.attempt), (task.id.as_str(), 2));
    assert_ne!(lease_a.lease_id, lease_b.lease_id);

    let stale = complete(&mut workers, &lease_a.lease_id, serde_json::json!({"by": "a"})).await.unwrap_err();
    assert_eq!((stale.code(), reason(&stale).as_str()), (Code::FailedPrecondition, "LEASE_NOT_HELD"));
    let stale_fail = fail(&mut workers, &lease_a.lease_id, false).await.unwrap_err();
    assert_eq!(stale_fail.code(), Code::FailedPrecondition);

    let done = complete(&mut workers, &lease_b.lease_id, serde_json::json!({"by": "b"})).await.unwrap();
    assert_eq!(done.status(), pb::TaskStatus::Completed);
    assert_eq!(done.worker_id, "worker-b");
    // A retried completion with the same lease is answered with what was recorded, and writes nothing.
    let replay = complete(&mut workers, &lease_b.lease_id, serde_json::json!({"by": "b-again"})).await.unwrap();
    assert_eq!(replay.result, done.result);
    let completions = server
        .count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE entity_id = '{}' AND note LIKE '%-> completed%'",
            task.id
        ))
        .await;
    assert_eq!(completions, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_lease_expires_without_heartbeats() {
    let server = with_time_in_hand().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let task = enqueue(&mut tasks, spec("Expire my lease")).await;
    let mut stream = pull(&mut workers, "silent-worker", 1).await;
    let lease = next_assignment(&mut stream).await;

    server.clock().advance(Duration::from_secs(29));
    assert_eq!(server.state.dispatcher.reap_expired().await.unwrap(), 0, "not expired yet");
    server.clock().advance(Duration::from_secs(2));
    assert_eq!(server.state.dispatcher.reap_expired().await.unwrap(), 1);

    // The worker is told, its slot is freed, and the task comes back to it as a new attempt.
    let Event::Cancelled(cancelled) = next_event(&mut stream).await else { panic!("expected a cancellation") };
    assert_eq!(cancelled.lease_id, lease.lease_id);
    let retry = next_assignment(&mut stream).await;
    assert_eq!((retry.task.unwrap().id, retry.attempt), (task.id.clone(), 2));

    let stale = complete(&mut workers, &lease.lease_id, serde_json::json!({})).await.unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    let report = heartbeat(&mut workers, "silent-worker", &[&lease.lease_id, &retry.lease_id]).await;
    assert_eq!(report.lost, vec![lease.lease_id.clone()]);
    assert_eq!(report.extended, vec![retry.lease_id.clone()]);
    let expired_entries = server
        .count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE entity_id = '{}' AND note LIKE '%lease expired%'",
            task.id
        ))
        .await;
    assert_eq!(expired_entries, 1);
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_a_lease_alive() {
    let server = with_time_in_hand().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let task = enqueue(&mut tasks, spec("Keep me alive")).await;
    let mut stream = pull(&mut workers, "busy-worker", 1).await;
    let lease = next_assignment(&mut stream).await;

    for _ in 0..5 {
        server.clock().advance(Duration::from_secs(20));
        let report = heartbeat(&mut workers, "busy-worker", &[&lease.lease_id]).await;
        assert_eq!(report.extended, vec![lease.lease_id.clone()]);
        assert_eq!(server.state.dispatcher.reap_expired().await.unwrap(), 0);
    }
    let other = heartbeat(&mut workers, "someone-else", &[&lease.lease_id]).await;
    assert_eq!(other.lost, vec![lease.lease_id.clone()], "only the holder extends a lease");
    assert_eq!(get(&mut tasks, &task.id).await.status(), pb::TaskStatus::Running);
    let malformed = workers.heartbeat(pb::HeartbeatRequest { worker_id: "bad id!".into(), ..Default::default() }).await;
    assert_eq!(code_of(malformed), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn a_stream_holds_at_most_max_in_flight_leases() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    for i in 0..5 {
        enqueue(&mut tasks, spec(&format!("Capped task {i}"))).await;
    }
    let mut stream = pull(&mut workers, "capped", 2).await;
    let a = next_assignment(&mut stream).await;
    let _b = next_assignment(&mut stream).await;
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks WHERE status = 'running'").await, 2);

    complete(&mut workers, &a.lease_id, serde_json::json!({})).await.unwrap();
    let c = next_assignment(&mut stream).await;
    assert_eq!(c.attempt, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks WHERE status = 'running'").await, 2);
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks WHERE status = 'queued'").await, 2);

    for (field, request) in [
        ("max_in_flight", pb::PullTasksRequest { worker_id: "w".into(), max_in_flight: 1001, ..Default::default() }),
        (
            "operations",
            pb::PullTasksRequest { worker_id: "w".into(), operations: vec!["deploy".into()], ..Default::default() },
        ),
        ("worker_id", pb::PullTasksRequest::default()),
    ] {
        let status = workers.pull_tasks(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    server.stop().await;
}

#[tokio::test]
async fn workers_only_get_the_operations_they_handle_highest_priority_first() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let mut docs = spec("Documentation work");
    docs.operation = "docs".into();
    let docs = enqueue(&mut tasks, docs).await;
    let low = enqueue(&mut tasks, spec("Low priority analysis")).await;
    let mut high = spec("High priority analysis");
    high.priority = 10;
    let high = enqueue(&mut tasks, high).await;

    let mut stream = workers
        .pull_tasks(pb::PullTasksRequest {
            worker_id: "analyst".into(),
            operations: vec!["analysis".into()],
            max_in_flight: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let first = next_assignment(&mut stream).await;
    assert_eq!(first.task.unwrap().id, high.id);
    complete(&mut workers, &first.lease_id, serde_json::json!({})).await.unwrap();
    let second = next_assignment(&mut stream).await;
    assert_eq!(second.task.unwrap().id, low.id);
    complete(&mut workers, &second.lease_id, serde_json::json!({})).await.unwrap();
    assert_eq!(get(&mut tasks, &docs.id).await.status(), pb::TaskStatus::Queued, "not an operation it handles");
    server.stop().await;
}

#[tokio::test]
async fn retryable_failures_back_off_until_the_attempts_run_out() {
    let server = with_time_in_hand().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let mut s = spec("Flaky work");
    s.max_attempts = 2;
    let task = enqueue(&mut tasks, s).await;
    let mut stream = pull(&mut workers, "flaky", 1).await;

    let first = next_assignment(&mut stream).await;
    let requeued = fail(&mut workers, &first.lease_id, true).await.unwrap();
    assert_eq!((requeued.status(), requeued.attempt), (pb::TaskStatus::Queued, 1));
    assert_eq!(requeued.error, "boom");
    let run_after = requeued.spec.unwrap().run_after.unwrap();
    let now = control_tower::convert::timestamp(control_tower::clock::Clock::now(server.clock()));
    assert!(
        run_after.seconds * 1_000_000_000 + i64::from(run_after.nanos)
            > now.seconds * 1_000_000_000 + i64::from(now.nanos)
    );

    server.clock().advance(Duration::from_secs(2));
    server.state.dispatcher.work_available(control_tower::clock::Clock::now(server.clock()));
    let second = next_assignment(&mut stream).await;
    assert_eq!(second.attempt, 2);
    let failed = fail(&mut workers, &second.lease_id, true).await.unwrap();
    assert_eq!((failed.status(), failed.attempt), (pb::TaskStatus::Failed, 2), "attempts exhausted");

    let permanent = enqueue(&mut tasks, spec("Fails for good")).await;
    let lease = next_assignment(&mut stream).await;
    assert_eq!(lease.task.unwrap().id, permanent.id);
    let failed = fail(&mut workers, &lease.lease_id, false).await.unwrap();
    assert_eq!((failed.status(), failed.attempt), (pb::TaskStatus::Failed, 1));
    let empty_error = workers
        .fail_task(pb::FailTaskRequest { lease_id: lease.lease_id.clone(), error: " ".into(), retryable: false })
        .await;
    assert_eq!(code_of(empty_error), Code::InvalidArgument);
    assert!(get(&mut tasks, &task.id).await.completed_at.is_some());
    server.stop().await;
}

#[tokio::test]
async fn cancelling_a_running_task_tells_its_worker_and_fences_the_lease() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let task = enqueue(&mut tasks, spec("Cancel me while running")).await;
    let mut stream = pull(&mut workers, "runner", 1).await;
    let lease = next_assignment(&mut stream).await;

    let cancelled = tasks
        .cancel_task(pb::CancelTaskRequest { id: task.id.clone(), reason: "operator said so".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status(), pb::TaskStatus::Cancelled);
    let Event::Cancelled(message) = next_event(&mut stream).await else { panic!("expected a cancellation") };
    assert_eq!((message.lease_id.as_str(), message.task_id.as_str()), (lease.lease_id.as_str(), task.id.as_str()));
    assert!(message.reason.contains("operator said so"));

    let refused = complete(&mut workers, &lease.lease_id, serde_json::json!({})).await.unwrap_err();
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "TASK_CANCELLED"));
    let report = heartbeat(&mut workers, "runner", &[&lease.lease_id]).await;
    assert_eq!(report.cancelled, vec![lease.lease_id.clone()]);
    assert_eq!(server.state.dispatcher.reap_expired().await.unwrap(), 0, "a cancelled task is never re-run");
    let ended = get(&mut tasks, &task.id).await;
    assert_eq!(ended.status(), pb::TaskStatus::Cancelled);
    let output: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.task_dir(&task.id).join("output.json")).unwrap()).unwrap();
    assert_eq!(output["status"], "cancelled");

    let done = enqueue(&mut tasks, spec("Already finished")).await;
    let lease = next_assignment(&mut stream).await;
    complete(&mut workers, &lease.lease_id, serde_json::json!({})).await.unwrap();
    let too_late = tasks.cancel_task(pb::CancelTaskRequest { id: done.id, reason: String::new() }).await.unwrap_err();
    assert_eq!((too_late.code(), reason(&too_late).as_str()), (Code::FailedPrecondition, "TASK_ALREADY_ENDED"));
    server.stop().await;
}

#[tokio::test]
async fn racing_settlements_record_exactly_one_outcome() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let n = 20;
    for i in 0..n {
        enqueue(&mut tasks, spec(&format!("Race to settle {i}"))).await;
    }
    let mut stream = pull(&mut workers, "racer", n).await;
    let mut races = Vec::new();
    for _ in 0..n {
        let lease = next_assignment(&mut stream).await;
        let (mut w1, mut w2) = (workers.clone(), workers.clone());
        let (l1, l2) = (lease.lease_id.clone(), lease.lease_id.clone());
        races.push(tokio::spawn(async move {
            let (c, f) = tokio::join!(
                complete(&mut w1, &l1, serde_json::json!({"winner": "complete"})),
                fail(&mut w2, &l2, false)
            );
            (c.is_ok(), f.is_ok())
        }));
    }
    for race in races {
        let (completed, failed) = race.await.unwrap();
        assert!(completed ^ failed, "exactly one settlement wins");
    }
    let settled = server
        .count("SELECT COUNT(*) FROM audit_log WHERE note LIKE '%running -> completed%' OR note LIKE '%running -> failed%'")
        .await;
    assert_eq!(settled, i64::from(n));
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks WHERE status IN ('completed', 'failed')").await, i64::from(n));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_drains_streams_before_stopping() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(health.check(check("")).await.unwrap().into_inner().status, serving);
    assert_eq!(health.check(check("controltower.v1.TaskService")).await.unwrap().into_inner().status, serving);

    let task = enqueue(&mut tasks, spec("Finish me during the drain")).await;
    let mut stream = pull(&mut workers, "drained", 1).await;
    let lease = next_assignment(&mut stream).await;

    let stopping = tokio::spawn(server.stop());
    let Event::Draining(_) = next_event(&mut stream).await else { panic!("expected the drain notice") };
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    assert_eq!(health.check(check("")).await.unwrap().into_inner().status, not_serving);
    let refused = workers
        .pull_tasks(pb::PullTasksRequest { worker_id: "late".into(), max_in_flight: 1, ..Default::default() })
        .await;
    assert_eq!(code_of(refused), Code::Unavailable);

    // Held leases can still be settled while draining; then the server stops.
    let done = complete(&mut workers, &lease.lease_id, serde_json::json!({"drained": true})).await.unwrap();
    assert_eq!((done.status(), done.id), (pb::TaskStatus::Completed, task.id));
    tokio::time::timeout(Duration::from_secs(30), stopping).await.expect("stops in time").unwrap();
}

/// One completion group holding every kind of item: on PostgreSQL the plain tasks complete in one statement and
/// the rest go the general way, so each kind must still get its own outcome and exactly one audit entry.
#[tokio::test]
async fn a_completion_group_settles_plain_tasks_work_model_tasks_replays_and_unknown_leases() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let plain = enqueue(&mut tasks, spec("Plain")).await;
    let request = pb::EnqueueTaskRequest { spec: Some(spec("With a work model")), create_cwom: true };
    let modelled = tasks.enqueue_task(request).await.unwrap().into_inner().task.unwrap();
    let replayed = enqueue(&mut tasks, spec("Already completed")).await;

    let mut stream = pull(&mut workers, "grouped", 3).await;
    let mut leases = std::collections::HashMap::new();
    for _ in 0..3 {
        let assignment = next_assignment(&mut stream).await;
        leases.insert(assignment.task.unwrap().id, assignment.lease_id);
    }
    let first = complete(&mut workers, &leases[&replayed.id], serde_json::json!({"n": 0})).await.unwrap();

    let items = vec![
        (leases[&plain.id].clone(), serde_json::json!({"n": 1})),
        (leases[&modelled.id].clone(), serde_json::json!({"n": 2})),
        (leases[&replayed.id].clone(), serde_json::json!({"n": 3})),
        ("0123456789abcdef0123456789abcdef".to_owned(), serde_json::json!({})),
    ];
    let now = server.state.clock.now();
    let outcomes = control_tower::store::tasks::complete_many(&server.state.db, now, items).await.unwrap();
    let [plain_done, modelled_done, replay, unknown] = <[_; 4]>::try_from(outcomes).unwrap();
    let (plain_done, modelled_done, replay) = (plain_done.unwrap(), modelled_done.unwrap(), replay.unwrap());
    assert!(plain_done.recorded && modelled_done.recorded && !replay.recorded);
    assert_eq!((plain_done.task.id.as_str(), plain_done.task.result.clone()), (plain.id.as_str(), Some(json(1))));
    assert_eq!(
        (modelled_done.task.id.as_str(), modelled_done.task.result.clone()),
        (modelled.id.as_str(), Some(json(2)))
    );
    assert_eq!(replay.task.result.as_ref().map(|r| r["n"].clone()), Some(serde_json::json!(0)));
    assert_eq!(first.id, replay.task.id);
    assert!(
        matches!(unknown, Err(control_tower::error::Error::FailedPrecondition { reason: "LEASE_NOT_HELD", .. })),
        "{unknown:?}"
    );

    for task in [&plain, &modelled, &replayed] {
        // Each completion entry reads, to the byte, as the entry's own code writes it.
        let entries = format!(
            "SELECT COUNT(*) FROM audit_log WHERE entity_kind = 'Task' AND entity_id = '{}' \
             AND actor_kind = 'system' AND actor_id = 'grouped' AND action = 'status_changed' \
             AND note = 'Status changed: running -> completed' AND trace_id = '{}' \
             AND CAST(before AS text) = '{{\"status\":\"running\"}}' \
             AND CAST(after AS text) = '{{\"status\":\"completed\"}}'",
            task.id, task.trace_id
        );
        assert_eq!(server.count(&entries).await, 1, "{}", task.id);
    }
    let run_done = format!("SELECT COUNT(*) FROM cwom_runs WHERE task_id = '{}' AND status = 'done'", modelled.id);
    assert_eq!(server.count(&run_done).await, 1, "the work model's run ended with its task");
    server.stop().await;
}

fn json(n: i64) -> serde_json::Value {
    serde_json::json!({ "n": n })
}

#[tokio::test]
async fn complete_tasks_settles_each_item_on_its_own() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let a = enqueue(&mut tasks, spec("First of a batch")).await;
    let b = enqueue(&mut tasks, spec("Second of a batch")).await;
    let mut stream = pull(&mut workers, "batcher", 2).await;
    let (first, second) = (next_assignment(&mut stream).await, next_assignment(&mut stream).await);
    let lease_of = |id: &str| if first.task.as_ref().unwrap().id == id { &first.lease_id } else { &second.lease_id };
    let item = |lease: &str, result: serde_json::Value| pb::CompleteTaskRequest {
        lease_id: lease.into(),
        result: Some(json_struct(result)),
    };

    let response = workers
        .complete_tasks(pb::CompleteTasksRequest {
            requests: vec![
                item(lease_of(&a.id), serde_json::json!({"n": 1})),
                item("no-such-lease", serde_json::json!({})),
                item("", serde_json::json!({})),
                item(lease_of(&b.id), serde_json::json!({"n": 2})),
                // The same lease twice: the second answer is the recorded completion, written once.
                item(lease_of(&a.id), serde_json::json!({"n": 1})),
            ],
            view: pb::TaskView::Unspecified.into(),
        })
        .await
        .unwrap()
        .into_inner();

    let outcomes: Vec<_> = response.results.into_iter().map(|r| r.outcome.expect("an outcome")).collect();
    use pb::complete_task_result::Outcome;
    let task_of = |outcome: &Outcome| match outcome {
        Outcome::Task(task) => task.clone(),
        Outcome::Error(error) => panic!("unexpected error {error:?}"),
    };
    let error_of = |outcome: &Outcome| match outcome {
        Outcome::Error(error) => error.clone(),
        Outcome::Task(task) => panic!("unexpected task {}", task.id),
    };
    assert_eq!(outcomes.len(), 5);
    let done_a = task_of(&outcomes[0]);
    assert_eq!((done_a.id.as_str(), done_a.status()), (a.id.as_str(), pb::TaskStatus::Completed));
    assert_eq!(control_tower::json::struct_to_json(done_a.result.unwrap())["n"], 1);
    assert_eq!(error_of(&outcomes[1]).code, tonic::Code::FailedPrecondition as i32);
    let missing = error_of(&outcomes[2]);
    assert_eq!(missing.code, tonic::Code::InvalidArgument as i32);
    assert!(missing.message.contains("lease_id"), "{}", missing.message);
    let done_b = task_of(&outcomes[3]);
    assert_eq!((done_b.id.as_str(), done_b.status()), (b.id.as_str(), pb::TaskStatus::Completed));
    assert_eq!(task_of(&outcomes[4]).id, a.id);

    for task in [&a, &b] {
        let entries = server
            .count(&format!(
                "SELECT COUNT(*) FROM audit_log WHERE entity_id = '{}' AND note LIKE '%-> completed%'",
                task.id
            ))
            .await;
        assert_eq!(entries, 1, "one completion entry for {}", task.id);
        let dir = server.task_dir(&task.id);
        eventually("output.json", || dir.join("output.json").is_file()).await;
    }
    // Both slots are free again: the stream takes the next task.
    let c = enqueue(&mut tasks, spec("After the batch")).await;
    assert_eq!(next_assignment(&mut stream).await.task.unwrap().id, c.id);
}

#[tokio::test]
async fn complete_tasks_refuses_an_oversized_batch() {
    let server = TestServer::start().await;
    let mut workers = server.workers().await;
    let requests =
        (0..1001).map(|i| pb::CompleteTaskRequest { lease_id: format!("lease-{i}"), result: None }).collect();
    let status = workers.complete_tasks(pb::CompleteTasksRequest { requests, view: 0 }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("requests"), "{}", status.message());
}

#[tokio::test]
async fn complete_tasks_answers_in_the_view_asked_for() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let basic = enqueue(&mut tasks, spec("Answered in the basic view")).await;
    let full = enqueue(&mut tasks, spec("Answered in the full view")).await;
    let mut stream = pull(&mut workers, "viewer", 2).await;
    let mut leases = HashMap::new();
    for _ in 0..2 {
        let assignment = next_assignment(&mut stream).await;
        leases.insert(assignment.task.unwrap().id, assignment.lease_id);
    }
    let complete = |task_id: &str, view: pb::TaskView| pb::CompleteTasksRequest {
        requests: vec![pb::CompleteTaskRequest {
            lease_id: leases[task_id].clone(),
            result: Some(json_struct(serde_json::json!({"view": view.as_str_name()}))),
        }],
        view: view.into(),
    };
    let only_task = |response: pb::CompleteTasksResponse| match response.results[0].outcome.clone() {
        Some(pb::complete_task_result::Outcome::Task(task)) => task,
        other => panic!("unexpected outcome {other:?}"),
    };

    let mut invalid = complete(&basic.id, pb::TaskView::Basic);
    invalid.view = 7;
    let status = workers.complete_tasks(invalid).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("view"), "{}", status.message());

    let answered =
        only_task(workers.complete_tasks(complete(&basic.id, pb::TaskView::Basic)).await.unwrap().into_inner());
    assert_eq!((answered.id.as_str(), answered.status()), (basic.id.as_str(), pb::TaskStatus::Completed));
    assert_eq!((answered.attempt, answered.worker_id.as_str()), (1, "viewer"));
    assert!(answered.completed_at.is_some() && answered.started_at.is_some());
    assert_eq!((answered.spec, answered.result), (None, None), "the basic view leaves out spec and result");
    // Only the answer is basic: the task itself is whole.
    let stored = tasks.get_task(pb::GetTaskRequest { id: basic.id.clone() }).await.unwrap().into_inner();
    assert_eq!(control_tower::json::struct_to_json(stored.result.unwrap())["view"], "TASK_VIEW_BASIC");
    assert_eq!(stored.spec.unwrap().objective, "Answered in the basic view");

    let answered =
        only_task(workers.complete_tasks(complete(&full.id, pb::TaskView::Full)).await.unwrap().into_inner());
    assert_eq!(answered.spec.unwrap().objective, "Answered in the full view");
    assert_eq!(control_tower::json::struct_to_json(answered.result.unwrap())["view"], "TASK_VIEW_FULL");
}

/// The lease's audit entry, exactly. On PostgreSQL a plain claim writes it in SQL and a claim of keyed tasks in
/// Rust: both must read the same, here and in the keyed claim below.
async fn lease_entry_of(server: &TestServer, task_id: &str) -> pb::AuditEvent {
    let mut audit = control_tower::pb::audit_service_client::AuditServiceClient::new(server.channel().await);
    let filter = pb::AuditFilter { entity_id: task_id.into(), action: "status_changed".into(), ..Default::default() };
    let events = audit
        .list_audit_events(pb::ListAuditEventsRequest {
            filter: Some(filter),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let mut leases: Vec<_> = events.into_iter().filter(|e| e.note.contains("-> running")).collect();
    assert_eq!(leases.len(), 1, "one lease entry for {task_id}");
    leases.pop().unwrap()
}

#[tokio::test]
async fn a_lease_writes_the_same_audit_entry_with_or_without_a_concurrency_key() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let plain = enqueue(&mut tasks, spec("Leased the plain way")).await;
    let mut keyed_spec = spec("Leased under a key");
    // Quotes and backslashes, which a key may hold, are escaped in the document.
    let entry_key = r#"entry"key\path/1"#;
    keyed_spec.concurrency_key = entry_key.into();
    let keyed = enqueue(&mut tasks, keyed_spec).await;
    let mut stream = pull(&mut workers, "entry-worker", 2).await;
    next_assignment(&mut stream).await;
    next_assignment(&mut stream).await;

    for (task, key) in [(&plain, serde_json::Value::Null), (&keyed, serde_json::json!(entry_key))] {
        let entry = lease_entry_of(&server, &task.id).await;
        assert_eq!((entry.actor_kind.as_str(), entry.actor_id.as_str()), ("system", "entry-worker"));
        assert_eq!((entry.entity_kind.as_str(), entry.trace_id.as_str()), ("Task", task.trace_id.as_str()));
        assert_eq!(
            entry.note,
            format!(
                "Status changed: queued -> running: leased to entry-worker (attempt 1 of {})",
                task.spec.as_ref().unwrap().max_attempts
            )
        );
        let json = control_tower::json::struct_to_json;
        assert_eq!(json(entry.before.unwrap()), serde_json::json!({ "status": "queued" }));
        let after = serde_json::json!({ "status": "running", "worker_id": "entry-worker", "attempt": 1, "concurrency_key": key });
        assert_eq!(json(entry.after.unwrap()), after);
        // Stored as the text the entry's own code writes (`serde_json`, keys sorted), whichever code wrote it: the
        // audit chain hashes the stored text, and every entry of a kind should read alike.
        let stored = |column: &str| format!("SELECT CAST({column} AS text) FROM audit_log WHERE id = {}", entry.id);
        assert_eq!(server.text(&stored("before")).await, r#"{"status":"queued"}"#);
        assert_eq!(server.text(&stored("after")).await, after.to_string());
    }
}

async fn entries_of(server: &TestServer, task_id: &str) -> Vec<pb::AuditEvent> {
    let mut audit = control_tower::pb::audit_service_client::AuditServiceClient::new(server.channel().await);
    let filter = pb::AuditFilter { entity_id: task_id.into(), ..Default::default() };
    let request = pb::ListAuditEventsRequest { filter: Some(filter), page_size: 100, page_token: String::new() };
    let mut events = audit.list_audit_events(request).await.unwrap().into_inner().events;
    events.sort_by_key(|e| e.id);
    events
}

/// A worker waiting for work gets a task leased inside the enqueue's own transaction: the task is running by the
/// time EnqueueTask answers, its lease entry carries the instant of its `created` entry, and reads as every lease
/// entry does.
#[tokio::test]
async fn a_task_enqueued_while_a_worker_waits_is_leased_by_its_enqueue() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let mut stream = pull(&mut workers, "waiting-worker", 2).await;
    // Its first claim finds nothing; then the stream waits, parked where an enqueue can claim for it.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for n in 1..=2 {
        let task = enqueue(&mut tasks, spec(&format!("Met by a waiting worker {n}"))).await;
        assert_eq!(get(&mut tasks, &task.id).await.status(), pb::TaskStatus::Running, "task {n}");
        let assignment = next_assignment(&mut stream).await;
        assert_eq!((assignment.task.unwrap().id, assignment.attempt), (task.id.clone(), 1));

        let entries = entries_of(&server, &task.id).await;
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["created", "status_changed"], "task {n}");
        assert_eq!(entries[0].ts, entries[1].ts, "both entries of task {n} come from one transaction");
        let lease = &entries[1];
        assert_eq!((lease.actor_kind.as_str(), lease.actor_id.as_str()), ("system", "waiting-worker"));
        let json = control_tower::json::struct_to_json;
        assert_eq!(json(lease.before.clone().unwrap()), serde_json::json!({ "status": "queued" }));
        assert_eq!(
            json(lease.after.clone().unwrap()),
            serde_json::json!({ "status": "running", "worker_id": "waiting-worker", "attempt": 1, "concurrency_key": null })
        );
        // The second task finds the stream parked again, with its other slot.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every lease and settlement leaves a dead row version, and the queue's index an entry that claims step over until
/// a vacuum removes it. Where autovacuum leaves the task table alone, the server vacuums it once enough pile up.
#[tokio::test]
async fn the_server_vacuums_the_task_table_when_autovacuum_will_not() {
    use control_tower::store::tasks;
    use sea_orm::DatabaseBackend;
    // The server's own sweeps stay out of the way (the test calls the check itself), and so does the audit sealer,
    // whose transactions would keep the vacuum from removing versions younger than their snapshots.
    let server = TestServer::configured(|c| {
        c.dispatch.sweep_interval = Duration::from_secs(3600);
        c.audit_seal_interval = Duration::from_secs(3600);
    })
    .await;
    let db = &server.state.db;
    if db.get_database_backend() != DatabaseBackend::Postgres {
        // SQLite removes old row versions as it writes.
        assert!(!tasks::vacuum_if_unattended(db).await.unwrap());
        return;
    }
    server.sql("ALTER TABLE tasks SET (autovacuum_enabled = false)").await.unwrap();
    let mut client = server.tasks().await;
    for batch in 0..5 {
        let requests = (0..1000).map(|n| request(spec(&format!("Row version {batch}-{n}")))).collect();
        client.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap();
    }
    assert!(!tasks::vacuum_if_unattended(db).await.unwrap(), "no dead row versions yet");
    // 25,000 dead versions: each update of an indexed column leaves one per row.
    for _ in 0..5 {
        server.sql("UPDATE tasks SET priority = priority + 1").await.unwrap();
    }
    let dead = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'tasks'";
    // The statistics reach the server within a second or so, from each connection on its own. Until all five
    // updates are counted, a vacuum could already run and remove them all, and a count arriving after it would
    // then read as versions it left behind.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.count(dead).await < 25_000 {
        assert!(tokio::time::Instant::now() < deadline, "only {} dead versions counted", server.count(dead).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while !tasks::vacuum_if_unattended(db).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "no vacuum with {} dead versions", server.count(dead).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let vacuums = server.count("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'tasks'").await;
    assert_eq!(vacuums, 1);
    let left = server.count(dead).await;
    assert!(left < 1_000, "{left} dead row versions left after the vacuum");
    assert!(!tasks::vacuum_if_unattended(db).await.unwrap(), "nothing left to vacuum");
}

#[tokio::test]
async fn the_server_analyzes_the_task_table_when_its_size_changes_not_when_its_rows_are_updated() {
    use control_tower::store::tasks;
    use sea_orm::DatabaseBackend;
    let server = TestServer::configured(|c| {
        c.dispatch.sweep_interval = Duration::from_secs(3600);
        c.audit_seal_interval = Duration::from_secs(3600);
    })
    .await;
    let db = &server.state.db;
    if db.get_database_backend() != DatabaseBackend::Postgres {
        assert!(!tasks::refresh_statistics(db).await.unwrap(), "SQLite's claim needs no statistics");
        return;
    }
    server.sql("ALTER TABLE tasks SET (autovacuum_enabled = false)").await.unwrap();
    let mut client = server.tasks().await;
    let mut enqueue_batches = async |batches: usize, tag: &str| {
        for batch in 0..batches {
            let requests = (0..1000).map(|n| request(spec(&format!("Sized {tag} {batch}-{n}")))).collect();
            client.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap();
        }
    };
    // The statistics reach the server within a second or so, from each connection on its own.
    let wait_for = async |sql: &str, at_least: i64| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while server.count(sql).await < at_least {
            assert!(tokio::time::Instant::now() < deadline, "{sql} stayed under {at_least}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let live = "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'tasks'";
    let analyses = "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'tasks'";

    enqueue_batches(5, "first").await;
    wait_for(live, 5_000).await;
    assert!(tasks::refresh_statistics(db).await.unwrap(), "a table grown from nothing is analyzed");
    assert!(!tasks::refresh_statistics(db).await.unwrap(), "and then it is up to date");

    for _ in 0..5 {
        server.sql("UPDATE tasks SET priority = priority + 1").await.unwrap();
    }
    wait_for("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'tasks'", 25_000).await;
    assert!(!tasks::refresh_statistics(db).await.unwrap(), "25,000 updates leave the size as it was");

    enqueue_batches(3, "second").await;
    wait_for(live, 8_000).await;
    assert!(tasks::refresh_statistics(db).await.unwrap(), "8,000 rows where 5,000 were estimated");
    wait_for(analyses, 2).await;
    assert_eq!(server.count(analyses).await, 2);
}

/// A spec with every optional field set, so that a column read wrongly shows.
fn full_spec(objective: &str) -> pb::TaskSpec {
    let mut spec = spec(objective);
    spec.idempotency_key = format!("key {objective}");
    spec.requested_by = Some(pb::Requester { kind: "agent".into(), id: "agent-7".into(), label: "Seven".into() });
    spec.target = Some(pb::Target {
        repo: "acme/widgets".into(),
        r#ref: "dev".into(),
        path: "src/".into(),
        ..Default::default()
    });
    spec.constraints =
        Some(pb::Constraints { time_budget_seconds: Some(120), allow_network: false, allow_secrets: false });
    spec.inputs = Some(json_struct(serde_json::json!({"n": 1, "x": 1.5, "nested": {"list": ["a", null, true]}})));
    spec.metadata = Some(json_struct(serde_json::json!({"team": "core"})));
    spec.acceptance_criteria = vec!["tests pass".into(), "no new warnings".into()];
    spec.evidence_requirements = vec!["log".into()];
    spec.priority = 3;
    spec.max_attempts = 4;
    spec
}

#[tokio::test]
async fn claimed_and_completed_tasks_read_the_same_as_get_task() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    // One from the backlog (a stream's claim), one handed to a waiting stream by its enqueue.
    let backlog = enqueue(&mut tasks, full_spec("From the backlog")).await;
    let mut stream = pull(&mut workers, "reader", 1).await;
    let first = next_assignment(&mut stream).await;
    assert_eq!(first.task.as_ref().map(|t| t.id.as_str()), Some(backlog.id.as_str()));
    let mut waiting = pull(&mut workers, "waiting", 1).await;
    let handed = enqueue(&mut tasks, full_spec("Handed over")).await;
    let second = next_assignment(&mut waiting).await;
    assert_eq!(second.task.as_ref().map(|t| t.id.as_str()), Some(handed.id.as_str()));

    for assignment in [first, second] {
        let leased = assignment.task.clone().unwrap();
        assert_eq!(leased.status(), pb::TaskStatus::Running);
        assert_eq!(leased, get(&mut tasks, &leased.id).await, "the assignment's task is the stored one");
        let completed = complete(&mut workers, &assignment.lease_id, serde_json::json!({"answer": 42})).await.unwrap();
        assert_eq!(completed.status(), pb::TaskStatus::Completed);
        assert_eq!(completed, get(&mut tasks, &leased.id).await, "the completion's answer is the stored task");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_lease_granted_before_tokens_named_their_task_still_settles() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let task = enqueue(&mut tasks, spec("Leased under the earlier token format")).await;
    let mut stream = pull(&mut workers, "veteran", 1).await;
    let assignment = next_assignment(&mut stream).await;
    assert!(assignment.lease_id.starts_with(&task.id.replace('-', "")), "a token starts with its task's id");
    // As a lease granted by an earlier version of the server: 32 random hex digits.
    let legacy = "0123456789abcdef0123456789abcdef";
    server.sql(&format!("UPDATE tasks SET lease_id = '{legacy}' WHERE id = '{}'", task.id)).await.unwrap();

    assert_eq!(heartbeat(&mut workers, "veteran", &[legacy]).await.extended, vec![legacy.to_owned()]);
    let done = complete(&mut workers, legacy, serde_json::json!({"ok": true})).await.unwrap();
    assert_eq!(done.status(), pb::TaskStatus::Completed);
    let again = complete(&mut workers, legacy, serde_json::json!({"ok": true})).await.unwrap();
    assert_eq!(again, done, "a repeated completion is answered with the recorded one");
    let stale = complete(&mut workers, &assignment.lease_id, serde_json::json!({})).await;
    assert_eq!(code_of(stale), Code::FailedPrecondition, "the replaced token holds nothing");
    server.stop().await;
}

/// Several waiting streams served by one enqueue: each gets as many tasks as it has room for, highest priority
/// first, and the rest stay queued. On PostgreSQL one statement claims for all of them.
#[tokio::test]
async fn waiting_streams_share_a_batch_each_up_to_its_room() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let mut streams = Vec::new();
    for (worker, room) in [("two", 2), ("three", 3), ("four", 4)] {
        streams.push((worker, room, pull(&mut workers, worker, room).await));
    }
    // Their first claims find nothing; then they wait where an enqueue can claim for them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = (0..12)
        .map(|n| {
            let mut spec = spec(&format!("Shared task {n}"));
            spec.priority = n;
            request(spec)
        })
        .collect();
    tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap();

    let mut leased = Vec::new();
    for (worker, room, stream) in &mut streams {
        let mut priorities = Vec::new();
        for _ in 0..*room {
            let task = next_assignment(stream).await.task.unwrap();
            assert_eq!(task.worker_id, *worker);
            priorities.push(task.spec.unwrap().priority);
        }
        assert!(priorities.windows(2).all(|w| w[0] > w[1]), "{worker} got {priorities:?}: highest first");
        leased.extend(priorities);
    }
    leased.sort_unstable();
    assert_eq!(leased, (3..12).collect::<Vec<_>>(), "the nine highest priorities are leased");
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks WHERE status = 'queued' AND priority < 3").await, 3);
    for (worker, room, _) in &streams {
        let sql = format!("SELECT COUNT(*) FROM tasks WHERE status = 'running' AND worker_id = '{worker}'");
        assert_eq!(server.count(&sql).await, i64::from(*room), "{worker} holds as many as it has room for");
    }
    server.stop().await;
}

/// A stream whose every slot is taken gets its next task from the completion that frees its slot. On PostgreSQL the
/// completion claims for the stream in its own transaction: the completed task's entry and the next task's lease
/// entry share one, so a task's slot is refilled after one commit, not two. It never holds more than its room.
#[tokio::test]
async fn a_full_stream_gets_its_next_task_from_the_completion_that_frees_its_slot() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let first = enqueue(&mut tasks, spec("First in line")).await;
    let second = enqueue(&mut tasks, spec("Second in line")).await;
    let mut stream = pull(&mut workers, "one-slot", 1).await;
    let assignment = next_assignment(&mut stream).await;
    assert_eq!(assignment.task.unwrap().id, first.id);
    // Time for the full stream to park where completions can claim for it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks WHERE status = 'running'").await, 1);

    complete(&mut workers, &assignment.lease_id, serde_json::json!({"done": 1})).await.unwrap();
    let next = next_assignment(&mut stream).await;
    assert_eq!(next.task.unwrap().id, second.id);
    assert_eq!(get(&mut tasks, &first.id).await.status, pb::TaskStatus::Completed as i32);
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks WHERE status = 'running'").await, 1, "one slot, one lease");
    if postgres_admin_url().is_some() {
        let transactions = format!(
            "SELECT COUNT(DISTINCT txid) FROM audit_log WHERE action = 'status_changed' AND entity_id IN ('{}', '{}')",
            first.id, second.id
        );
        // The first lease's; then the completion's, which also leased the second task.
        assert_eq!(server.count(&transactions).await, 2);
    }

    // The stream is full again; the second completion finds nothing to claim and the stream carries on.
    complete(&mut workers, &next.lease_id, serde_json::json!({"done": 2})).await.unwrap();
    let third = enqueue(&mut tasks, spec("Third in line")).await;
    assert_eq!(next_assignment(&mut stream).await.task.unwrap().id, third.id);
    server.stop().await;
}

/// A completion group larger than one statement's chunk stores every result as its worker sent it: strings with
/// quotes, backslashes, line breaks and accents, nested lists, empty and nested objects, each on its own task.
#[tokio::test]
async fn every_result_of_a_completion_group_is_stored_as_sent() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    const TASKS: usize = 140;
    for n in 0..TASKS {
        enqueue(&mut tasks, spec(&format!("Result {n}"))).await;
    }
    let mut stream = pull(&mut workers, "results", TASKS as i32).await;
    let mut sent = Vec::with_capacity(TASKS);
    for n in 0..TASKS {
        let assignment = next_assignment(&mut stream).await;
        let result = match n % 4 {
            0 => serde_json::json!({}),
            1 => serde_json::json!({ "text": format!("\"{n}\" \\ line\nbreak \u{e9}\u{1f600}"), "n": n }),
            2 => serde_json::json!({ "list": [1.5, "two", null, true, { "deep": [] }], "empty": {} }),
            _ => serde_json::json!({ "$.key": "a \"path\"-like key", "'": "'" }),
        };
        sent.push((assignment.task.unwrap().id, assignment.lease_id, result));
    }
    let requests = sent
        .iter()
        .map(|(_, lease, result)| pb::CompleteTaskRequest {
            lease_id: lease.clone(),
            result: Some(json_struct(result.clone())),
        })
        .collect();
    let results = workers
        .complete_tasks(pb::CompleteTasksRequest { requests, view: pb::TaskView::Basic.into() })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), TASKS);
    for (id, _, result) in &sent {
        let stored = get(&mut tasks, id).await;
        assert_eq!(stored.status(), pb::TaskStatus::Completed, "{id}");
        assert_eq!(&control_tower::json::struct_to_json(stored.result.unwrap()), result, "{id}");
    }
    server.stop().await;
}
