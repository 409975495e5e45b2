//! Task lifecycle queries. Every state change is one conditional UPDATE (the fence) and its audit entry, committed
//! in one transaction.
//!
//! Leases: a claim sets `status = running`, a fresh random `lease_id`, `lease_expires_at` and `attempt + 1`.
//! Workers name the lease in every call; the UPDATE only matches while the row still carries that lease in
//! `running`, so a stale lease can never settle a task and at most one settlement is ever recorded.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, Order, Query},
};
use serde_json::{Value as Json, json};

use super::{
    audit::{self, Actor, Entry},
    cwom::{
        Change,
        task_model::{self, AttemptEnd, CwomIds},
    },
    entity::task::{Column, Entity as Tasks, Model, TaskStatus},
};
use crate::{
    clock::Micros,
    error::{Error, Result},
    spec::NewTask,
};

/// `entity_kind` of tasks in the audit log.
pub const ENTITY_KIND: &str = "Task";
/// Rows per multi-row INSERT (36 columns each keeps us under the bind-parameter limits).
const ROWS_PER_INSERT: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    pub task: Model,
    /// False when the idempotency key matched an existing task.
    pub created: bool,
    /// The task's work model, when it has one.
    pub cwom: Option<CwomIds>,
}

/// Everything enqueue needs besides the spec.
#[derive(Debug, Clone)]
pub struct EnqueueContext {
    pub trace_id: String,
    pub default_max_attempts: i32,
    /// Also build the task's work model (Repo, ConstraintSnapshot, Issue, ContextPacket) in the same transaction.
    pub create_cwom: bool,
}

fn new_row(spec: NewTask, now: Micros, ctx: &EnqueueContext) -> Model {
    Model {
        id: uuid::Uuid::now_v7().to_string(),
        version: spec.version,
        idempotency_key: spec.idempotency_key,
        requested_by_kind: spec.requested_by_kind,
        requested_by_id: spec.requested_by_id,
        requested_by_label: spec.requested_by_label,
        objective: spec.objective,
        operation: spec.operation,
        target_repo: spec.target_repo,
        target_ref: spec.target_ref,
        target_path: spec.target_path,
        time_budget_seconds: spec.time_budget_seconds,
        allow_network: spec.allow_network,
        allow_secrets: spec.allow_secrets,
        inputs: spec.inputs,
        metadata: spec.metadata,
        acceptance_criteria: json!(spec.acceptance_criteria),
        evidence_requirements: json!(spec.evidence_requirements),
        priority: spec.priority,
        max_attempts: spec.max_attempts.unwrap_or(ctx.default_max_attempts),
        status: TaskStatus::Queued,
        attempt: 0,
        run_after: spec.run_after.map_or(now, |at| std::cmp::max(at, now)),
        lease_id: None,
        lease_expires_at: None,
        worker_id: None,
        result: None,
        error: None,
        trace_path: None,
        cwom_issue_id: None,
        trace_id: ctx.trace_id.clone(),
        created_at: now,
        queued_at: now,
        started_at: None,
        completed_at: None,
    }
}

fn created_entry(task: &Model) -> Entry {
    let actor = Actor::new(&task.requested_by_kind, &task.requested_by_id);
    let snapshot = serde_json::to_value(task).unwrap_or(Json::Null);
    Entry::created(actor, ENTITY_KIND, &task.id, snapshot, &task.trace_id)
}

pub async fn find_by_idempotency_key(db: &impl ConnectionTrait, key: &str) -> Result<Option<Model>> {
    Ok(Tasks::find().filter(Column::IdempotencyKey.eq(key)).one(db).await?)
}

/// A task found by its idempotency key, with the ids of its work model.
async fn existing(db: &DatabaseConnection, task: Model) -> Result<Enqueued> {
    let cwom = match &task.cwom_issue_id {
        Some(issue_id) => Some(task_model::ids_for(db, issue_id).await?),
        None => None,
    };
    Ok(Enqueued { task, created: false, cwom })
}

/// Inserts a validated task as QUEUED with its `created` audit entry (and, if asked, its work model with theirs),
/// all in one transaction; or returns the task already enqueued under the same idempotency key, writing nothing.
pub async fn enqueue(db: &DatabaseConnection, now: Micros, spec: NewTask, ctx: &EnqueueContext) -> Result<Enqueued> {
    if let Some(key) = &spec.idempotency_key
        && let Some(task) = find_by_idempotency_key(db, key).await?
    {
        return existing(db, task).await;
    }
    let key = spec.idempotency_key.clone();
    let mut task = new_row(spec, now, ctx);
    let txn = db.begin().await?;
    let mut cwom = None;
    if ctx.create_cwom {
        // The issue id is chosen first so that the task's own `created` entry, written first, already names it.
        let issue_id = task_model::new_issue_id();
        task.cwom_issue_id = Some(issue_id.clone());
        audit::append(&txn, now, vec![created_entry(&task)]).await?;
        let change = Change {
            now,
            actor: Actor::new(&task.requested_by_kind, &task.requested_by_id),
            trace_id: task.trace_id.clone(),
        };
        cwom = Some(task_model::build(&txn, &change, &task, &issue_id).await?);
    } else {
        audit::append(&txn, now, vec![created_entry(&task)]).await?;
    }
    if let Err(err) = Tasks::insert(task.clone().into_active_model()).exec_without_returning(&txn).await {
        txn.rollback().await?;
        // A concurrent enqueue with the same key won the race: answer as if we had found it first.
        let err = Error::from(err);
        if let (Error::AlreadyExists(_), Some(key)) = (&err, &key)
            && let Some(task) = find_by_idempotency_key(db, key).await?
        {
            return existing(db, task).await;
        }
        return Err(err);
    }
    txn.commit().await?;
    Ok(Enqueued { task, created: true, cwom })
}

/// Enqueues a batch in one transaction with multi-row inserts. Items repeating a key (of the database or of an
/// earlier item) return that task with `created = false`. Results come back in input order.
pub async fn enqueue_many(
    db: &DatabaseConnection,
    now: Micros,
    items: Vec<(NewTask, EnqueueContext)>,
) -> Result<Vec<Enqueued>> {
    // Items that build a work model take the single-item path, each in its own transaction.
    if items.iter().any(|(_, ctx)| ctx.create_cwom) {
        let mut results = Vec::with_capacity(items.len());
        for (spec, ctx) in items {
            results.push(enqueue(db, now, spec, &ctx).await?);
        }
        return Ok(results);
    }
    let keys: Vec<String> = items.iter().filter_map(|(spec, _)| spec.idempotency_key.clone()).collect();
    let mut by_key: HashMap<String, Model> = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_INSERT) {
        for task in Tasks::find().filter(Column::IdempotencyKey.is_in(chunk.to_vec())).all(db).await? {
            if let Some(key) = task.idempotency_key.clone() {
                by_key.insert(key, task);
            }
        }
    }

    let mut results = Vec::with_capacity(items.len());
    let mut fresh = Vec::new();
    for (spec, ctx) in &items {
        if let Some(existing) = spec.idempotency_key.as_ref().and_then(|k| by_key.get(k)) {
            results.push(Enqueued { task: existing.clone(), created: false, cwom: None });
            continue;
        }
        let task = new_row(spec.clone(), now, ctx);
        if let Some(key) = &task.idempotency_key {
            by_key.insert(key.clone(), task.clone());
        }
        fresh.push(task.clone());
        results.push(Enqueued { task, created: true, cwom: None });
    }

    if let Err(err) = insert_with_audit(db, now, &fresh).await {
        // A concurrent request took one of our keys; the single-item path resolves each race correctly.
        if matches!(err, Error::AlreadyExists(_)) {
            let mut results = Vec::with_capacity(items.len());
            for (spec, ctx) in items {
                results.push(enqueue(db, now, spec, &ctx).await?);
            }
            return Ok(results);
        }
        return Err(err);
    }
    Ok(results)
}

async fn insert_with_audit(db: &DatabaseConnection, now: Micros, tasks: &[Model]) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let txn = db.begin().await?;
    for chunk in tasks.chunks(ROWS_PER_INSERT) {
        let rows = chunk.iter().map(|t| t.clone().into_active_model());
        Tasks::insert_many(rows).exec_without_returning(&txn).await?;
    }
    audit::append(&txn, now, tasks.iter().map(created_entry).collect()).await?;
    txn.commit().await?;
    Ok(())
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Model> {
    Tasks::find_by_id(id.to_owned()).one(db).await?.ok_or_else(|| Error::NotFound(format!("task {id} not found")))
}

/// ListTasks filters; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub operation: Option<String>,
    pub requested_by_kind: Option<String>,
    pub target_repo: Option<String>,
    pub worker_id: Option<String>,
}

/// Newest first (ids are UUIDv7, so id order is creation order), starting after `after_id`.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &TaskFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Model>> {
    let mut query = Tasks::find();
    if let Some(status) = filter.status {
        query = query.filter(Column::Status.eq(status));
    }
    if let Some(op) = &filter.operation {
        query = query.filter(Column::Operation.eq(op.as_str()));
    }
    if let Some(kind) = &filter.requested_by_kind {
        query = query.filter(Column::RequestedByKind.eq(kind.as_str()));
    }
    if let Some(repo) = &filter.target_repo {
        query = query.filter(Column::TargetRepo.eq(repo.as_str()));
    }
    if let Some(worker) = &filter.worker_id {
        query = query.filter(Column::WorkerId.eq(worker.as_str()));
    }
    if let Some(after) = after_id {
        query = query.filter(Column::Id.lt(after));
    }
    Ok(query.order_by_desc(Column::Id).limit(limit).all(db).await?)
}

/// What a claim needs to know about the stream it claims for.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub worker_id: &'a str,
    /// Empty means every operation.
    pub operations: &'a [String],
    pub limit: u64,
    pub lease_timeout: Micros,
    /// `trace_path` is this prefix followed by the task id.
    pub trace_uri_prefix: &'a str,
}

/// Leases up to `limit` eligible queued tasks to a worker: highest priority first, FIFO within a priority, each
/// with a fresh unguessable lease token (32 hex characters) made by the database. Returns them in that order.
pub async fn claim(db: &DatabaseConnection, now: Micros, req: &ClaimRequest<'_>) -> Result<Vec<Model>> {
    let txn = db.begin().await?;
    let mut claimed = match db.get_database_backend() {
        DatabaseBackend::Postgres => claim_postgres(&txn, now, req).await?,
        _ => claim_sqlite(&txn, now, req).await?,
    };
    if claimed.is_empty() {
        txn.commit().await?;
        return Ok(claimed);
    }
    let actor = Actor::worker(req.worker_id);
    let entries = claimed
        .iter()
        .map(|t| {
            Entry::status_changed(
                actor.clone(),
                ENTITY_KIND,
                &t.id,
                ("queued", "running"),
                json!({ "worker_id": req.worker_id, "attempt": t.attempt }),
                Some(&format!("leased to {} (attempt {} of {})", req.worker_id, t.attempt, t.max_attempts)),
                &t.trace_id,
            )
        })
        .collect();
    audit::append(&txn, now, entries).await?;
    for task in claimed.iter().filter(|t| t.cwom_issue_id.is_some()) {
        let change = Change { now, actor: actor.clone(), trace_id: task.trace_id.clone() };
        task_model::on_leased(&txn, &change, task).await?;
    }
    txn.commit().await?;
    claimed.sort_by(|a, b| (-a.priority, a.queued_at, &a.id).cmp(&(-b.priority, b.queued_at, &b.id)));
    Ok(claimed)
}

/// PostgreSQL: the eligible rows are picked once, into an array (`= ANY(ARRAY(...))`), and locked with SKIP LOCKED so
/// that concurrent claimers (streams, replicas) pass each other by. With `IN (subquery)` instead, the planner may
/// re-run the subquery per row and, skipping the rows this very statement just updated, lease more than `limit`.
async fn claim_postgres(txn: &DatabaseTransaction, now: Micros, req: &ClaimRequest<'_>) -> Result<Vec<Model>> {
    let mut values: Vec<sea_orm::Value> = vec![
        (now + req.lease_timeout).into(),
        req.worker_id.into(),
        now.into(),
        req.trace_uri_prefix.into(),
        (req.limit as i64).into(),
    ];
    let operations = if req.operations.is_empty() {
        String::new()
    } else {
        let first = values.len() + 1;
        values.extend(req.operations.iter().map(|op| sea_orm::Value::from(op.as_str())));
        let placeholders: Vec<String> = (first..values.len() + 1).map(|i| format!("${i}")).collect();
        format!("AND operation IN ({})", placeholders.join(", "))
    };
    let sql = format!(
        "UPDATE tasks SET status = 'running', lease_id = replace(gen_random_uuid()::text, '-', ''), \
         lease_expires_at = $1, attempt = attempt + 1, worker_id = $2, started_at = $3, trace_path = $4 || id \
         WHERE id = ANY(ARRAY( \
             SELECT id FROM tasks WHERE status = 'queued' AND run_after <= $3 {operations} \
             ORDER BY priority DESC, queued_at, id LIMIT $5 FOR UPDATE SKIP LOCKED)) \
         AND status = 'queued' RETURNING *"
    );
    let statement = Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values);
    Ok(Tasks::find().from_raw_sql(statement).all(txn).await?)
}

/// SQLite: one writer at a time, so a plain conditional UPDATE over the eligible ids is race-free.
async fn claim_sqlite(txn: &DatabaseTransaction, now: Micros, req: &ClaimRequest<'_>) -> Result<Vec<Model>> {
    let mut eligible = Query::select();
    eligible
        .column(Column::Id)
        .from(Tasks)
        .and_where(Column::Status.eq(TaskStatus::Queued))
        .and_where(Column::RunAfter.lte(now))
        .order_by(Column::Priority, Order::Desc)
        .order_by(Column::QueuedAt, Order::Asc)
        .order_by(Column::Id, Order::Asc)
        .limit(req.limit);
    if !req.operations.is_empty() {
        eligible.and_where(Column::Operation.is_in(req.operations.iter().map(String::as_str)));
    }
    Ok(Tasks::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Running.as_str()))
        .col_expr(Column::LeaseId, Expr::cust("lower(hex(randomblob(16)))"))
        .col_expr(Column::LeaseExpiresAt, Expr::value(now + req.lease_timeout))
        .col_expr(Column::Attempt, Expr::col(Column::Attempt).add(1))
        .col_expr(Column::WorkerId, Expr::value(req.worker_id))
        .col_expr(Column::StartedAt, Expr::value(now))
        .col_expr(Column::TracePath, Expr::cust_with_values("? || \"id\"", [req.trace_uri_prefix]))
        .filter(Column::Id.in_subquery(eligible))
        .filter(Column::Status.eq(TaskStatus::Queued))
        .exec_with_returning(txn)
        .await?)
}

/// The answer to a heartbeat, lease by lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseReport {
    pub extended: Vec<String>,
    pub cancelled: Vec<String>,
    /// Not held by anyone any more.
    pub lost: Vec<String>,
    /// Running, but under another worker: not the caller's to extend, and not to be freed on its behalf.
    pub foreign: Vec<String>,
    pub deadline: Micros,
}

/// Moves the deadline of the worker's running leases to `now + lease_timeout`. Extending a deadline is not a state
/// change, so it writes no audit entry.
pub async fn extend_leases(
    db: &DatabaseConnection,
    now: Micros,
    worker_id: &str,
    lease_ids: &[String],
    lease_timeout: Micros,
) -> Result<LeaseReport> {
    let deadline = now + lease_timeout;
    let mut report = LeaseReport { deadline, ..Default::default() };
    if lease_ids.is_empty() {
        return Ok(report);
    }
    let extended = Tasks::update_many()
        .col_expr(Column::LeaseExpiresAt, Expr::value(deadline))
        .filter(Column::LeaseId.is_in(lease_ids.iter().map(String::as_str)))
        .filter(Column::Status.eq(TaskStatus::Running))
        .filter(Column::WorkerId.eq(worker_id))
        .exec_with_returning(db)
        .await?;
    report.extended = extended.into_iter().filter_map(|t| t.lease_id).collect();
    let rest: Vec<&str> =
        lease_ids.iter().map(String::as_str).filter(|id| !report.extended.iter().any(|e| e == id)).collect();
    let others = if rest.is_empty() {
        Vec::new()
    } else {
        Tasks::find().filter(Column::LeaseId.is_in(rest.iter().copied())).all(db).await?
    };
    for lease in rest {
        match others.iter().find(|t| t.lease_id.as_deref() == Some(lease)) {
            Some(t) if t.status == TaskStatus::Cancelled => report.cancelled.push(lease.to_owned()),
            Some(t) if t.status == TaskStatus::Running => report.foreign.push(lease.to_owned()),
            _ => report.lost.push(lease.to_owned()),
        }
    }
    Ok(report)
}

/// How a settled lease ended, so the caller knows whether anything was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub task: Model,
    /// False when this exact settlement had already been recorded (a retried call); nothing was written.
    pub recorded: bool,
}

/// Records the result of a running lease. Repeating the call with the same lease returns the recorded completion.
pub async fn complete(db: &DatabaseConnection, now: Micros, lease_id: &str, result: Json) -> Result<Settled> {
    let txn = db.begin().await?;
    let updated = Tasks::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Completed.as_str()))
        .col_expr(Column::Result, Expr::value(result))
        .col_expr(Column::Error, Expr::value(Option::<String>::None))
        .col_expr(Column::CompletedAt, Expr::value(now))
        .col_expr(Column::LeaseExpiresAt, Expr::value(Option::<i64>::None))
        .filter(Column::LeaseId.eq(lease_id))
        .filter(Column::Status.eq(TaskStatus::Running))
        .exec_with_returning(&txn)
        .await?;
    let Some(task) = updated.into_iter().next() else {
        txn.rollback().await?;
        return replay_or_refuse(db, lease_id, |t| t.status == TaskStatus::Completed).await;
    };
    let entry = settled_entry(&task, "running", json!({}), None);
    audit::append(&txn, now, vec![entry]).await?;
    task_model::on_attempt_end(&txn, &worker_change(&task, now), &task, AttemptEnd::Completed).await?;
    txn.commit().await?;
    Ok(Settled { task, recorded: true })
}

fn worker_change(task: &Model, now: Micros) -> Change {
    Change { now, actor: Actor::worker(task.worker_id.as_deref().unwrap_or_default()), trace_id: task.trace_id.clone() }
}

/// Retry schedule for retryable failures: `base * 2^(attempt-1)`, capped, with +-20% jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Micros,
    pub max: Micros,
}

impl Backoff {
    pub fn delay(&self, attempt: i32) -> Micros {
        let exp = attempt.saturating_sub(1).clamp(0, 30) as u32;
        let raw = std::cmp::min(self.base.saturating_mul(1i64 << exp), self.max);
        let jitter = (raw as f64 * 0.2 * (fastrand::f64() * 2.0 - 1.0)) as i64;
        std::cmp::max(raw + jitter, 0)
    }
}

/// Records a failure of a running lease. A retryable failure with attempts left goes back to the queue after a
/// backoff; anything else ends the task FAILED.
pub async fn fail(
    db: &DatabaseConnection,
    now: Micros,
    lease_id: &str,
    error: &str,
    retryable: bool,
    backoff: Backoff,
) -> Result<Settled> {
    let txn = db.begin().await?;
    let current = Tasks::find()
        .filter(Column::LeaseId.eq(lease_id))
        .filter(Column::Status.eq(TaskStatus::Running))
        .one(&txn)
        .await?;
    // A repeat of this very failure (same lease, same error) is answered with the recorded task.
    let same_failure =
        |t: &Model| t.error.as_deref() == Some(error) && matches!(t.status, TaskStatus::Failed | TaskStatus::Queued);
    let Some(current) = current else {
        txn.rollback().await?;
        return replay_or_refuse(db, lease_id, same_failure).await;
    };
    let retry = retryable && current.attempt < current.max_attempts;
    let fenced = Tasks::update_many()
        .filter(Column::LeaseId.eq(lease_id))
        .filter(Column::Status.eq(TaskStatus::Running))
        .col_expr(Column::Error, Expr::value(error))
        .col_expr(Column::LeaseExpiresAt, Expr::value(Option::<i64>::None));
    let (updated, why) = if retry {
        let run_after = now + backoff.delay(current.attempt);
        let why = format!(
            "retryable failure on attempt {} of {}; retry after {:.1}s",
            current.attempt,
            current.max_attempts,
            (run_after - now) as f64 / 1e6
        );
        let rows = fenced
            .col_expr(Column::Status, Expr::value(TaskStatus::Queued.as_str()))
            .col_expr(Column::RunAfter, Expr::value(run_after))
            .col_expr(Column::QueuedAt, Expr::value(now))
            .exec_with_returning(&txn)
            .await?;
        (rows, why)
    } else {
        let why = if retryable {
            format!("attempts exhausted ({} of {})", current.attempt, current.max_attempts)
        } else {
            "permanent failure".to_owned()
        };
        let rows = fenced
            .col_expr(Column::Status, Expr::value(TaskStatus::Failed.as_str()))
            .col_expr(Column::CompletedAt, Expr::value(now))
            .exec_with_returning(&txn)
            .await?;
        (rows, why)
    };
    let Some(task) = updated.into_iter().next() else {
        // Settled by a concurrent call between our read and our write.
        txn.rollback().await?;
        return replay_or_refuse(db, lease_id, same_failure).await;
    };
    let entry = settled_entry(&task, "running", json!({ "error": error }), Some(&why));
    audit::append(&txn, now, vec![entry]).await?;
    let end = if retry { AttemptEnd::Requeued } else { AttemptEnd::Failed };
    task_model::on_attempt_end(&txn, &worker_change(&task, now), &task, end).await?;
    txn.commit().await?;
    Ok(Settled { task, recorded: true })
}

fn settled_entry(task: &Model, from: &str, details: Json, why: Option<&str>) -> Entry {
    let worker = task.worker_id.as_deref().unwrap_or_default();
    Entry::status_changed(
        Actor::worker(worker),
        ENTITY_KIND,
        &task.id,
        (from, task.status.as_str()),
        details,
        why,
        &task.trace_id,
    )
}

/// A settle call whose fence did not match: a retry of what this lease already recorded (`is_replay`) is answered
/// with the recorded task; anything else is a stale lease.
async fn replay_or_refuse(
    db: &DatabaseConnection,
    lease_id: &str,
    is_replay: impl Fn(&Model) -> bool,
) -> Result<Settled> {
    let task = Tasks::find().filter(Column::LeaseId.eq(lease_id)).one(db).await?;
    match task {
        Some(task) if is_replay(&task) => Ok(Settled { task, recorded: false }),
        Some(task) if task.status == TaskStatus::Cancelled => Err(Error::precondition(
            "TASK_CANCELLED",
            format!("lease_id: task {} was cancelled while this lease held it", task.id),
        )),
        Some(task) if task.status.is_terminal() => Err(Error::precondition(
            "LEASE_NOT_HELD",
            format!("lease_id: task {} already ended as {} under this lease", task.id, task.status.as_str()),
        )),
        Some(task) => Err(Error::precondition(
            "LEASE_NOT_HELD",
            format!("lease_id: this lease of task {} was taken back and the task requeued", task.id),
        )),
        None => Err(Error::precondition(
            "LEASE_NOT_HELD",
            format!("lease_id: lease '{lease_id}' is not held (it expired, was released, or never existed)"),
        )),
    }
}

/// Why leases are being taken back from their workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLoss {
    /// The worker's PullTasks stream closed.
    StreamClosed,
    /// The lease deadline passed without a heartbeat.
    Expired,
}

impl LeaseLoss {
    fn describe(self) -> &'static str {
        match self {
            Self::StreamClosed => "lease released: the worker's stream closed",
            Self::Expired => "lease expired: no heartbeat before the deadline",
        }
    }
}

/// Takes back leases (those named, or all expired ones): tasks with attempts left go back to the queue at once,
/// the others end FAILED. Returns the tasks that changed.
pub async fn take_back_leases(
    db: &DatabaseConnection,
    now: Micros,
    loss: LeaseLoss,
    lease_ids: &[String],
) -> Result<Vec<Model>> {
    let scope = match loss {
        LeaseLoss::StreamClosed if lease_ids.is_empty() => return Ok(Vec::new()),
        LeaseLoss::StreamClosed => Condition::all().add(Column::LeaseId.is_in(lease_ids.iter().map(String::as_str))),
        LeaseLoss::Expired => Condition::all().add(Column::LeaseExpiresAt.lt(now)),
    }
    .add(Column::Status.eq(TaskStatus::Running));
    let why = loss.describe();

    let txn = db.begin().await?;
    let exhausted = Tasks::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Failed.as_str()))
        .col_expr(Column::Error, Expr::value(format!("{why}; no attempts left")))
        .col_expr(Column::CompletedAt, Expr::value(now))
        .col_expr(Column::LeaseExpiresAt, Expr::value(Option::<i64>::None))
        .filter(scope.clone())
        .filter(Expr::col(Column::Attempt).gte(Expr::col(Column::MaxAttempts)))
        .exec_with_returning(&txn)
        .await?;
    let requeued = Tasks::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Queued.as_str()))
        .col_expr(Column::Error, Expr::value(why))
        .col_expr(Column::LeaseExpiresAt, Expr::value(Option::<i64>::None))
        .col_expr(Column::RunAfter, Expr::value(now))
        .col_expr(Column::QueuedAt, Expr::value(now))
        .filter(scope)
        // Repeated so that a row matching only now (a deadline passing between the two statements) still
        // cannot be requeued past its attempts.
        .filter(Expr::col(Column::Attempt).lt(Expr::col(Column::MaxAttempts)))
        .exec_with_returning(&txn)
        .await?;
    let changed: Vec<Model> = exhausted.into_iter().chain(requeued).collect();
    let entries = changed
        .iter()
        .map(|t| {
            let detail = json!({ "worker_id": t.worker_id, "attempt": t.attempt });
            Entry::status_changed(
                Actor::server(),
                ENTITY_KIND,
                &t.id,
                ("running", t.status.as_str()),
                detail,
                Some(why),
                &t.trace_id,
            )
        })
        .collect();
    audit::append(&txn, now, entries).await?;
    for task in changed.iter().filter(|t| t.cwom_issue_id.is_some()) {
        let change = Change { now, actor: Actor::server(), trace_id: task.trace_id.clone() };
        let end = if task.status.is_terminal() { AttemptEnd::Failed } else { AttemptEnd::Requeued };
        task_model::on_attempt_end(&txn, &change, task, end).await?;
    }
    txn.commit().await?;
    Ok(changed)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cancelled {
    pub task: Model,
    /// The lease of the worker that was running the task, which must be told to stop.
    pub interrupted_lease: Option<String>,
}

/// Cancels a task that has not ended. A running task keeps its lease id so that its worker learns of the
/// cancellation (stream message, heartbeat) and may still upload its trace; it can no longer settle the task.
/// Cancelling a cancelled task returns it unchanged.
pub async fn cancel(db: &DatabaseConnection, now: Micros, id: &str, reason: &str, actor: Actor) -> Result<Cancelled> {
    let txn = db.begin().await?;
    let current = get(&txn, id).await?;
    match current.status {
        TaskStatus::Cancelled => {
            txn.rollback().await?;
            return Ok(Cancelled { task: current, interrupted_lease: None });
        }
        TaskStatus::Completed | TaskStatus::Failed => {
            txn.rollback().await?;
            return Err(Error::precondition(
                "TASK_ALREADY_ENDED",
                format!(
                    "task {id} already ended as {}; only queued or running tasks can be cancelled",
                    current.status.as_str()
                ),
            ));
        }
        TaskStatus::Queued | TaskStatus::Running => {}
    }
    let error = if reason.is_empty() { "cancelled".to_owned() } else { format!("cancelled: {reason}") };
    let mut update = Tasks::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Cancelled.as_str()))
        .col_expr(Column::Error, Expr::value(error))
        .col_expr(Column::CompletedAt, Expr::value(now))
        .col_expr(Column::LeaseExpiresAt, Expr::value(Option::<i64>::None))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(current.status));
    if current.status == TaskStatus::Queued {
        // A lease taken back earlier must not look like the one the cancellation interrupted.
        update = update.col_expr(Column::LeaseId, Expr::value(Option::<String>::None));
    }
    let updated = update.exec_with_returning(&txn).await?;
    let Some(task) = updated.into_iter().next() else {
        // The task moved on (claimed or settled) between our read and our write: decide again on its new state.
        txn.rollback().await?;
        return Box::pin(cancel(db, now, id, reason, actor)).await;
    };
    let why = (!reason.is_empty()).then_some(reason);
    let entry = Entry::status_changed(
        actor.clone(),
        ENTITY_KIND,
        id,
        (current.status.as_str(), "cancelled"),
        json!({}),
        why,
        &task.trace_id,
    );
    audit::append(&txn, now, vec![entry]).await?;
    let change = Change { now, actor, trace_id: task.trace_id.clone() };
    task_model::on_attempt_end(&txn, &change, &task, AttemptEnd::Cancelled).await?;
    txn.commit().await?;
    let interrupted_lease = if current.status == TaskStatus::Running { task.lease_id.clone() } else { None };
    Ok(Cancelled { task, interrupted_lease })
}

/// The task a lease is running, or the task that lease ended; `None` for leases that were taken back or never
/// existed. Trace uploads are accepted for these leases only.
pub async fn task_of_lease(db: &impl ConnectionTrait, lease_id: &str) -> Result<Option<Model>> {
    let task = Tasks::find().filter(Column::LeaseId.eq(lease_id)).one(db).await?;
    Ok(task.filter(|t| t.status != TaskStatus::Queued))
}
