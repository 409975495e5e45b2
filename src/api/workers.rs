//! controltower.v1.WorkerService.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tonic::{Request, Response, Status, Streaming};

use crate::{
    api::tasks::item_error,
    auth::{self, Identity, Role},
    convert::{task_in_view, timestamp},
    dispatch::{MAX_IN_FLIGHT, PullOptions, TaskStream, open_stream},
    error::{Error, Result},
    json::struct_to_json,
    limits,
    metrics::{self, ReasonLabels},
    pb::{self, worker_service_server::WorkerService},
    server::AppState,
    spec::OPERATIONS,
    store::{
        entity::task::{Model as TaskRow, TaskStatus},
        tasks,
    },
    trace::validate_file_name,
};

const MAX_LEASES_PER_HEARTBEAT: usize = 1000;
/// Most items in one CompleteTasks call.
const MAX_COMPLETIONS: usize = 1000;
const MAX_ERROR_CHARS: usize = 16_000;
/// How long a PushTrace stream trusts a lease check before asking the database again.
const LEASE_RECHECK: Duration = Duration::from_secs(1);

pub struct WorkerServiceImpl {
    state: Arc<AppState>,
}

impl WorkerServiceImpl {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// A worker settles and uploads for the leases it holds, not another worker's.
    async fn ensure_lease_holder(&self, caller: Option<&Identity>, lease_id: &str) -> Result<()> {
        let holders = self.lease_holders(caller, [lease_id]).await?;
        ensure_holder(caller, lease_id, holders.get(lease_id).map(String::as_str))
    }

    /// The worker holding each of `lease_ids`, in one query, when the caller is a worker (whose use of a lease
    /// `ensure_holder` checks); nothing for anyone else. A lease that is not held is answered by the settle itself
    /// (FAILED_PRECONDITION, LEASE_NOT_HELD).
    async fn lease_holders<'a>(
        &self,
        caller: Option<&Identity>,
        lease_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, String>> {
        match caller {
            Some(who) if who.is(Role::Worker) => tasks::lease_holders(&self.state.db, lease_ids).await,
            _ => Ok(HashMap::new()),
        }
    }

    async fn complete(&self, request: Request<pb::CompleteTaskRequest>) -> Result<pb::Task> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        require_lease(&request.lease_id)?;
        self.ensure_lease_holder(caller.as_deref(), &request.lease_id).await?;
        let (lease_id, result) = completion(request);
        let settled = self.state.completions.complete(&lease_id, result).await?;
        if settled.recorded {
            self.completed(&[&settled.task]).await;
        }
        Ok(settled.task.into())
    }

    /// Each item is checked and settled as CompleteTask would; the valid ones join the same group commit.
    async fn complete_batch(&self, request: Request<pb::CompleteTasksRequest>) -> Result<pb::CompleteTasksResponse> {
        let caller = auth::caller(&request);
        let pb::CompleteTasksRequest { requests, view } = request.into_inner();
        let view = pb::TaskView::try_from(view)
            .map_err(|_| Error::invalid("view", format!("must be a TaskView value, got {view}")))?;
        if requests.len() > MAX_COMPLETIONS {
            return Err(Error::invalid(
                "requests",
                format!("must hold at most {MAX_COMPLETIONS} items, got {}", requests.len()),
            ));
        }
        // One query for the whole call, not one per item.
        let holders = self.lease_holders(caller.as_deref(), requests.iter().map(|r| r.lease_id.as_str())).await?;
        let mut checked: Vec<Result<usize>> = Vec::with_capacity(requests.len());
        let mut items = Vec::new();
        for request in requests {
            let holder = holders.get(&request.lease_id).map(String::as_str);
            let allowed = require_lease(&request.lease_id)
                .and_then(|()| ensure_holder(caller.as_deref(), &request.lease_id, holder));
            match allowed.map(|()| completion(request)) {
                Ok(item) => {
                    checked.push(Ok(items.len()));
                    items.push(item);
                }
                Err(err) => checked.push(Err(err)),
            }
        }
        let mut settled: Vec<Option<Result<tasks::Settled>>> =
            self.state.completions.complete_all(items).await.into_iter().map(Some).collect();
        let recorded: Vec<&TaskRow> =
            settled.iter().flatten().flatten().filter(|s| s.recorded).map(|s| &s.task).collect();
        self.completed(&recorded).await;
        let results = checked
            .into_iter()
            .map(|checked| {
                let outcome = match checked {
                    Ok(index) => match settled[index].take() {
                        Some(Ok(settled)) => pb::complete_task_result::Outcome::Task(task_in_view(&settled.task, view)),
                        Some(Err(err)) => pb::complete_task_result::Outcome::Error(item_error(err)),
                        None => pb::complete_task_result::Outcome::Error(item_error(Error::internal(
                            "complete",
                            "an item was answered twice",
                        ))),
                    },
                    Err(err) => pb::complete_task_result::Outcome::Error(item_error(err)),
                };
                pb::CompleteTaskResult { outcome: Some(outcome) }
            })
            .collect();
        Ok(pb::CompleteTasksResponse { results })
    }

    /// After completions were recorded: free their slots and write their `output.json` files.
    async fn completed(&self, tasks: &[&TaskRow]) {
        let dispatcher = &self.state.dispatcher;
        for task in tasks {
            tracing::info!(task_id = %task.id, trace_id = %task.trace_id, "task completed");
            if let Some(lease_id) = &task.lease_id {
                dispatcher.lease_ended(lease_id);
            }
        }
        dispatcher.record_outcomes(tasks).await;
    }

    async fn fail(&self, request: Request<pb::FailTaskRequest>) -> Result<pb::Task> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        require_lease(&request.lease_id)?;
        self.ensure_lease_holder(caller.as_deref(), &request.lease_id).await?;
        if request.error.trim().is_empty() {
            return Err(Error::invalid("error", "is required: say what went wrong"));
        }
        let error: String = request.error.chars().take(MAX_ERROR_CHARS).collect();
        let state = &self.state;
        let backoff = state.dispatcher.config().backoff;
        let settled =
            tasks::fail(&state.db, state.clock.now(), &request.lease_id, &error, request.retryable, backoff).await?;
        if settled.recorded {
            let task = &settled.task;
            tracing::info!(task_id = %task.id, trace_id = %task.trace_id, status = task.status.as_str(), "task failed");
            state.dispatcher.lease_ended(&request.lease_id);
            if task.status == TaskStatus::Queued {
                metrics::global().retries.get_or_create(&ReasonLabels { reason: "failure" }).inc();
                state.dispatcher.work_available(task.run_after);
            } else {
                state.dispatcher.record_outcome(task).await;
            }
        }
        Ok(settled.task.into())
    }

    async fn heartbeat(&self, request: Request<pb::HeartbeatRequest>) -> Result<pb::HeartbeatResponse> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        validate_worker_id(&request.worker_id)?;
        // Leases are extended only for the worker id given, so a worker that may only be itself extends only its own.
        auth::ensure_worker_id(caller.as_deref(), &request.worker_id)?;
        if request.lease_ids.len() > MAX_LEASES_PER_HEARTBEAT {
            return Err(Error::invalid("lease_ids", format!("must hold at most {MAX_LEASES_PER_HEARTBEAT} leases")));
        }
        let state = &self.state;
        if request.draining {
            state.dispatcher.worker_draining(&request.worker_id);
        }
        let timeout = state.dispatcher.lease_timeout_micros();
        let report =
            tasks::extend_leases(&state.db, state.clock.now(), &request.worker_id, &request.lease_ids, timeout).await?;
        for lease in report.lost.iter().chain(&report.cancelled) {
            state.dispatcher.lease_ended(lease);
        }
        let mut lost = report.lost;
        lost.extend(report.foreign);
        Ok(pb::HeartbeatResponse {
            extended: report.extended,
            cancelled: report.cancelled,
            lost,
            lease_deadline: Some(timestamp(report.deadline)),
        })
    }

    /// Transport errors of the upload (a client gone, an oversized message) keep their own status.
    async fn push_trace(&self, request: Request<Streaming<pb::TraceChunk>>) -> Result<pb::PushTraceResponse, Status> {
        let caller = auth::caller(&request);
        let mut chunks = request.into_inner();
        let mut writer = self.state.traces.writer();
        // lease id -> (task id, attempt, when the lease was last confirmed). Between checks, a new attempt of the
        // task on this server still stops the upload at once (the trace store knows the current attempt).
        let mut leases: HashMap<String, (String, i32, Instant)> = HashMap::new();
        while let Some(chunk) = chunks.message().await? {
            let (task_id, attempt) = match leases.get(&chunk.lease_id) {
                Some((task_id, attempt, checked)) if checked.elapsed() < LEASE_RECHECK => (task_id.clone(), *attempt),
                _ => {
                    let (task_id, attempt, holder) = self.lease_task(&chunk.lease_id).await?;
                    ensure_holder(caller.as_deref(), &chunk.lease_id, holder.as_deref())?;
                    leases.insert(chunk.lease_id.clone(), (task_id.clone(), attempt, Instant::now()));
                    (task_id, attempt)
                }
            };
            validate_file_name(&chunk.file)?;
            writer.write(&task_id, attempt, &chunk.file, chunk.offset, chunk.data, chunk.eof).await?;
        }
        let summary = writer.finish().await?;
        tracing::debug!(bytes_written = summary.bytes_written, bytes_skipped = summary.bytes_skipped, "trace upload");
        Ok(pb::PushTraceResponse {
            files: summary
                .files
                .into_iter()
                .map(|(file, size_bytes)| pb::TraceFileSummary { file, size_bytes })
                .collect(),
            bytes_written: summary.bytes_written,
            bytes_skipped: summary.bytes_skipped,
        })
    }

    /// The task a trace upload may write to: the lease must be running it, or be the lease that ended it.
    async fn lease_task(&self, lease_id: &str) -> Result<(String, i32, Option<String>)> {
        require_lease(lease_id)?;
        match tasks::task_of_lease(&self.state.db, lease_id).await? {
            Some(task) => Ok((task.id, task.attempt, task.worker_id)),
            None => Err(Error::precondition(
                "LEASE_NOT_HELD",
                format!("lease_id: lease '{lease_id}' is not held (it expired, was released, or never existed)"),
            )),
        }
    }
}

/// A completion as (lease, result).
fn completion(request: pb::CompleteTaskRequest) -> (String, serde_json::Value) {
    let result = request.result.map_or_else(|| serde_json::json!({}), struct_to_json);
    (request.lease_id, result)
}

/// Refuses a worker identity using a lease that another worker holds.
fn ensure_holder(caller: Option<&Identity>, lease_id: &str, holder: Option<&str>) -> Result<()> {
    match caller {
        Some(who) if who.is(Role::Worker) && holder.is_some_and(|h| h != who.id) => {
            Err(auth::deny(who, format_args!("use lease {lease_id:?}, which another worker holds")))
        }
        _ => Ok(()),
    }
}

fn require_lease(lease_id: &str) -> Result<()> {
    if lease_id.is_empty() {
        return Err(Error::invalid("lease_id", "is required"));
    }
    Ok(())
}

fn validate_worker_id(worker_id: &str) -> Result<()> {
    let len = worker_id.chars().count();
    if !(1..=128).contains(&len) {
        return Err(Error::invalid("worker_id", format!("must be 1-128 characters, got {len}")));
    }
    if !worker_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-')) {
        return Err(Error::invalid("worker_id", "may only use letters, digits, '.', '_', ':', '@' and '-'"));
    }
    Ok(())
}

fn pull_options(state: &AppState, request: Request<pb::PullTasksRequest>) -> Result<PullOptions> {
    let caller = auth::caller(&request);
    let request = request.into_inner();
    validate_worker_id(&request.worker_id)?;
    auth::ensure_worker_id(caller.as_deref(), &request.worker_id)?;
    if let Some(bad) = request.operations.iter().find(|op| !OPERATIONS.contains(&op.as_str())) {
        return Err(Error::invalid(
            "operations",
            format!("unknown operation {bad:?}; known operations: {}", OPERATIONS.join(", ")),
        ));
    }
    let max_in_flight = match usize::try_from(request.max_in_flight) {
        Ok(0) => 1,
        Ok(n) if n <= MAX_IN_FLIGHT => n,
        _ => {
            let got = request.max_in_flight;
            return Err(Error::invalid("max_in_flight", format!("must be 1-{MAX_IN_FLIGHT}, got {got}")));
        }
    };
    Ok(PullOptions {
        worker_id: request.worker_id,
        operations: request.operations,
        max_in_flight,
        permit: state.streams.acquire(limits::key(caller.as_deref()))?,
    })
}

#[tonic::async_trait]
impl WorkerService for WorkerServiceImpl {
    type PullTasksStream = TaskStream;

    #[tracing::instrument(skip_all, fields(worker_id = %request.get_ref().worker_id))]
    async fn pull_tasks(
        &self,
        request: Request<pb::PullTasksRequest>,
    ) -> Result<Response<Self::PullTasksStream>, Status> {
        let options = pull_options(&self.state, request)?;
        Ok(Response::new(open_stream(&self.state.dispatcher, options)?))
    }

    #[tracing::instrument(skip_all, fields(worker_id = %request.get_ref().worker_id))]
    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(self.heartbeat(request).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn complete_task(&self, request: Request<pb::CompleteTaskRequest>) -> Result<Response<pb::Task>, Status> {
        Ok(Response::new(self.complete(request).await?))
    }

    #[tracing::instrument(skip_all, fields(items = request.get_ref().requests.len()))]
    async fn complete_tasks(
        &self,
        request: Request<pb::CompleteTasksRequest>,
    ) -> Result<Response<pb::CompleteTasksResponse>, Status> {
        Ok(Response::new(self.complete_batch(request).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn fail_task(&self, request: Request<pb::FailTaskRequest>) -> Result<Response<pb::Task>, Status> {
        Ok(Response::new(self.fail(request).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn push_trace(
        &self,
        request: Request<Streaming<pb::TraceChunk>>,
    ) -> Result<Response<pb::PushTraceResponse>, Status> {
        self.push_trace(request).await.map(Response::new)
    }
}
