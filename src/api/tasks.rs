//! controltower.v1.TaskService.

use std::{collections::HashMap, sync::Arc};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{audit as audit_api, metadata, paging, parse_task_id};
use crate::{
    auth::{self, Identity, Role},
    convert::{status_from_pb, timestamp},
    error::{Error, Result},
    limits,
    pb::{self, task_service_server::TaskService},
    server::AppState,
    spec::{self, NewTask},
    store::{
        audit::Filter as AuditFilter,
        entity::{
            audit_log::Model as AuditRow,
            task::{self as task_entity, Model as TaskRow, TaskStatus},
        },
        tasks::{self, EnqueueContext, TaskFilter},
    },
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

    /// The caller's claim to be the requester, the size limits, validation, then the policy gate.
    fn admit(&self, mut spec: Option<pb::TaskSpec>, caller: Option<&Identity>) -> Result<NewTask> {
        if let (Some(spec), Some(caller)) = (spec.as_mut(), caller) {
            requested_by_caller(spec, caller)?;
        }
        if let Some(spec) = &spec {
            self.check_sizes(spec)?;
        }
        let task = spec::validate(spec)?;
        self.state.policy.check(&task)?;
        Ok(task)
    }

    /// Free-form fields are bounded, so that one task cannot fill the database or a worker's memory.
    fn check_sizes(&self, spec: &pb::TaskSpec) -> Result<()> {
        let max = self.state.limits.max_inputs_bytes;
        #[allow(deprecated)] // `payload` is the legacy alias of `inputs`, and as large
        let fields =
            [("spec.inputs", &spec.inputs), ("spec.metadata", &spec.metadata), ("spec.payload", &spec.payload)];
        for (field, value) in fields {
            let size = value.as_ref().map_or(0, prost::Message::encoded_len);
            if size > max {
                return Err(Error::ResourceExhausted(format!(
                    "{field}: {size} bytes encoded is more than the limit of {max} (JCT_MAX_INPUTS_BYTES)"
                )));
            }
        }
        Ok(())
    }

    fn check_rate(&self, caller: Option<&Identity>, tasks: usize) -> Result<()> {
        match &self.state.enqueue_limiter {
            Some(limiter) => limiter.check(limits::key(caller), tasks),
            None => Ok(()),
        }
    }

    fn context(&self, trace_id: String, create_cwom: bool) -> EnqueueContext {
        EnqueueContext { trace_id, default_max_attempts: self.state.default_max_attempts, create_cwom }
    }

    async fn enqueue(&self, request: Request<pb::EnqueueTaskRequest>) -> Result<Response<pb::EnqueueTaskResponse>> {
        let trace_id = metadata::trace_id(request.metadata())?.unwrap_or_else(metadata::new_trace_id);
        let caller = auth::caller(&request);
        self.check_rate(caller.as_deref(), 1)?;
        let request = request.into_inner();
        let new_task = self.admit(request.spec, caller.as_deref())?;
        let ctx = self.context(trace_id, request.create_cwom);
        let enqueued = if ctx.create_cwom {
            tasks::enqueue(&self.state.db, self.state.clock.now(), new_task, &ctx).await?
        } else {
            self.state.intake.enqueue(new_task, ctx).await?
        };
        // A task leased by its own enqueue to a waiting stream wakes nobody else.
        if enqueued.created && !enqueued.dispatched {
            self.state.dispatcher.work_available(enqueued.task.run_after);
        }
        tracing::info!(task_id = %enqueued.task.id, trace_id = %enqueued.task.trace_id, created = enqueued.created, "enqueue");
        let trace_id = enqueued.task.trace_id.clone();
        let mut response = Response::new(response_of(enqueued));
        metadata::set_trace_id(response.metadata_mut(), &trace_id);
        Ok(response)
    }

    async fn enqueue_batch(&self, request: Request<pb::EnqueueTasksRequest>) -> Result<pb::EnqueueTasksResponse> {
        let shared_trace_id = metadata::trace_id(request.metadata())?;
        let caller = auth::caller(&request);
        let requests = request.into_inner().requests;
        if requests.len() > MAX_BATCH {
            return Err(Error::invalid(
                "requests",
                format!("must hold at most {MAX_BATCH} items, got {}", requests.len()),
            ));
        }
        self.check_rate(caller.as_deref(), requests.len())?;
        // Each item is admitted on its own; the admitted ones are written together.
        let mut outcomes: Vec<std::result::Result<usize, Error>> = Vec::with_capacity(requests.len());
        let mut admitted = Vec::new();
        for item in requests {
            match self.admit(item.spec, caller.as_deref()) {
                Ok(task) => {
                    let trace_id = shared_trace_id.clone().unwrap_or_else(metadata::new_trace_id);
                    outcomes.push(Ok(admitted.len()));
                    admitted.push((task, self.context(trace_id, item.create_cwom)));
                }
                Err(err) => outcomes.push(Err(err)),
            }
        }
        let now = self.state.clock.now();
        let enqueued = tasks::enqueue_many(&self.state.db, now, admitted).await?;
        for created in enqueued.iter().filter(|e| e.created) {
            self.state.dispatcher.work_available(created.task.run_after);
        }
        let mut enqueued: Vec<Option<tasks::Enqueued>> = enqueued.into_iter().map(Some).collect();
        let results = outcomes
            .into_iter()
            .map(|outcome| {
                let outcome = match outcome.map(|index| enqueued[index].take()) {
                    Ok(Some(e)) => pb::enqueue_task_result::Outcome::Enqueued(response_of(e)),
                    Ok(None) => {
                        pb::enqueue_task_result::Outcome::Error(item_error(Error::internal("batch", "missing result")))
                    }
                    Err(err) => pb::enqueue_task_result::Outcome::Error(item_error(err)),
                };
                pb::EnqueueTaskResult { outcome: Some(outcome) }
            })
            .collect();
        Ok(pb::EnqueueTasksResponse { results })
    }

    async fn list(&self, request: Request<pb::ListTasksRequest>) -> Result<pb::ListTasksResponse> {
        let caller = auth::caller(&request);
        let request = request.into_inner();
        let limit = paging::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let filter = task_filter(
            request.status,
            request.operation,
            request.requested_by_kind,
            request.target_repo,
            request.worker_id,
            caller.as_deref(),
        )?;
        let after = paging::after_string(paging::decode(&request.page_token, &filter)?)?;
        let rows = tasks::list(&self.state.db, &filter, after.as_deref(), limit + 1).await?;
        let (rows, more) = paging::split_page(rows, limit);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&serde_json::json!(last.id), &filter),
            _ => String::new(),
        };
        Ok(pb::ListTasksResponse { tasks: rows.iter().map(pb::Task::from).collect(), next_page_token })
    }

    async fn cancel(&self, request: Request<pb::CancelTaskRequest>) -> Result<pb::Task> {
        let actor = auth::caller(&request).map_or_else(|| self.state.operator.clone(), |who| who.actor());
        let request = request.into_inner();
        let id = parse_task_id("id", &request.id)?;
        if request.reason.chars().count() > 1000 {
            return Err(Error::invalid("reason", "must be at most 1000 characters"));
        }
        let state = &self.state;
        let cancelled = tasks::cancel(&state.db, state.clock.now(), &id, &request.reason, actor).await?;
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

fn response_of(e: tasks::Enqueued) -> pb::EnqueueTaskResponse {
    pb::EnqueueTaskResponse { created: e.created, cwom: e.cwom.map(Into::into), task: Some(e.task.into()) }
}

/// With auth on, the requester is the caller: an absent `requested_by` is filled in, another identity is refused.
fn requested_by_caller(spec: &mut pb::TaskSpec, caller: &Identity) -> Result<()> {
    let actor = caller.actor();
    let requester = spec.requested_by.get_or_insert_with(Default::default);
    if requester.id.is_empty() {
        requester.id = actor.id.clone();
    }
    if requester.kind.is_empty() {
        requester.kind = actor.kind.clone();
    }
    if requester.id != actor.id || requester.kind != actor.kind {
        return Err(Error::PermissionDenied(format!(
            "spec.requested_by: {}:{} is not the caller {}:{}; a task is requested by whoever enqueues it",
            requester.kind, requester.id, actor.kind, actor.id
        )));
    }
    Ok(())
}

/// Agents read only the tasks they requested.
fn ensure_may_read(caller: Option<&Identity>, task: &TaskRow) -> Result<()> {
    match caller {
        Some(who) if who.is(Role::Agent) && who.id != task.requested_by_id => {
            Err(auth::deny(who, format_args!("read task {}, which another caller requested", task.id)))
        }
        _ => Ok(()),
    }
}

fn task_filter(
    status: i32,
    operation: String,
    requested_by_kind: String,
    target_repo: String,
    worker_id: String,
    caller: Option<&Identity>,
) -> Result<TaskFilter> {
    let status = pb::TaskStatus::try_from(status)
        .map_err(|_| Error::invalid("status", format!("unknown TaskStatus value {status}")))?;
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    Ok(TaskFilter {
        status: status_from_pb(status),
        operation: non_empty(operation),
        requested_by_kind: non_empty(requested_by_kind),
        target_repo: non_empty(target_repo).map(|r| spec::normalise_repo(&r)),
        worker_id: non_empty(worker_id),
        requested_by_id: caller.filter(|who| who.is(Role::Agent)).map(|who| who.id.clone()),
    })
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

fn status_of(state: Option<&serde_json::Value>) -> pb::TaskStatus {
    state
        .and_then(|s| s.get("status"))
        .and_then(|s| s.as_str())
        .and_then(TaskStatus::parse)
        .map_or(pb::TaskStatus::Unspecified, pb::TaskStatus::from)
}

/// Task events for a batch of audit entries: each entry with the task as it is now, if it passes the filter.
async fn task_events(state: Arc<AppState>, filter: TaskFilter, rows: Vec<AuditRow>) -> Result<Vec<pb::TaskEvent>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.entity_id.as_str()).collect();
    let tasks: HashMap<String, TaskRow> = task_entity::Entity::find()
        .filter(task_entity::Column::Id.is_in(ids))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|t| (t.id.clone(), t))
        .collect();
    let mut events = Vec::new();
    for row in rows {
        let Some(task) = tasks.get(&row.entity_id) else { continue };
        let to_status = status_of(row.after.as_ref());
        if filter.status.is_some_and(|s| pb::TaskStatus::from(s) != to_status) || !filter.matches(task) {
            continue;
        }
        events.push(pb::TaskEvent {
            task: Some(task.into()),
            action: row.action.clone(),
            from_status: status_of(row.before.as_ref()).into(),
            to_status: to_status.into(),
            note: row.note.clone().unwrap_or_default(),
            actor_id: row.actor_id.clone(),
            at: Some(timestamp(row.ts)),
            cursor: crate::store::audit::Cursor::of(&row).encode(),
        });
    }
    Ok(events)
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
        ensure_may_read(auth::caller(&request).as_deref(), &task)?;
        Ok(Response::new(task.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().id))]
    async fn cancel_task(&self, request: Request<pb::CancelTaskRequest>) -> Result<Response<pb::Task>, Status> {
        Ok(Response::new(self.cancel(request).await?))
    }

    type WatchTasksStream = ReceiverStream<Result<pb::TaskEvent, Status>>;

    #[tracing::instrument(skip_all)]
    async fn watch_tasks(
        &self,
        request: Request<pb::WatchTasksRequest>,
    ) -> Result<Response<Self::WatchTasksStream>, Status> {
        let caller = auth::caller(&request);
        let r = request.into_inner();
        let filter =
            task_filter(r.status, r.operation, r.requested_by_kind, r.target_repo, r.worker_id, caller.as_deref())?;
        let cursor = audit_api::start(&self.state, &r.cursor).await?;
        let permit = self.state.streams.acquire(limits::key(caller.as_deref()))?;
        let audit_filter = AuditFilter { entity_kind: Some(tasks::ENTITY_KIND.to_owned()), ..Default::default() };
        let stream = audit_api::follow(self.state.clone(), audit_filter, cursor, permit, move |state, rows| {
            task_events(state, filter.clone(), rows)
        });
        Ok(Response::new(stream))
    }
}
