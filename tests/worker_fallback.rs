//! The worker daemon's grouped completions against servers that do not answer a group with tasks alone: one that
//! has no CompleteTasks (an older release), whose group falls back to one CompleteTask each, and one that answers
//! some items of a group with errors, transient ones (retried alone) and lasting ones (not retried). No completion
//! is lost or sent twice.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use control_tower::{
    pb::{
        self,
        complete_task_result::Outcome,
        worker_service_server::{WorkerService, WorkerServiceServer},
    },
    worker::{self, NoopHandler, WorkerConfig},
};
use tokio_stream::{Stream, wrappers::TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};

const TASKS: usize = 16;

#[derive(Clone, Copy, PartialEq)]
enum Groups {
    /// CompleteTasks is UNIMPLEMENTED.
    Refused,
    /// Lease `i` of a group gets a task, an INTERNAL error or a FAILED_PRECONDITION, by `i % 3`.
    PartlyFailed,
}

/// A WorkerService that pushes `TASKS` assignments at once and records every completion.
#[derive(Clone)]
struct FakeServer {
    groups: Groups,
    /// lease id -> CompleteTask calls for it.
    completed: Arc<Mutex<HashMap<String, usize>>>,
    /// lease id -> the code a CompleteTasks call answered it with (OK for a task).
    grouped: Arc<Mutex<HashMap<String, Code>>>,
    /// CompleteTasks calls refused.
    batches_refused: Arc<Mutex<usize>>,
}

impl FakeServer {
    fn new(groups: Groups) -> Self {
        Self { groups, completed: Arc::default(), grouped: Arc::default(), batches_refused: Arc::default() }
    }
}

fn index_of(lease_id: &str) -> usize {
    lease_id.trim_start_matches("lease-").parse().unwrap()
}

fn completed_task(lease_id: &str) -> pb::Task {
    pb::Task { id: lease_id.replace("lease-", "task-"), status: pb::TaskStatus::Completed.into(), ..Default::default() }
}

type Assignments = Pin<Box<dyn Stream<Item = Result<pb::PullTasksResponse, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for FakeServer {
    type PullTasksStream = Assignments;

    async fn pull_tasks(&self, _: Request<pb::PullTasksRequest>) -> Result<Response<Assignments>, Status> {
        let assignments = (0..TASKS).map(|i| {
            let task = pb::Task { id: format!("task-{i}"), ..Default::default() };
            let assignment = pb::TaskAssignment {
                task: Some(task),
                lease_id: format!("lease-{i}"),
                attempt: 1,
                ..Default::default()
            };
            Ok(pb::PullTasksResponse { event: Some(pb::pull_tasks_response::Event::Assignment(assignment)) })
        });
        // The stream stays open after the assignments, as a server's does.
        let stream = tokio_stream::StreamExt::chain(
            tokio_stream::iter(assignments.collect::<Vec<_>>()),
            tokio_stream::pending(),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn heartbeat(&self, _: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(pb::HeartbeatResponse::default()))
    }

    async fn complete_task(&self, request: Request<pb::CompleteTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let lease_id = request.into_inner().lease_id;
        let calls_before: usize = {
            let mut completed = self.completed.lock().unwrap();
            let before = completed.values().sum();
            *completed.entry(lease_id.clone()).or_default() += 1;
            before
        };
        if calls_before < 2 {
            // The others finish while the worker's two calls are on their way, so it gathers them into a group.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(Response::new(completed_task(&lease_id)))
    }

    async fn complete_tasks(
        &self,
        request: Request<pb::CompleteTasksRequest>,
    ) -> Result<Response<pb::CompleteTasksResponse>, Status> {
        if self.groups == Groups::Refused {
            *self.batches_refused.lock().unwrap() += 1;
            return Err(Status::unimplemented("unknown method CompleteTasks"));
        }
        let mut grouped = self.grouped.lock().unwrap();
        let results = request
            .into_inner()
            .requests
            .into_iter()
            .map(|item| {
                let (code, outcome) = match index_of(&item.lease_id) % 3 {
                    0 => (Code::Ok, Outcome::Task(completed_task(&item.lease_id))),
                    1 => (Code::Internal, Outcome::Error(error(Code::Internal, "database: deadlock detected"))),
                    _ => (Code::FailedPrecondition, Outcome::Error(error(Code::FailedPrecondition, "LEASE_NOT_HELD"))),
                };
                grouped.insert(item.lease_id, code);
                pb::CompleteTaskResult { outcome: Some(outcome) }
            })
            .collect();
        Ok(Response::new(pb::CompleteTasksResponse { results }))
    }

    async fn fail_task(&self, _: Request<pb::FailTaskRequest>) -> Result<Response<pb::Task>, Status> {
        Err(Status::internal("no task fails here"))
    }

    async fn push_trace(
        &self,
        _: Request<Streaming<pb::TraceChunk>>,
    ) -> Result<Response<pb::PushTraceResponse>, Status> {
        Err(Status::internal("the no-op handler logs nothing"))
    }
}

fn error(code: Code, message: &str) -> pb::ItemError {
    pb::ItemError { code: code as i32, message: message.into(), ..Default::default() }
}

/// Runs a no-op worker against `server` until `done` says so, then stops it.
async fn run_worker(server: &FakeServer, done: impl Fn(&FakeServer) -> bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(WorkerServiceServer::new(server.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let config = WorkerConfig {
        server: format!("http://{addr}"),
        worker_id: "grouping-worker".into(),
        concurrency: TASKS,
        prefetch: 0,
        operations: vec![],
        shutdown_grace: Duration::from_secs(5),
        token: None,
        tls: Default::default(),
    };
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(worker::run(config, Arc::new(NoopHandler), stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(server) {
        assert!(tokio::time::Instant::now() < deadline, "the worker did not settle every task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Time for a completion that should not be sent to show up if it were.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    daemon.await.unwrap().unwrap();
    serving.abort();
}

#[tokio::test]
async fn completions_fall_back_to_one_by_one_without_complete_tasks() {
    let server = FakeServer::new(Groups::Refused);
    run_worker(&server, |s| s.completed.lock().unwrap().len() == TASKS).await;
    let completed = server.completed.lock().unwrap().clone();
    for i in 0..TASKS {
        assert_eq!(completed.get(&format!("lease-{i}")), Some(&1), "lease-{i} completed exactly once");
    }
    // The group was offered as CompleteTasks once; after UNIMPLEMENTED the worker stopped asking.
    assert_eq!(*server.batches_refused.lock().unwrap(), 1);
}

#[tokio::test]
async fn items_of_a_group_with_transient_errors_are_completed_again_alone() {
    let server = FakeServer::new(Groups::PartlyFailed);
    // Settled: every lease answered with a task, a lasting error, or completed alone.
    let settled = |s: &FakeServer| {
        let (grouped, completed) = (s.grouped.lock().unwrap(), s.completed.lock().unwrap());
        (0..TASKS).map(|i| format!("lease-{i}")).all(|lease| {
            completed.contains_key(&lease) || matches!(grouped.get(&lease), Some(Code::Ok | Code::FailedPrecondition))
        })
    };
    run_worker(&server, settled).await;
    let (grouped, completed) = (server.grouped.lock().unwrap().clone(), server.completed.lock().unwrap().clone());
    for i in 0..TASKS {
        let lease = format!("lease-{i}");
        let alone = completed.get(&lease).copied().unwrap_or(0);
        match grouped.get(&lease) {
            // A transient error in the group, or never in a group: completed alone, once.
            Some(Code::Internal) | None => assert_eq!(alone, 1, "{lease} completed alone once"),
            // Completed in the group, or refused for good: not sent again.
            Some(code) => assert_eq!(alone, 0, "{lease} ({code:?} in its group) was sent again"),
        }
    }
    let codes: Vec<Code> = grouped.values().copied().collect();
    for code in [Code::Ok, Code::Internal, Code::FailedPrecondition] {
        assert!(codes.contains(&code), "no item of a group was answered {code:?}: {grouped:?}");
    }
}
