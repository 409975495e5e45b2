//! The worker daemon against a server that has no CompleteTasks (an older release): completions that were
//! gathered into a group fall back to one CompleteTask each, and none is lost or sent twice.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use control_tower::{
    pb::{
        self,
        worker_service_server::{WorkerService, WorkerServiceServer},
    },
    worker::{self, NoopHandler, WorkerConfig},
};
use tokio_stream::{Stream, wrappers::TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

const TASKS: usize = 16;

/// A WorkerService without CompleteTasks: it pushes `TASKS` assignments at once and records every call.
#[derive(Default, Clone)]
struct OlderServer {
    /// lease id -> CompleteTask calls for it.
    completed: Arc<Mutex<HashMap<String, usize>>>,
    /// CompleteTasks calls refused.
    batches_refused: Arc<Mutex<usize>>,
}

type Assignments = Pin<Box<dyn Stream<Item = Result<pb::PullTasksResponse, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for OlderServer {
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
        let first = {
            let mut completed = self.completed.lock().unwrap();
            *completed.entry(lease_id.clone()).or_default() += 1;
            completed.len() == 1
        };
        if first {
            // The others finish while this call is on its way, so the worker gathers them into a group.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let id = lease_id.replace("lease-", "task-");
        Ok(Response::new(pb::Task { id, status: pb::TaskStatus::Completed.into(), ..Default::default() }))
    }

    async fn complete_tasks(
        &self,
        _: Request<pb::CompleteTasksRequest>,
    ) -> Result<Response<pb::CompleteTasksResponse>, Status> {
        *self.batches_refused.lock().unwrap() += 1;
        Err(Status::unimplemented("unknown method CompleteTasks"))
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

#[tokio::test]
async fn completions_fall_back_to_one_by_one_without_complete_tasks() {
    let server = OlderServer::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(WorkerServiceServer::new(server.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let config = WorkerConfig {
        server: format!("http://{addr}"),
        worker_id: "older-server-worker".into(),
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
    while server.completed.lock().unwrap().len() < TASKS {
        assert!(tokio::time::Instant::now() < deadline, "not every task was completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    daemon.await.unwrap().unwrap();
    serving.abort();

    let completed = server.completed.lock().unwrap().clone();
    for i in 0..TASKS {
        assert_eq!(completed.get(&format!("lease-{i}")), Some(&1), "lease-{i} completed exactly once");
    }
    // The group was offered as CompleteTasks once; after UNIMPLEMENTED the worker stopped asking.
    assert_eq!(*server.batches_refused.lock().unwrap(), 1);
}
