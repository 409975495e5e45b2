//! Enqueueing: one task or a batch, with idempotency keys and, on request, the task's work model.

use std::{collections::HashMap, sync::LazyLock};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, IdenStatic, IntoActiveModel,
    Iterable, ModelTrait, QueryFilter, TransactionTrait,
};
use serde_json::{Value as Json, json};

use super::{ENTITY_KIND, filters};
use crate::{
    clock::Micros,
    error::{Error, Result},
    spec::NewTask,
    store::{
        audit::{self, Actor, Entry},
        copy::{self, CopyRows},
        cwom::{
            Change,
            task_model::{self, CwomIds},
        },
        entity::task::{Column, Entity as Tasks, Model, TaskStatus},
    },
};

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
        concurrency_key: spec.concurrency_key,
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
    let inserted = match Tasks::insert(task.clone().into_active_model()).exec_without_returning(&txn).await {
        Ok(_) => filters::insert(&txn, std::slice::from_ref(&task)).await,
        Err(err) => Err(Error::from(err)),
    };
    if let Err(err) = inserted {
        txn.rollback().await?;
        // A concurrent enqueue with the same key won the race: answer as if we had found it first.
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
    if db.get_database_backend() == DatabaseBackend::Postgres {
        return insert_postgres(db, now, tasks).await;
    }
    let txn = db.begin().await?;
    for chunk in tasks.chunks(ROWS_PER_INSERT) {
        let rows = chunk.iter().map(|t| t.clone().into_active_model());
        Tasks::insert_many(rows).exec_without_returning(&txn).await?;
    }
    filters::insert(&txn, tasks).await?;
    audit::append(&txn, now, tasks.iter().map(created_entry).collect()).await?;
    txn.commit().await?;
    Ok(())
}

/// PostgreSQL: the tasks, their filter rows and their `created` entries, one COPY per table, in one transaction.
/// PostgreSQL reads each row as it comes, with nothing to plan and no JSON document around the rows to parse.
async fn insert_postgres(db: &DatabaseConnection, now: Micros, tasks: &[Model]) -> Result<()> {
    static TARGET: LazyLock<String> = LazyLock::new(|| {
        let columns: Vec<&str> = Column::iter().map(|c| c.as_str()).collect();
        format!("tasks ({})", columns.join(", "))
    });
    let mut rows = CopyRows::new();
    for task in tasks {
        for column in Column::iter() {
            rows.value(&task.get(column))?;
        }
        rows.end_row();
    }
    let mut txn = db.get_postgres_connection_pool().begin().await.map_err(copy::exec_err)?;
    copy::copy_in(&mut txn, TARGET.as_str(), rows).await?;
    filters::insert_postgres(&mut txn, tasks).await?;
    let entries = tasks.iter().map(|task| audit::Created {
        actor_kind: &task.requested_by_kind,
        actor_id: &task.requested_by_id,
        entity_kind: ENTITY_KIND,
        entity_id: &task.id,
        object: task,
        trace_id: &task.trace_id,
    });
    audit::append_created_postgres(&mut txn, now, entries).await?;
    txn.commit().await.map_err(copy::exec_err)?;
    Ok(())
}
