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

use std::{path::PathBuf, time::Duration};

use anyhow::Context;

use tonic::{
    Request, Status, Streaming,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
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

impl BearerToken {
    pub fn new(token: Option<&str>) -> Result<Self, Status> {
        let value = token
            .map(|token| {
                MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| Status::invalid_argument("token: must be printable ASCII"))
            })
            .transpose()?;
        Ok(Self(value))
    }
}

/// A channel to the server with the bearer token on every call.
pub type Authed = InterceptedService<Channel, BearerToken>;

/// TLS settings of a client, for `https://` servers. Without `ca`, the server's certificate must chain to a
/// well-known root; `cert` and `key` present a client certificate (mutual TLS).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTls {
    /// PEM CA certificates that sign the server's certificate.
    #[arg(long = "tls-ca", env = "JCT_TLS_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS.
    #[arg(long = "tls-client-cert", env = "JCT_TLS_CLIENT_CERT", requires = "key", global = true)]
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long = "tls-client-key", env = "JCT_TLS_CLIENT_KEY", requires = "cert", global = true)]
    pub key: Option<PathBuf>,
}

/// An endpoint for `target`, with TLS for `https://` targets.
pub fn endpoint(target: impl Into<String>, tls: &ClientTls) -> anyhow::Result<Endpoint> {
    let target = target.into();
    let mut endpoint = Endpoint::from_shared(target.clone())
        .with_context(|| format!("{target:?} is not a server address (e.g. http://127.0.0.1:50051)"))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if target.starts_with("https://") {
        let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("could not read {}", path.display()));
        let mut config = ClientTlsConfig::new();
        config = match &tls.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => config.with_webpki_roots(),
        };
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(config).context("the TLS configuration was refused")?;
    }
    Ok(endpoint)
}

#[derive(Clone)]
pub struct ControlTower {
    channel: Channel,
    token: BearerToken,
}

impl ControlTower {
    /// Connects to a server, e.g. `http://127.0.0.1:50051`.
    pub async fn connect(target: impl Into<String>) -> anyhow::Result<Self> {
        Self::connect_tls(target, &ClientTls::default()).await
    }

    /// Connects to a server, with TLS for an `https://` target.
    pub async fn connect_tls(target: impl Into<String>, tls: &ClientTls) -> anyhow::Result<Self> {
        let target = target.into();
        let channel =
            endpoint(target.clone(), tls)?.connect().await.with_context(|| format!("could not reach {target}"))?;
        Ok(Self { channel, token: BearerToken::default() })
    }

    /// Sends `token` as a bearer token with every call.
    pub fn with_token(mut self, token: &str) -> Result<Self, Status> {
        self.token = BearerToken::new(Some(token))?;
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
