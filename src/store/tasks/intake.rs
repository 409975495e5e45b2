//! Enqueueing: one task or a batch, with idempotency keys and, on request, the task's work model.

use std::{
    collections::{HashMap, HashSet},
    sync::OnceLock,
};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, IdenStatic, IntoActiveModel,
    Iterable, ModelTrait, QueryFilter, TransactionTrait,
    sqlx::{self, Postgres, postgres::PgArguments, query::Query},
};
use serde_json::json;

use super::{
    ENTITY_KIND, filters,
    leases::{self, ClaimRequest, Claimed},
};
use crate::{
    clock::Micros,
    error::{Error, Result},
    spec::NewTask,
    store::{
        audit::{self, Actor, Entry},
        cwom::{
            Change,
            task_model::{self, CwomIds},
        },
        entity::task::{Column, Entity as Tasks, Model, TaskStatus},
        pg_arrays::{self, ColumnArray},
        sqlite_rows::RowInserts,
    },
};

/// Idempotency keys looked up per query (one bound value each).
const KEYS_PER_LOOKUP: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    pub task: Model,
    /// False when the idempotency key matched an existing task.
    pub created: bool,
    /// The task's work model, when it has one.
    pub cwom: Option<CwomIds>,
    /// Leased in the same transaction to a stream waiting for work (see `enqueue_many_claiming`): no other stream
    /// needs to look for it.
    pub dispatched: bool,
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

fn created_entry(task: &Model) -> Result<Entry> {
    let actor = Actor::new(&task.requested_by_kind, &task.requested_by_id);
    let snapshot = pg_arrays::json_text(&task.snapshot())?;
    Ok(Entry::created_written(actor, ENTITY_KIND, &task.id, snapshot, &task.trace_id))
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
    Ok(Enqueued { task, created: false, cwom, dispatched: false })
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
        audit::append(&txn, now, vec![created_entry(&task)?]).await?;
        let change = Change {
            now,
            actor: Actor::new(&task.requested_by_kind, &task.requested_by_id),
            trace_id: task.trace_id.clone(),
        };
        cwom = Some(task_model::build(&txn, &change, &task, &issue_id).await?);
    } else {
        audit::append(&txn, now, vec![created_entry(&task)?]).await?;
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
    Ok(Enqueued { task, created: true, cwom, dispatched: false })
}

/// Enqueues a batch in one transaction with multi-row inserts. Items repeating a key (of the database or of an
/// earlier item) return that task with `created = false`. Results come back in input order.
pub async fn enqueue_many(
    db: &DatabaseConnection,
    now: Micros,
    items: Vec<(NewTask, EnqueueContext)>,
) -> Result<Vec<Enqueued>> {
    Ok(enqueue_many_claiming(db, db, now, items, &[]).await?.0)
}

/// `enqueue_many`, and in the same transaction the claims of streams waiting for work, so that a task enqueued
/// while a worker waits reaches it with one commit instead of two. The claims run after the inserts and see the new
/// tasks among the others, so they lease in dispatch order as any claim does. `claim_db` is where claims run (see
/// `store::db::connect_claims`). One outcome per claim, in order; a claim the batch could not serve (a batch
/// that takes the single-item path) leases nothing, and its stream looks on its own.
pub async fn enqueue_many_claiming(
    db: &DatabaseConnection,
    claim_db: &DatabaseConnection,
    now: Micros,
    items: Vec<(NewTask, EnqueueContext)>,
    claims: &[ClaimRequest],
) -> Result<(Vec<Enqueued>, Vec<Claimed>)> {
    // Items that build a work model take the single-item path, each in its own transaction.
    if items.iter().any(|(_, ctx)| ctx.create_cwom) {
        let mut results = Vec::with_capacity(items.len());
        for (spec, ctx) in items {
            results.push(enqueue(db, now, spec, &ctx).await?);
        }
        return Ok((results, unserved(claims)));
    }
    let keys: Vec<String> = items.iter().filter_map(|(spec, _)| spec.idempotency_key.clone()).collect();
    let mut by_key: HashMap<String, Model> = HashMap::new();
    for chunk in keys.chunks(KEYS_PER_LOOKUP) {
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
            results.push(Enqueued { task: existing.clone(), created: false, cwom: None, dispatched: false });
            continue;
        }
        let task = new_row(spec.clone(), now, ctx);
        if let Some(key) = &task.idempotency_key {
            by_key.insert(key.clone(), task.clone());
        }
        fresh.push(task.clone());
        results.push(Enqueued { task, created: true, cwom: None, dispatched: false });
    }

    let claimed = match insert_with_audit(db, claim_db, now, &fresh, claims).await {
        Ok(claimed) => claimed,
        // A concurrent request took one of our keys; the single-item path resolves each race correctly.
        Err(Error::AlreadyExists(_)) => {
            let mut results = Vec::with_capacity(items.len());
            for (spec, ctx) in items {
                results.push(enqueue(db, now, spec, &ctx).await?);
            }
            return Ok((results, unserved(claims)));
        }
        Err(err) => return Err(err),
    };
    let leased: HashSet<&str> = claimed.iter().flat_map(|c| c.tasks.iter().map(|t| t.id.as_str())).collect();
    for result in results.iter_mut().filter(|r| r.created) {
        result.dispatched = leased.contains(result.task.id.as_str());
    }
    Ok((results, claimed))
}

/// One empty outcome per claim: claims this enqueue could not serve, whose streams look on their own.
fn unserved(claims: &[ClaimRequest]) -> Vec<Claimed> {
    claims.iter().map(|_| Claimed::default()).collect()
}

/// The new tasks with their filter rows and `created` entries, then the claims, in one transaction.
async fn insert_with_audit(
    db: &DatabaseConnection,
    claim_db: &DatabaseConnection,
    now: Micros,
    tasks: &[Model],
    claims: &[ClaimRequest],
) -> Result<Vec<Claimed>> {
    if tasks.is_empty() {
        return Ok(unserved(claims));
    }
    if db.get_database_backend() == DatabaseBackend::Postgres {
        let insert = insert_postgres(now, tasks)?;
        if claims.is_empty() {
            insert.execute(db.get_postgres_connection_pool()).await.map_err(pg_arrays::exec_err)?;
            return Ok(Vec::new());
        }
        // On a claim session, whose planner settings the claim statement needs.
        let mut txn = claim_db.get_postgres_connection_pool().begin().await.map_err(pg_arrays::exec_err)?;
        insert.execute(&mut *txn).await.map_err(pg_arrays::exec_err)?;
        let claimed = leases::claim_plain_within_postgres(&mut txn, now, claims).await?;
        txn.commit().await.map_err(pg_arrays::exec_err)?;
        return Ok(claimed);
    }
    let txn = db.begin().await?;
    insert_rows_sqlite(&txn, tasks).await?;
    filters::insert(&txn, tasks).await?;
    audit::append(&txn, now, tasks.iter().map(created_entry).collect::<Result<_>>()?).await?;
    let claimed = leases::claim_within(&txn, now, claims).await?;
    txn.commit().await?;
    Ok(claimed)
}

/// SQLite: the task rows, in multi-row inserts of fixed sizes (see `store::sqlite_rows`).
async fn insert_rows_sqlite(db: &impl ConnectionTrait, tasks: &[Model]) -> Result<()> {
    static INSERTS: OnceLock<RowInserts> = OnceLock::new();
    let inserts =
        INSERTS.get_or_init(|| RowInserts::new("tasks", &Column::iter().map(|c| c.as_str()).collect::<Vec<_>>()));
    inserts.insert(db, tasks, |task, values| values.extend(Column::iter().map(|column| task.get(column)))).await?;
    Ok(())
}

/// PostgreSQL: the tasks, their filter rows and their `created` entries as one statement, which commits on its own
/// (one round trip) unless run in a transaction. Each column of the batch is one array parameter (see
/// `store::pg_arrays`).
fn insert_postgres(now: Micros, tasks: &[Model]) -> Result<Query<'static, Postgres, PgArguments>> {
    let columns: Vec<Column> = Column::iter().collect();
    let mut arrays = Vec::with_capacity(columns.len());
    for column in &columns {
        arrays.push(ColumnArray::like(&tasks[0].get(*column))?);
    }
    let (mut actor_kinds, mut actor_ids, mut entity_ids, mut snapshots, mut trace_ids) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for task in tasks {
        for (column, array) in columns.iter().zip(&mut arrays) {
            array.push(task.get(*column))?;
        }
        actor_kinds.push(task.requested_by_kind.as_str());
        actor_ids.push(task.requested_by_id.as_str());
        entity_ids.push(task.id.as_str());
        // The `created` entry's snapshot, serialised straight from the task.
        snapshots.push(pg_arrays::json_text(&task.snapshot())?);
        trace_ids.push(task.trace_id.as_str());
    }

    // The same text for every batch (the types come from the model's columns), so it is built once.
    static SQL: OnceLock<String> = OnceLock::new();
    let sql: &'static str = SQL.get_or_init(|| insert_statement(&columns, &arrays));
    let mut query = sqlx::query(sql);
    for array in arrays {
        query = array.bind(query);
    }
    Ok(query
        .bind(now)
        .bind(audit::Action::Created.as_str())
        .bind(ENTITY_KIND)
        .bind(actor_kinds)
        .bind(actor_ids)
        .bind(entity_ids)
        .bind(snapshots)
        .bind(trace_ids))
}

/// The batch insert of `insert_postgres`: tasks from one array per column, filter rows from the inserted tasks,
/// `created` entries from arrays of their own, drawn ids in batch order.
fn insert_statement(columns: &[Column], arrays: &[ColumnArray]) -> String {
    let names = columns.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
    let params = arrays.iter().enumerate().map(|(i, a)| format!("${}::{}", i + 1, a.sql_type())).collect::<Vec<_>>();
    let fields = columns.iter().zip(arrays).map(|(c, a)| format!("r.{}{}", c.as_str(), a.cast())).collect::<Vec<_>>();
    let entry = arrays.len();
    format!(
        "WITH inserted AS (INSERT INTO tasks ({names}) SELECT {fields} FROM unnest({params}) AS r({names}) \
         RETURNING id, operation, requested_by_kind, requested_by_id, target_repo), \
         filtered AS ({filters}) \
         INSERT INTO audit_log (ts, actor_kind, actor_id, action, entity_kind, entity_id, before, after, note, trace_id) \
         SELECT ${ts}, e.actor_kind, e.actor_id, ${action}, ${kind}, e.entity_id, NULL, e.after::json, NULL, e.trace_id \
         FROM unnest(${a}::text[], ${b}::text[], ${c}::text[], ${d}::text[], ${e}::text[]) WITH ORDINALITY \
         AS e(actor_kind, actor_id, entity_id, after, trace_id, ord) ORDER BY e.ord",
        fields = fields.join(", "),
        params = params.join(", "),
        filters = filters::INSERT_FROM_INSERTED,
        ts = entry + 1,
        action = entry + 2,
        kind = entry + 3,
        a = entry + 4,
        b = entry + 5,
        c = entry + 6,
        d = entry + 7,
        e = entry + 8,
    )
}
