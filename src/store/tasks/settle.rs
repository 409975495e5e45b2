//! Settling leases (complete, fail) and cancelling tasks, each fenced by the lease or the status it expects.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    Statement, TransactionTrait,
    sea_query::{CaseStatement, Expr, SimpleExpr},
};
use serde_json::{Value as Json, json};

use super::{ENTITY_KIND, get};
use crate::{
    clock::Micros,
    error::{Error, Result},
    store::{
        audit::{self, Actor, Entry},
        cwom::{
            Change,
            task_model::{self, AttemptEnd},
        },
        entity::task::{Column, Entity as Tasks, Model, TaskStatus},
    },
};

/// How a settled lease ended, so the caller knows whether anything was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub task: Model,
    /// False when this exact settlement had already been recorded (a retried call); nothing was written.
    pub recorded: bool,
}

/// Records the result of a running lease. Repeating the call with the same lease returns the recorded completion.
pub async fn complete(db: &DatabaseConnection, now: Micros, lease_id: &str, result: Json) -> Result<Settled> {
    let mut settled = complete_many(db, now, vec![(lease_id.to_owned(), result)]).await?;
    settled.pop().unwrap_or_else(|| Err(Error::internal("complete", "no outcome")))
}

/// Records many completions in one transaction (one commit, one audit insert), each fenced by its own lease as in
/// `complete`. Returns one outcome per item, in order; an error of the whole transaction is returned as such, so
/// that the caller can retry the items one by one.
pub async fn complete_many(
    db: &DatabaseConnection,
    now: Micros,
    items: Vec<(String, Json)>,
) -> Result<Vec<Result<Settled>>> {
    let txn = db.begin().await?;
    let completed = if txn.get_database_backend() == DatabaseBackend::Postgres {
        complete_postgres(&txn, now, &items).await?
    } else {
        let mut completed = Vec::with_capacity(items.len());
        for chunk in items.chunks(ROWS_PER_COMPLETION) {
            completed.extend(complete_chunk(&txn, now, chunk).await?);
        }
        completed
    };
    let mut by_lease: HashMap<String, Model> = HashMap::with_capacity(items.len());
    for task in completed {
        if let Some(lease_id) = task.lease_id.clone() {
            by_lease.insert(lease_id, task);
        }
    }
    let recorded: Vec<Option<Model>> = items.iter().map(|(lease_id, _)| by_lease.remove(lease_id)).collect();
    let entries = recorded.iter().flatten().map(|task| settled_entry(task, "running", json!({}), None)).collect();
    audit::append(&txn, now, entries).await?;
    for task in recorded.iter().flatten().filter(|t| t.cwom_issue_id.is_some()) {
        task_model::on_attempt_end(&txn, &worker_change(task, now), task, AttemptEnd::Completed).await?;
    }
    txn.commit().await?;
    let mut outcomes = Vec::with_capacity(items.len());
    for ((lease_id, _), task) in items.iter().zip(recorded) {
        outcomes.push(match task {
            Some(task) => Ok(Settled { task, recorded: true }),
            None => replay_or_refuse(db, lease_id, |t| t.status == TaskStatus::Completed).await,
        });
    }
    Ok(outcomes)
}

/// Completions per UPDATE statement: each row picks its result from a CASE over the chunk's leases, so the chunk
/// is kept small enough for that to stay cheap.
const ROWS_PER_COMPLETION: usize = 128;

/// One UPDATE for a chunk of completions, each fenced by its lease and `running`; returns the rows it completed.
async fn complete_chunk(txn: &DatabaseTransaction, now: Micros, chunk: &[(String, Json)]) -> Result<Vec<Model>> {
    // The common result, `{}`, needs no branch of its own.
    let empty = json!({});
    let mut result = CaseStatement::new();
    let mut branches = 0;
    for (lease_id, value) in chunk.iter().filter(|(_, value)| *value != empty) {
        result = result.case(Column::LeaseId.eq(lease_id.as_str()), Expr::value(value.clone()));
        branches += 1;
    }
    let result: SimpleExpr = if branches == 0 { Expr::value(empty) } else { result.finally(Expr::value(empty)).into() };
    Ok(Tasks::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Completed.as_str()))
        .col_expr(Column::Result, result)
        .col_expr(Column::Error, Expr::value(Option::<String>::None))
        .col_expr(Column::CompletedAt, Expr::value(now))
        .col_expr(Column::LeaseExpiresAt, Expr::value(Option::<i64>::None))
        .filter(Column::LeaseId.is_in(chunk.iter().map(|(lease_id, _)| lease_id.as_str())))
        .filter(Column::Status.eq(TaskStatus::Running))
        .exec_with_returning(txn)
        .await?)
}

/// The whole group in one statement with one parameter, a JSON object from each lease to its result: the text does
/// not depend on the group's size, so PostgreSQL prepares and plans it once per connection. The rows are found
/// through the lease index (`= ANY` of the object's keys), each fenced by its lease and `running`.
async fn complete_postgres(txn: &DatabaseTransaction, now: Micros, items: &[(String, Json)]) -> Result<Vec<Model>> {
    const SQL: &str = "UPDATE tasks SET status = 'completed', result = $1::jsonb -> lease_id, error = NULL, \
        completed_at = $2, lease_expires_at = NULL \
        WHERE lease_id = ANY(ARRAY(SELECT jsonb_object_keys($1::jsonb))) AND status = 'running' RETURNING *";
    let results: serde_json::Map<String, Json> =
        items.iter().map(|(lease, result)| (lease.clone(), result.clone())).collect();
    let statement =
        Statement::from_sql_and_values(DatabaseBackend::Postgres, SQL, [Json::Object(results).into(), now.into()]);
    Ok(Tasks::find().from_raw_sql(statement).all(txn).await?)
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
