//! Task lifecycle queries. Every state change is one conditional UPDATE (the fence) and its audit entry, committed
//! in one transaction.
//!
//! Leases: a claim sets `status = running`, a fresh random `lease_id`, `lease_expires_at` and `attempt + 1`.
//! Workers name the lease in every call; the UPDATE only matches while the row still carries that lease in
//! `running`, so a stale lease can never settle a task and at most one settlement is ever recorded.

mod filters;
mod intake;
mod lease_tokens;
mod leases;
mod settle;
mod task_rows;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    Statement, TransactionTrait,
};

use super::entity::task::{Column, Entity as Tasks, Model, TaskStatus};
use crate::error::{Error, Result};

pub use intake::{EnqueueContext, Enqueued, enqueue, enqueue_many, enqueue_many_claiming, find_by_idempotency_key};
pub use leases::{
    ClaimRequest, ClaimRoute, Claimed, LeaseLoss, LeaseReport, claim_many, extend_leases, take_back_leases,
};
pub use settle::{Backoff, Cancelled, Settled, cancel, complete, complete_many, complete_many_claiming, fail};

/// `entity_kind` of tasks in the audit log.
pub const ENTITY_KIND: &str = "Task";

/// How far the table's size may move from the planner's estimate before the table is analyzed again: this many
/// rows, plus a fifth of the estimate.
const ANALYZE_THRESHOLD: f64 = 1000.0;
const ANALYZE_FRACTION: f64 = 0.2;

/// What PostgreSQL's statistics say about the task table, for the maintenance the server does on it.
struct TableState {
    /// Live rows, as counted by the statistics (inserts and deletes move it; updates do not).
    live: f64,
    /// Dead row versions not yet vacuumed away.
    dead: f64,
    /// Rows in the table, as last estimated.
    rows: f64,
    /// Whether autovacuum looks after the table (on for the server, and not turned off for the table).
    autovacuum: bool,
}

async fn table_state(db: &DatabaseConnection) -> Result<Option<TableState>> {
    const SQL: &str = "SELECT s.n_live_tup::float8, s.n_dead_tup::float8, c.reltuples::float8, \
        current_setting('autovacuum')::bool AND coalesce((SELECT option_value FROM pg_options_to_table(c.reloptions) \
        WHERE option_name = 'autovacuum_enabled'), 'true')::bool \
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relid = 'tasks'::regclass";
    let Some(row) = db.query_one_raw(Statement::from_string(DatabaseBackend::Postgres, SQL)).await? else {
        return Ok(None);
    };
    Ok(Some(TableState {
        live: row.try_get_by_index(0)?,
        dead: row.try_get_by_index(1)?,
        rows: row.try_get_by_index::<f64>(2)?.max(0.0),
        autovacuum: row.try_get_by_index(3)?,
    }))
}

/// Keeps PostgreSQL's estimate of the task table's size current. A queue grows fast: a bulk load takes it from
/// empty to a large backlog within a second, and autovacuum looks only once a minute, so until then the planner
/// plans for an empty table. Called every sweep; returns whether it analyzed. SQLite's claim is pinned to its index
/// instead.
///
/// Only a change of size counts, not the updates of leases and settlements: every task is updated twice, so
/// counting those analyzed a small busy table every few thousand tasks (measured: 8 analyses of 35-45 ms each in a
/// 20,000-task drain on a fresh database, a sixth of a core, and every analysis makes each connection plan its
/// statements again). The queries whose plans depend on how the statuses are spread are pinned to their indexes
/// (see `status_unindexed` and `store::db::connect_claims`).
pub async fn refresh_statistics(db: &DatabaseConnection) -> Result<bool> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(false);
    }
    let Some(state) = table_state(db).await? else { return Ok(false) };
    if (state.live - state.rows).abs() < ANALYZE_THRESHOLD + ANALYZE_FRACTION * state.rows {
        return Ok(false);
    }
    // Only the columns the queue's statements filter and sort on: the JSON columns make a full ANALYZE several
    // times dearer, and autovacuum keeps the statistics of the rest. A sample of 3,000 rows instead of the default
    // 30,000 tells the planner what it needs here (how much of the table is queued or running) at a tenth of the
    // cost, which matters because a busy queue crosses the threshold every few seconds.
    let txn = db.begin().await?;
    txn.execute_unprepared("SET LOCAL default_statistics_target = 10").await?;
    txn.execute_unprepared(
        "ANALYZE tasks (id, status, priority, queued_at, run_after, lease_id, lease_expires_at, worker_id, \
         concurrency_key, idempotency_key)",
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// Dead row versions beyond which the server vacuums the task table itself, when autovacuum will not: this many,
/// plus a tenth of the table.
const VACUUM_THRESHOLD: f64 = 20_000.0;
const VACUUM_FRACTION: f64 = 0.1;

/// Keeps the queue's indexes free of the entries leased and settled tasks leave behind, where PostgreSQL's
/// autovacuum will not (it is off for the server or for the table). Every lease and every settlement leaves a dead
/// version of the task's row, and the queue's index an entry for it at its head, which every claim steps over until
/// a vacuum removes it: without one, claims slow as the history grows (measured: a 200,000-task drain ran at three
/// quarters of the speed of a 20,000-task one, see BENCHMARKS.md). Past the threshold, a plain `VACUUM`, which
/// neither blocks writers nor waits for another server's vacuum (`SKIP_LOCKED`). Returns whether it vacuumed.
pub async fn vacuum_if_unattended(db: &DatabaseConnection) -> Result<bool> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(false);
    }
    let Some(state) = table_state(db).await? else { return Ok(false) };
    if state.autovacuum || state.dead < VACUUM_THRESHOLD + VACUUM_FRACTION * state.rows {
        return Ok(false);
    }
    db.execute_unprepared("VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) tasks").await?;
    Ok(true)
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
    /// Set by the server for agents, who see only the tasks they requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by_id: Option<String>,
}

impl TaskFilter {
    /// Whether a task passes the filter (its status aside, which events judge by the transition).
    pub fn matches(&self, task: &Model) -> bool {
        self.operation.as_ref().is_none_or(|o| *o == task.operation)
            && self.requested_by_kind.as_ref().is_none_or(|k| *k == task.requested_by_kind)
            && self.requested_by_id.as_ref().is_none_or(|id| *id == task.requested_by_id)
            && self.target_repo.as_ref().is_none_or(|r| *r == task.target_repo)
            && self.worker_id.as_ref().is_none_or(|w| Some(w) == task.worker_id.as_ref())
    }
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
        // A literal, so that PostgreSQL can use the partial index of the status (see `status_is`).
        query = query.filter(status_is(status));
    }
    if let Some(worker) = &filter.worker_id {
        query = query.filter(Column::WorkerId.eq(worker.as_str()));
    }
    Ok(filters::newest_first(query, filter, after_id).limit(limit).all(db).await?)
}

/// The task a lease is running, or the task that lease ended; `None` for leases that were taken back or never
/// existed. Trace uploads are accepted for these leases only.
pub async fn task_of_lease(db: &impl ConnectionTrait, lease_id: &str) -> Result<Option<Model>> {
    let task = Tasks::find().filter(lease_tokens::LeaseKeys::of([lease_id]).condition()).one(db).await?;
    Ok(task.filter(|t| t.status != TaskStatus::Queued))
}

/// The worker of each of `lease_ids` whose task `task_of_lease` would find, as (lease, worker), in one query for
/// all of them. Leases it does not find are left out.
pub async fn lease_holders<'a>(
    db: &impl ConnectionTrait,
    lease_ids: impl IntoIterator<Item = &'a str>,
) -> Result<std::collections::HashMap<String, String>> {
    let keys = lease_tokens::LeaseKeys::of(lease_ids);
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(Option<String>, Option<String>, TaskStatus)> = Tasks::find()
        .select_only()
        .columns([Column::LeaseId, Column::WorkerId, Column::Status])
        .filter(keys.condition())
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, _, status)| *status != TaskStatus::Queued)
        .filter_map(|(lease_id, worker_id, _)| Some((lease_id?, worker_id?)))
        .collect())
}

/// `status = '<literal>'`, inlined rather than bound: the partial indexes (`WHERE status = 'queued'` and
/// `'running'`) can only serve a query whose condition visibly matches theirs, and a bound parameter hides it (on
/// SQLite always, on PostgreSQL once a prepared statement switches to its generic plan).
pub(crate) fn status_is(status: TaskStatus) -> sea_orm::sea_query::Expr {
    use sea_orm::sea_query::{Expr, ExprTrait};
    Expr::col(Column::Status).eq(Expr::cust(format!("'{}'", status.as_str())))
}

/// A status test for statements that find their rows by id or lease, written so that no index can serve it. As
/// `status = 'running'` the partial indexes of the queue and the leases become candidates, and PostgreSQL's planner,
/// believing few tasks run, may scan one of them past every entry left by tasks that ran since the last vacuum. As
/// `status = ?`, SQLite compares the bound value with those indexes' conditions while planning and so prepares the
/// statement again at every execution.
pub(crate) fn status_unindexed(status: TaskStatus) -> sea_orm::sea_query::Expr {
    sea_orm::sea_query::Expr::cust(format!("coalesce(status, '') = '{}'", status.as_str()))
}

/// The earliest time after `now` at which a queued task becomes claimable, if any is scheduled.
pub async fn next_scheduled(
    db: &impl ConnectionTrait,
    now: crate::clock::Micros,
) -> Result<Option<crate::clock::Micros>> {
    let next: Option<Option<i64>> = Tasks::find()
        .select_only()
        .column_as(Column::RunAfter.min(), "next")
        .filter(status_is(TaskStatus::Queued))
        .filter(Column::RunAfter.gt(now))
        .into_tuple()
        .one(db)
        .await?;
    Ok(next.flatten())
}
