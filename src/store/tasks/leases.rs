//! Leases: claiming queued tasks for a worker stream, extending them, and taking them back.

use sea_orm::{
    ColumnTrait, Condition, DatabaseBackend, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait, Order, Query},
};
use serde_json::json;

use super::ENTITY_KIND;
use crate::{
    clock::Micros,
    error::Result,
    store::{
        audit::{self, Actor, Entry},
        cwom::{
            Change,
            task_model::{self, AttemptEnd},
        },
        entity::task::{Column, Entity as Tasks, Model, TaskStatus},
    },
};

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
