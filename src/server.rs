//! Assembling and running the server: connect and migrate, build the shared state, serve the gRPC services with
//! health and reflection, and shut down in order.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    api::{AuditServiceImpl, CwomServiceImpl, TaskServiceImpl, WorkerServiceImpl},
    auth::{AuthLayer, Authenticator},
    clock::SharedClock,
    config::{Limits, ServerConfig, TlsFiles},
    dispatch::{Completions, Dispatcher, Intake, spawn_listener, spawn_maintenance},
    limits::{EnqueueLimiter, StreamQuota},
    metrics::{self, RpcMetricsLayer},
    pb::{
        self, audit_service_server::AuditServiceServer, cwom_service_server::CwomServiceServer,
        task_service_server::TaskServiceServer, worker_service_server::WorkerServiceServer,
    },
    spec::{Policy, policy::ALLOWED_REPO_PREFIXES_VAR},
    store::{
        audit::Actor,
        audit_chain, db,
        single_server::{self, SqliteServerLock},
    },
    trace::TraceStore,
};

/// What every request handler shares.
pub struct AppState {
    pub db: DatabaseConnection,
    pub clock: SharedClock,
    pub policy: Policy,
    pub dispatcher: Arc<Dispatcher>,
    /// Group commit of CompleteTask.
    pub completions: Completions,
    /// Group commit of EnqueueTask.
    pub intake: Intake,
    pub traces: TraceStore,
    pub default_max_attempts: i32,
    /// Recorded as the actor of operator calls.
    pub operator: Actor,
    /// Cancelled when the server starts shutting down: long-lived watch streams end on it.
    pub shutting_down: CancellationToken,
    /// Bearer tokens; `None` when auth is off.
    pub authenticator: Option<Arc<Authenticator>>,
    pub limits: Limits,
    /// Open streams per identity.
    pub streams: StreamQuota,
    /// Enqueue rate per identity; `None` when unlimited.
    pub enqueue_limiter: Option<EnqueueLimiter>,
    /// Where /metrics is served, when it is.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Services whose health is reported besides the server as a whole ("").
const SERVICES: [&str; 4] = [
    "controltower.v1.TaskService",
    "controltower.v1.WorkerService",
    "controltower.v1.CwomService",
    "controltower.v1.AuditService",
];
/// How often the health loop checks that the database answers.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// HTTP/2 flow control for what clients send: a trace upload (PushTrace, chunks of up to a MiB or more) may run up
/// to two MiB ahead of the server on one stream and four on one connection, which bounds what a connection can make
/// the server buffer; the defaults (1 MiB each) held an upload to about one chunk at a time. Frames of up to 1 MiB
/// let a chunk cross in one frame instead of sixty-four. Measured in BENCHMARKS.md (trace ingest).
const H2_STREAM_WINDOW: u32 = 2 << 20;
const H2_CONNECTION_WINDOW: u32 = 4 << 20;
const H2_MAX_FRAME: u32 = 1 << 20;

pub struct Server {
    state: Arc<AppState>,
    drain_timeout: Duration,
    keepalive: (Duration, Duration),
    database_url: String,
    tls: Option<TlsFiles>,
    token_reload_interval: Duration,
    audit_seal_interval: Duration,
    /// Where the audit sealer reads (see `db::connect_reader`).
    audit_reader: DatabaseConnection,
    metrics_listener: Option<TcpListener>,
    /// On SQLite, the lock that keeps a second server off the same database.
    _sqlite_lock: Option<SqliteServerLock>,
}

impl Server {
    /// Connects to the database, applies pending migrations and prepares the trace root.
    pub async fn build(config: ServerConfig, clock: SharedClock) -> anyhow::Result<Self> {
        let sqlite_lock = single_server::lock(&config.database_url)?;
        let db = db::connect(&config.database_url, config.db_max_connections)
            .await
            .context("could not connect to the database")?;
        db::migrate_up(&db).await.context("could not apply the database migrations")?;
        db::prepare_writer(&db).await.context("could not set up the database connection")?;
        let traces = TraceStore::open(&config.trace_root, config.trace_limits)
            .with_context(|| format!("could not create the trace root {}", config.trace_root.display()))?;
        if config.policy.allowed_repo_prefixes().is_empty() {
            tracing::warn!(
                "{ALLOWED_REPO_PREFIXES_VAR} is not set: every repository is denied and EnqueueTask will refuse all \
                 tasks (REPO_NOT_ALLOWED). Set it to comma-separated prefixes, e.g. {ALLOWED_REPO_PREFIXES_VAR}=acme/"
            );
        }
        tracing::info!(
            backend = db::backend_name(&db),
            trace_root = %traces.root().display(),
            allowed_repo_prefixes = ?config.policy.allowed_repo_prefixes(),
            "database migrated"
        );
        let authenticator = if config.tokens.is_configured() {
            let authenticator = Authenticator::load(config.tokens.clone())
                .map_err(|e| anyhow::anyhow!("could not load the token table: {e}"))?;
            tracing::info!(identities = authenticator.identities(), "auth on: every call needs a bearer token");
            Some(authenticator)
        } else {
            tracing::warn!("auth is off: any caller that reaches the server may do anything");
            None
        };
        let metrics_listener = match config.metrics_addr {
            Some(addr) => {
                Some(TcpListener::bind(addr).await.with_context(|| format!("could not listen for metrics on {addr}"))?)
            }
            None => None,
        };
        let claim_db =
            db::connect_claims(&config.database_url, &db).await.context("could not connect to the database")?;
        let audit_reader =
            db::connect_reader(&config.database_url, &db).await.context("could not connect to the database")?;
        let dispatcher = Dispatcher::new(db.clone(), claim_db, clock.clone(), traces.clone(), config.dispatch.clone());
        let completions = Completions::spawn(db.clone(), clock.clone(), dispatcher.clone());
        let intake = Intake::spawn(db.clone(), clock.clone(), dispatcher.clone());
        let state = Arc::new(AppState {
            db,
            completions,
            intake,
            clock,
            policy: config.policy,
            dispatcher,
            traces,
            default_max_attempts: config.default_max_attempts,
            operator: Actor::new("human", config.operator_id),
            shutting_down: CancellationToken::new(),
            authenticator,
            streams: StreamQuota::new(config.limits.max_streams_per_identity),
            enqueue_limiter: config
                .limits
                .enqueue_rate
                .map(|rate| EnqueueLimiter::new(rate, config.limits.enqueue_burst)),
            limits: config.limits,
            metrics_addr: metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
        });
        Ok(Self {
            state,
            drain_timeout: config.drain_timeout,
            keepalive: (config.keepalive_interval, config.keepalive_timeout),
            database_url: config.database_url,
            tls: config.tls,
            token_reload_interval: config.token_reload_interval,
            audit_seal_interval: config.audit_seal_interval,
            audit_reader,
            metrics_listener,
            _sqlite_lock: sqlite_lock,
        })
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` resolves, then: health NOT_SERVING, no new leases, drain held leases (bounded by
    /// the drain timeout), stop background loops, stop the transport.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let state = self.state;
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;

        let loops = CancellationToken::new();
        let health_stop = CancellationToken::new();
        let maintenance = spawn_maintenance(state.dispatcher.clone(), loops.clone());
        let listener_loop = spawn_listener(state.dispatcher.clone(), self.database_url.clone(), loops.clone());
        let health_loop = spawn_health_loop(state.db.clone(), health.clone(), health_stop.clone());
        let sealer = spawn_sealer(state.db.clone(), self.audit_reader.clone(), self.audit_seal_interval, loops.clone());

        if let Some(listener) = self.metrics_listener {
            metrics::spawn_exporter(listener, state.clone(), loops.clone());
        }
        if let Some(authenticator) = &state.authenticator {
            authenticator.spawn_reloader(self.token_reload_interval, loops.clone());
        }

        let transport_stop = CancellationToken::new();
        let local_addr = listener.local_addr()?;
        let mut builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(self.keepalive.0))
            .http2_keepalive_timeout(Some(self.keepalive.1))
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_frame_size(H2_MAX_FRAME);
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls_config(tls)?).context("the TLS configuration was refused")?;
        }
        let max = state.limits.max_message_bytes;
        let router = builder
            .layer(RpcMetricsLayer)
            .layer(AuthLayer::new(state.authenticator.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(TaskServiceServer::new(TaskServiceImpl::new(state.clone())).max_decoding_message_size(max))
            .add_service(WorkerServiceServer::new(WorkerServiceImpl::new(state.clone())).max_decoding_message_size(max))
            .add_service(CwomServiceServer::new(CwomServiceImpl::new(state.clone())).max_decoding_message_size(max))
            .add_service(AuditServiceServer::new(AuditServiceImpl::new(state.clone())).max_decoding_message_size(max));
        let stop = transport_stop.clone();
        let mut transport = tokio::spawn(async move {
            // TCP_NODELAY on every accepted connection: the builder's own setting only covers listeners it binds,
            // and without it a response split over two writes waits for the peer's delayed ACK (~40 ms).
            let incoming =
                TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(Duration::from_secs(60)));
            router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await
        });
        tracing::info!(%local_addr, tls = self.tls.is_some(), "serving");

        tokio::select! {
            _ = shutdown => {}
            result = &mut transport => {
                loops.cancel();
                health_stop.cancel();
                return result?.context("the gRPC transport stopped");
            }
        }

        tracing::info!("shutting down: draining worker streams");
        health_stop.cancel();
        state.shutting_down.cancel();
        let _ = health_loop.await;
        set_health(&health, ServingStatus::NotServing).await;
        state.dispatcher.drain(self.drain_timeout).await;
        loops.cancel();
        let _ = maintenance.await;
        let _ = sealer.await;
        // What the drain wrote is chained before the server goes.
        if let Err(err) = audit_chain::seal_all(&state.db).await {
            tracing::warn!(error = %err, "could not seal the last audit entries; the next server start seals them");
        }
        if let Some(listener_loop) = listener_loop {
            let _ = listener_loop.await;
        }
        transport_stop.cancel();
        match tokio::time::timeout(Duration::from_secs(10), transport).await {
            Ok(result) => result?.context("the gRPC transport failed while stopping")?,
            Err(_) => tracing::warn!("open connections did not close in time"),
        }
        state.db.clone().close().await.ok();
        tracing::info!("stopped");
        Ok(())
    }
}

/// The server's certificate and key, and, for mutual TLS, the CAs that sign client certificates.
fn tls_config(files: &TlsFiles) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let read =
        |path: &std::path::Path| std::fs::read(path).with_context(|| format!("could not read {}", path.display()));
    let identity = tonic::transport::Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for service in SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Chains new audit entries every `interval` until `stop`.
fn spawn_sealer(
    db: DatabaseConnection,
    reader: DatabaseConnection,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(err) = audit_chain::seal_all_reading(&db, &reader).await {
                tracing::warn!(error = %err, "audit sealing failed; retrying");
            }
        }
    })
}

/// SERVING while the database answers, NOT_SERVING while it does not.
fn spawn_health_loop(
    db: DatabaseConnection,
    health: HealthReporter,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut serving = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(HEALTH_CHECK_INTERVAL) => {}
            }
            let ok = db.ping().await.is_ok();
            if ok != serving {
                serving = ok;
                if ok {
                    tracing::info!("database answers again: SERVING");
                    set_health(&health, ServingStatus::Serving).await;
                } else {
                    tracing::error!("database does not answer: NOT_SERVING");
                    set_health(&health, ServingStatus::NotServing).await;
                }
            }
        }
    })
}
