//! The worker daemon: connects to a server, pulls tasks over one PullTasks stream, runs each with a [`Handler`],
//! streams its log, heartbeats its leases, and settles each task. It reconnects with backoff when the server goes
//! away, and on shutdown stops taking work, lets running tasks finish within a grace period, then releases the
//! rest by closing its stream.

mod complete;
pub mod exec;
pub mod handler;
mod upload;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, transport::Endpoint};

pub use exec::ExecHandler;
pub use handler::{BoxFuture, EchoHandler, Handler, LogSink, NoopHandler, Outcome, TaskContext};

use crate::{
    client::{self, Authed, BearerToken, ClientTls},
    json::json_to_struct,
    pb::{self, pull_tasks_response::Event, worker_service_client::WorkerServiceClient},
    worker::complete::Completer,
};

/// The worker's client: every call carries its bearer token.
type Client = WorkerServiceClient<Authed>;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub server: String,
    pub worker_id: String,
    pub concurrency: usize,
    /// Tasks leased beyond the concurrency, waiting here for a free slot (a local queue). They are heartbeated like
    /// running tasks, withdrawn ones never start, and on shutdown they run within the grace period like the rest
    /// of what the worker holds. Zero: the server sends a task only when a slot is free.
    pub prefetch: usize,
    /// Empty means every operation.
    pub operations: Vec<String>,
    pub shutdown_grace: Duration,
    /// Sent as a bearer token with every call.
    pub token: Option<String>,
    pub tls: ClientTls,
}

/// Heartbeat period until the server tells us its lease timeout.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// How long a finished task keeps trying to reach the server with its result (the lease is heartbeated meanwhile).
const SETTLE_DEADLINE: Duration = Duration::from_secs(300);
/// Per-call timeout of settle calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a finished task waits for its log upload before settling without it.
const UPLOAD_DEADLINE: Duration = Duration::from_secs(120);

/// `HOSTNAME-PID`, the default worker id.
pub fn default_worker_id() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let host = if ok {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end])
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect()
    } else {
        String::new()
    };
    let host = if host.is_empty() { "worker".to_owned() } else { host };
    format!("{host}-{}", std::process::id())
}

/// Runs until `shutdown` is cancelled, reconnecting whenever the server goes away.
pub async fn run(config: WorkerConfig, handler: Arc<dyn Handler>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let token = BearerToken::new(config.token.as_deref())?;
    let endpoint = client::endpoint(config.server.clone(), &config.tls)?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let mut delay = RECONNECT_MIN;
    loop {
        let outcome = session(&config, &endpoint, &token, &handler, &shutdown).await;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match outcome {
            Ok(()) => {
                delay = RECONNECT_MIN;
                tracing::info!(server = %config.server, "the server closed the stream; reconnecting");
            }
            Err(status) => {
                tracing::warn!(server = %config.server, error = %status, ?delay, "not connected; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(jittered(delay)) => {}
        }
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(0.8 + fastrand::f64() * 0.4)
}

/// Leases this worker is running, and how to stop each.
type Running = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// One connection, until its stream ends. Ok means the stream was established (so the reconnect backoff resets).
async fn session(
    config: &WorkerConfig,
    endpoint: &Endpoint,
    token: &BearerToken,
    handler: &Arc<dyn Handler>,
    shutdown: &CancellationToken,
) -> Result<(), Status> {
    let channel = endpoint.connect().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let client = WorkerServiceClient::with_interceptor(channel, token.clone());
    let request = pb::PullTasksRequest {
        worker_id: config.worker_id.clone(),
        operations: config.operations.clone(),
        max_in_flight: i32::try_from(config.concurrency.max(1) + config.prefetch).unwrap_or(i32::MAX),
    };
    let mut stream = client.clone().pull_tasks(request).await?.into_inner();
    let completer = Completer::spawn(client.clone());
    tracing::info!(
        server = %config.server,
        worker_id = %config.worker_id,
        concurrency = config.concurrency,
        prefetch = config.prefetch,
        "connected"
    );

    // Every task held, running or waiting for a slot: all of them are heartbeated.
    let running: Running = Arc::default();
    // The stream holds up to concurrency + prefetch tasks; the semaphore lets `concurrency` of them run, in the
    // order they arrived (it is fair). It also keeps a withdrawn lease's handler, which takes a moment to stop,
    // from running beside the task that took its slot.
    let slots = Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1)));
    let draining = Arc::new(AtomicBool::new(false));
    let session_over = CancellationToken::new();
    // Watched, so that a lease timeout shorter than the default period shortens the sleep already begun.
    let (heartbeat_every, every) = tokio::sync::watch::channel(DEFAULT_HEARTBEAT);
    let heartbeats = tokio::spawn(heartbeat_loop(
        client.clone(),
        config.worker_id.clone(),
        running.clone(),
        draining.clone(),
        every,
        session_over.clone(),
    ));
    let mut tasks = JoinSet::new();
    // Withdrawals that overtook their assignment on the stream; such an assignment is never started.
    let mut withdrawn_unseen: std::collections::HashSet<String> = std::collections::HashSet::new();

    let ended = loop {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(pb::PullTasksResponse { event: Some(Event::Assignment(assignment)) })) => {
                    if withdrawn_unseen.remove(&assignment.lease_id) {
                        continue;
                    }
                    if let Some(timeout) = assignment.lease_timeout.and_then(|d| Duration::try_from(d).ok()) {
                        let period = (timeout / 3).max(Duration::from_millis(100));
                        heartbeat_every.send_if_modified(|every| std::mem::replace(every, period) != period);
                    }
                    let cancel = CancellationToken::new();
                    if let Ok(mut running) = running.lock() {
                        running.insert(assignment.lease_id.clone(), cancel.clone());
                    }
                    // Boxed: the task's state machine is large, and a future is moved by copying it whole,
                    // several times on its way into the task set; a box moves as a pointer.
                    let job = Box::pin(run_task(
                        client.clone(),
                        completer.clone(),
                        handler.clone(),
                        assignment,
                        cancel,
                        config.worker_id.clone(),
                        slots.clone(),
                    ));
                    let running = running.clone();
                    tasks.spawn(async move {
                        let lease_id = job.await;
                        if let Ok(mut running) = running.lock() {
                            running.remove(&lease_id);
                        }
                    });
                }
                Ok(Some(pb::PullTasksResponse { event: Some(Event::Cancelled(cancelled)) })) => {
                    tracing::info!(task_id = %cancelled.task_id, reason = %cancelled.reason, "lease withdrawn");
                    if !stop_lease(&running, &cancelled.lease_id) && withdrawn_unseen.len() < 10_000 {
                        withdrawn_unseen.insert(cancelled.lease_id);
                    }
                }
                Ok(Some(pb::PullTasksResponse { event: Some(Event::Draining(_)) })) => {
                    tracing::info!("the server is draining; finishing what we hold");
                }
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(status) => break Err(status),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.cancelled() => {
                draining.store(true, Ordering::SeqCst);
                finish_running(&mut tasks, &running, config.shutdown_grace, &client, &config.worker_id).await;
                break Ok(());
            }
        }
    };

    // Without the stream the server takes our leases back: stop whatever still runs.
    session_over.cancel();
    for cancel in running.lock().map(|r| r.values().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        cancel.cancel();
    }
    drop(stream);
    while tasks.join_next().await.is_some() {}
    let _ = heartbeats.await;
    // A stream that broke after it was established still counts as a connection.
    if let Err(status) = ended {
        tracing::warn!(%status, "the task stream broke");
    }
    Ok(())
}

/// Stops the task holding `lease_id`; false if no task holds it (yet).
fn stop_lease(running: &Running, lease_id: &str) -> bool {
    match running.lock().ok().and_then(|r| r.get(lease_id).cloned()) {
        Some(cancel) => {
            cancel.cancel();
            true
        }
        None => false,
    }
}

/// On shutdown: tell the server to send nothing new, give running tasks the grace period, then stop the rest.
async fn finish_running(tasks: &mut JoinSet<()>, running: &Running, grace: Duration, client: &Client, worker_id: &str) {
    let held: Vec<String> = running.lock().map(|r| r.keys().cloned().collect()).unwrap_or_default();
    let request = pb::HeartbeatRequest { worker_id: worker_id.to_owned(), lease_ids: held, draining: true };
    if let Err(status) = client.clone().heartbeat(request).await {
        tracing::warn!(%status, "could not tell the server we are draining");
    }
    tracing::info!(running = tasks.len(), ?grace, "shutting down: letting running tasks finish");
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        tracing::warn!("grace period over: stopping the remaining tasks; the server will redeliver them");
    }
}

async fn heartbeat_loop(
    mut client: Client,
    worker_id: String,
    running: Running,
    draining: Arc<AtomicBool>,
    mut every: tokio::sync::watch::Receiver<Duration>,
    stop: CancellationToken,
) {
    let mut last_beat = tokio::time::Instant::now();
    loop {
        let due = last_beat + *every.borrow_and_update();
        tokio::select! {
            _ = stop.cancelled() => return,
            // A new period: the next beat is due one new period after the last one.
            changed = every.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
            _ = tokio::time::sleep_until(due) => {}
        }
        last_beat = tokio::time::Instant::now();
        let lease_ids: Vec<String> = running.lock().map(|r| r.keys().cloned().collect()).unwrap_or_default();
        if lease_ids.is_empty() {
            continue;
        }
        let request =
            pb::HeartbeatRequest { worker_id: worker_id.clone(), lease_ids, draining: draining.load(Ordering::SeqCst) };
        match client.heartbeat(request).await {
            Ok(response) => {
                let response = response.into_inner();
                for lease in response.lost.iter().chain(&response.cancelled) {
                    tracing::warn!(lease_id = %lease, "lease no longer held; stopping its task");
                    stop_lease(&running, lease);
                }
            }
            Err(status) => tracing::warn!(%status, "heartbeat failed"),
        }
    }
}

/// Runs one task to its end and settles it; returns its lease id.
/// Runs one task inside a span carrying its task id and trace id, so that every log line about it (JSON logs
/// included) can be found by either.
#[tracing::instrument(
    name = "task",
    skip_all,
    fields(
        task_id = assignment.task.as_ref().map_or("", |t| t.id.as_str()),
        trace_id = assignment.task.as_ref().map_or("", |t| t.trace_id.as_str()),
        attempt = assignment.attempt,
    )
)]
async fn run_task(
    client: Client,
    completer: Completer,
    handler: Arc<dyn Handler>,
    assignment: pb::TaskAssignment,
    cancel: CancellationToken,
    worker_id: String,
    slots: Arc<tokio::sync::Semaphore>,
) -> String {
    let lease_id = assignment.lease_id;
    let Some(task) = assignment.task else { return lease_id };
    let slot = tokio::select! {
        permit = slots.acquire_owned() => match permit {
            Ok(permit) => permit,
            Err(_) => return lease_id,
        },
        _ = cancel.cancelled() => return lease_id,
    };
    let task_id = task.id.clone();
    let trace_id = task.trace_id.clone();
    let (log, lines) = LogSink::new();
    let header = format!("[control-tower] task {task_id} attempt {} on worker {worker_id}", assignment.attempt);
    let upload = tokio::spawn(upload::upload_log(client.clone(), lease_id.clone(), header, lines));
    let abort = upload.abort_handle();
    tracing::info!(task_id = %task_id, trace_id = %task.trace_id, attempt = assignment.attempt, "task started");

    let ctx = TaskContext { log: log.clone(), cancelled: cancel.clone(), worker_id };
    // In a task of its own, so that a panicking handler fails its task instead of leaving it running.
    let outcome = match tokio::spawn(handler.handle(task, ctx)).await {
        Ok(outcome) => outcome,
        Err(err) => Outcome::Failed { error: format!("the handler panicked: {err}"), retryable: false },
    };
    // The handler is done: a task waiting here (prefetched) may start while this one's log and result go out.
    drop(slot);
    drop(log);
    match tokio::time::timeout(UPLOAD_DEADLINE, upload).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(status))) => tracing::warn!(task_id = %task_id, %status, "the log could not be stored"),
        Ok(Err(err)) => tracing::warn!(task_id = %task_id, error = %err, "the log upload task failed"),
        Err(_) => {
            abort.abort();
            tracing::warn!(task_id = %task_id, "the log upload did not finish in time; settling without it");
        }
    }

    let result = match outcome {
        Outcome::Cancelled => {
            tracing::info!(task_id = %task_id, "task stopped");
            return lease_id;
        }
        Outcome::Completed(result) => {
            let request = pb::CompleteTaskRequest { lease_id: lease_id.clone(), result: Some(json_to_struct(&result)) };
            completer.complete(request, &trace_id).await
        }
        Outcome::Failed { error, retryable } => {
            let request = pb::FailTaskRequest { lease_id: lease_id.clone(), error, retryable };
            settle(|| {
                let mut client = client.clone();
                let request = with_trace_id(request.clone(), &trace_id);
                async move { client.fail_task(request).await }
            })
            .await
        }
    };
    match result {
        Ok(task) => tracing::info!(task_id = %task_id, status = ?task.status(), "task settled"),
        Err(status) => tracing::warn!(task_id = %task_id, %status, "the task could not be settled"),
    }
    lease_id
}

/// A request carrying the task's trace id, so the server files its side of the call under the same trace.
fn with_trace_id<T>(message: T, trace_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = trace_id.parse() {
        request.metadata_mut().insert("x-trace-id", value);
    }
    request
}

/// Errors worth another try: the connection or the server's moment (a database error is INTERNAL), not the
/// request.
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Internal
    )
}

/// Calls a settle RPC, retrying transient failures (the server restarting, a broken connection) until the
/// settle deadline. Repeating is safe: the server answers a repeated settlement of the same lease with the
/// recorded task.
async fn settle<T, F, Fut>(call: F) -> Result<T, Status>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    let mut delay = Duration::from_millis(100);
    loop {
        let status = match tokio::time::timeout(CALL_TIMEOUT, call()).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => status,
            Err(_) => Status::deadline_exceeded("the settle call timed out"),
        };
        if !transient(&status) || tokio::time::Instant::now() + delay > deadline {
            return Err(status);
        }
        tracing::warn!(%status, "settling failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
