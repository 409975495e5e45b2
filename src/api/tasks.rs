//! controltower.v1.TaskService.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use tonic::{Request, Response, Status};

use super::{metadata, parse_task_id};
use crate::{
    convert::status_from_pb,
    error::{Error, Result},
    pb::{self, task_service_server::TaskService},
    server::AppState,
    spec::{self, NewTask},
    store::tasks::{self, EnqueueContext, TaskFilter},
};

/// Items per EnqueueTasks call.
pub const MAX_BATCH: usize = 1000;
const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 1000;

pub struct TaskServiceImpl {
    state: Arc<AppState>,
}

impl TaskServiceImpl {
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// Validation, then the policy gate.
    fn admit(&self, spec: Option<pb::TaskSpec>) -> Result<NewTask> {
        let task = spec::validate(spec)?;
        self.state.policy.check(&task)?;
        Ok(task)
    }

    fn context(&self, trace_id: String) -> EnqueueContext {
        EnqueueContext { trace_id, default_max_attempts: self.state.default_max_attempts }
    }

    async fn enqueue(&self, request: Request<pb::EnqueueTaskRequest>) -> Result<Response<pb::EnqueueTaskResponse>> {
        let trace_id = metadata::trace_id(request.metadata())?.unwrap_or_else(metadata::new_trace_id);
        let new_task = self.admit(request.into_inner().spec)?;
        let now = self.state.clock.now();
        let enqueued = tasks::enqueue(&self.state.db, now, new_task, &self.context(trace_id)).await?;
        if enqueued.created {
            self.state.dispatcher.work_available(enqueued.task.run_after);
        }
        tracing::info!(task_id = %enqueued.task.id, trace_id = %enqueued.task.trace_id, created = enqueued.created, "enqueue");
        let mut response =
            Response::new(pb::EnqueueTaskResponse { created: enqueued.created, task: Some(enqueued.task.into()) });
        if let Some(task) = &response.get_ref().task {
            let trace_id = task.trace_id.clone();
            metadata::set_trace_id(response.metadata_mut(), &trace_id);
        }
        Ok(response)
    }

    async fn enqueue_batch(&self, request: Request<pb::EnqueueTasksRequest>) -> Result<pb::EnqueueTasksResponse> {
        let shared_trace_id = metadata::trace_id(request.metadata())?;
        let requests = request.into_inner().requests;
        if requests.len() > MAX_BATCH {
            return Err(Error::invalid(
                "requests",
                format!("must hold at most {MAX_BATCH} items, got {}", requests.len()),
            ));
        }
        // Each item is admitted on its own; the admitted ones are written together.
        let mut outcomes: Vec<std::result::Result<usize, Error>> = Vec::with_capacity(requests.len());
        let mut admitted = Vec::new();
        for item in requests {
            match self.admit(item.spec) {
                Ok(task) => {
                    let trace_id = shared_trace_id.clone().unwrap_or_else(metadata::new_trace_id);
                    outcomes.push(Ok(admitted.len()));
                    admitted.push((task, self.context(trace_id)));
                }
                Err(err) => outcomes.push(Err(err)),
            }
        }
        let now = self.state.clock.now();
        let enqueued = tasks::enqueue_many(&self.state.db, now, admitted).await?;
        if let Some(earliest) = enqueued.iter().filter(|e| e.created).map(|e| e.task.run_after).min() {
            self.state.dispatcher.work_available(earliest);
        }
        let mut enqueued: Vec<Option<tasks::Enqueued>> = enqueued.into_iter().map(Some).collect();
        let results = outcomes
            .into_iter()
            .map(|outcome| {
                let outcome = match outcome {
                    Ok(index) => {
                        let e = enqueued[index].take();
                        pb::enqueue_task_result::Outcome::Enqueued(pb::EnqueueTaskResponse {
                            created: e.as_ref().is_some_and(|e| e.created),
                            task: e.map(|e| e.task.into()),
                        })
                    }
                    Err(err) => pb::enqueue_task_result::Outcome::Error(item_error(err)),
                };
                pb::EnqueueTaskResult { outcome: Some(outcome) }
            })
            .collect();
        Ok(pb::EnqueueTasksResponse { results })
    }

    async fn list(&self, request: pb::ListTasksRequest) -> Result<pb::ListTasksResponse> {
        let page_size = match request.page_size {
            n if n < 0 => {
                return Err(Error::invalid("page_size", format!("must not be negative, got {n}")));
            }
            0 => DEFAULT_PAGE_SIZE,
            n => (n as u64).min(MAX_PAGE_SIZE),
        };
        let status = pb::TaskStatus::try_from(request.status)
            .map_err(|_| Error::invalid("status", format!("unknown TaskStatus value {}", request.status)))?;
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let filter = TaskFilter {
            status: status_from_pb(status),
            operation: non_empty(request.operation),
            requested_by_kind: non_empty(request.requested_by_kind),
            target_repo: non_empty(request.target_repo).map(|r| spec::normalise_repo(&r)),
            worker_id: non_empty(request.worker_id),
        };
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(PageToken::decode(token, &filter)?),
        };
        let mut rows = tasks::list(&self.state.db, &filter, after.as_deref(), page_size + 1).await?;
        let next_page_token = if rows.len() as u64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|last| PageToken::encode(&last.id, &filter)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListTasksResponse { tasks: rows.iter().map(pb::Task::from).collect(), next_page_token })
    }

    async fn cancel(&self, request: pb::CancelTaskRequest) -> Result<pb::Task> {
        let id = parse_task_id("id", &request.id)?;
        if request.reason.chars().count() > 1000 {
            return Err(Error::invalid("reason", "must be at most 1000 characters"));
        }
        let state = &self.state;
        let cancelled =
            tasks::cancel(&state.db, state.clock.now(), &id, &request.reason, state.operator.clone()).await?;
        if let Some(lease_id) = &cancelled.interrupted_lease {
            let reason = match request.reason.as_str() {
                "" => "task cancelled".to_owned(),
                reason => format!("task cancelled: {reason}"),
            };
            state.dispatcher.lease_withdrawn(lease_id, &id, &reason);
            state.dispatcher.record_outcome(&cancelled.task).await;
        }
        Ok(cancelled.task.into())
    }
}

/// The per-item form of an error in a batch.
pub fn item_error(err: Error) -> pb::ItemError {
    let field_violations = match &err {
        Error::InvalidArgument(violations) => violations
            .iter()
            .map(|v| pb::FieldViolation { field: v.field.clone(), description: v.description.clone() })
            .collect(),
        _ => Vec::new(),
    };
    pb::ItemError {
        code: err.code() as i32,
        reason: err.reason().unwrap_or_default().to_owned(),
        message: err.client_message(),
        field_violations,
    }
}

/// An opaque ListTasks cursor: the last id returned and the filter it belongs to (AIP-158: a token is only valid
/// with the same filter).
#[derive(serde::Serialize, serde::Deserialize)]
struct PageToken {
    after: String,
    filter: TaskFilter,
}

impl PageToken {
    fn encode(after: &str, filter: &TaskFilter) -> String {
        let token = PageToken { after: after.to_owned(), filter: filter.clone() };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
    }

    fn decode(token: &str, filter: &TaskFilter) -> Result<String> {
        let bad = || Error::invalid("page_token", "is not a token returned by ListTasks");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let token: PageToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if token.filter != *filter {
            return Err(Error::invalid("page_token", "was issued for different filters; repeat the same filters"));
        }
        Ok(token.after)
    }
}

#[tonic::async_trait]
impl TaskService for TaskServiceImpl {
    #[tracing::instrument(skip_all)]
    async fn enqueue_task(
        &self,
        request: Request<pb::EnqueueTaskRequest>,
    ) -> Result<Response<pb::EnqueueTaskResponse>, Status> {
        Ok(self.enqueue(request).await?)
    }

    #[tracing::instrument(skip_all, fields(items = request.get_ref().requests.len()))]
    async fn enqueue_tasks(
        &self,
        request: Request<pb::EnqueueTasksRequest>,
    ) -> Result<Response<pb::EnqueueTasksResponse>, Status> {
        Ok(Response::new(self.enqueue_batch(request).await?))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().id))]
    async fn get_task(&self, request: Request<pb::GetTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let id = parse_task_id("id", &request.get_ref().id)?;
        let task = tasks::get(&self.state.db, &id).await?;
        Ok(Response::new(task.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().id))]
    async fn cancel_task(&self, request: Request<pb::CancelTaskRequest>) -> Result<Response<pb::Task>, Status> {
        Ok(Response::new(self.cancel(request.into_inner()).await?))
    }
}
