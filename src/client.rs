//! A small client API for Rust agents and tools: one connection, the generated clients of every service, and the
//! common task calls. The operator CLI is built on it.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use control_tower::{client::ControlTower, pb};
//! let tower = ControlTower::connect("http://127.0.0.1:50051").await?;
//! let spec: pb::TaskSpec = serde_json::from_str(r#"{"objective": "Say hello", "operation": "ops",
//!     "target": {"repo": "acme/app"}, "requested_by": {"kind": "agent", "id": "me"}}"#)?;
//! let enqueued = tower.enqueue(spec, None).await?;
//! let task = tower.get(&enqueued.task.unwrap_or_default().id).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use tonic::{
    Request, Status, Streaming,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::pb::{
    self, audit_service_client::AuditServiceClient, cwom_service_client::CwomServiceClient,
    task_service_client::TaskServiceClient, worker_service_client::WorkerServiceClient,
};

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone, Default)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, BearerToken>;

#[derive(Clone)]
pub struct ControlTower {
    channel: Channel,
    token: BearerToken,
}

impl ControlTower {
    /// Connects to a server, e.g. `http://127.0.0.1:50051`.
    pub async fn connect(target: impl Into<String>) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(target.into())?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect()
            .await?;
        Ok(Self { channel, token: BearerToken::default() })
    }

    /// Sends `token` as a bearer token with every call.
    pub fn with_token(mut self, token: &str) -> Result<Self, Status> {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::invalid_argument("token: must be printable ASCII"))?;
        self.token = BearerToken(Some(value));
        Ok(self)
    }

    pub fn tasks(&self) -> TaskServiceClient<Authed> {
        TaskServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    pub fn workers(&self) -> WorkerServiceClient<Authed> {
        WorkerServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    pub fn cwom(&self) -> CwomServiceClient<Authed> {
        CwomServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    pub fn audit(&self) -> AuditServiceClient<Authed> {
        AuditServiceClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    /// Enqueues one task; `trace_id` becomes its `x-trace-id` (the server makes one when absent).
    pub async fn enqueue(&self, spec: pb::TaskSpec, trace_id: Option<&str>) -> Result<pb::EnqueueTaskResponse, Status> {
        self.enqueue_request(pb::EnqueueTaskRequest { spec: Some(spec), create_cwom: false }, trace_id).await
    }

    /// Enqueues one task with every option of the request (e.g. `create_cwom`).
    pub async fn enqueue_request(
        &self,
        request: pb::EnqueueTaskRequest,
        trace_id: Option<&str>,
    ) -> Result<pb::EnqueueTaskResponse, Status> {
        Ok(self.tasks().enqueue_task(with_trace_id(request, trace_id)?).await?.into_inner())
    }

    /// Enqueues a batch; each item succeeds or fails on its own.
    pub async fn enqueue_many(
        &self,
        requests: Vec<pb::EnqueueTaskRequest>,
        trace_id: Option<&str>,
    ) -> Result<pb::EnqueueTasksResponse, Status> {
        let request = with_trace_id(pb::EnqueueTasksRequest { requests }, trace_id)?;
        Ok(self.tasks().enqueue_tasks(request).await?.into_inner())
    }

    pub async fn get(&self, id: &str) -> Result<pb::Task, Status> {
        Ok(self.tasks().get_task(pb::GetTaskRequest { id: id.to_owned() }).await?.into_inner())
    }

    pub async fn list(&self, request: pb::ListTasksRequest) -> Result<pb::ListTasksResponse, Status> {
        Ok(self.tasks().list_tasks(request).await?.into_inner())
    }

    pub async fn cancel(&self, id: &str, reason: &str) -> Result<pb::Task, Status> {
        let request = pb::CancelTaskRequest { id: id.to_owned(), reason: reason.to_owned() };
        Ok(self.tasks().cancel_task(request).await?.into_inner())
    }

    /// Task transitions as they happen (or from `cursor` on).
    pub async fn watch(&self, request: pb::WatchTasksRequest) -> Result<Streaming<pb::TaskEvent>, Status> {
        Ok(self.tasks().watch_tasks(request).await?.into_inner())
    }
}

fn with_trace_id<T>(message: T, trace_id: Option<&str>) -> Result<Request<T>, Status> {
    let mut request = Request::new(message);
    if let Some(trace_id) = trace_id {
        let value = MetadataValue::try_from(trace_id)
            .map_err(|_| Status::invalid_argument("x-trace-id: must be printable ASCII"))?;
        request.metadata_mut().insert("x-trace-id", value);
    }
    Ok(request)
}
