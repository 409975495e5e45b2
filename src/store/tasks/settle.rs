//! Settling leases (complete, fail) and cancelling tasks, each fenced by the lease or the status it expects.

use std::{collections::HashMap, sync::LazyLock};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    Statement, TransactionTrait,
    sea_query::Expr,
    sqlx::{self, Row},
};
use serde_json::{Value as Json, json};

use super::{ClaimRequest, Claimed, ENTITY_KIND, get, lease_tokens::LeaseKeys, leases, status_unindexed, task_rows};
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
        pg_arrays::{self, PgQuery},
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
    settled.pop().unwrap_or_else(|| Err(no_outcome()))
}

/// An item left without an outcome: a bug of this module, never a caller's mistake.
fn no_outcome() -> Error {
    Error::internal("complete", "no outcome")
}

/// Records many completions at once (one commit, one audit insert), each fenced by its own lease as in `complete`.
/// Returns one outcome per item, in order; an error means nothing was written, so that the caller can retry the
/// items one by one.
///
/// On PostgreSQL the tasks without a work model complete in a single statement that also writes their audit
/// entries; the rest (tasks with a work model, and leases that no longer match) take the general path.
pub async fn complete_many(
    db: &DatabaseConnection,
    now: Micros,
    items: Vec<(String, Json)>,
) -> Result<Vec<Result<Settled>>> {
    Ok(complete_many_claiming(db, db, now, items, &[]).await?.0)
}

/// `complete_many`, and on PostgreSQL, in the same transaction as the plain completions, the claims of streams
/// whose slots these completions free, so that a stream's next tasks come with the commit that frees its slots
/// instead of one commit later. The claims lease plain tasks only, as an enqueue's claims do (see
/// `leases::claim_plain_within_postgres`); a claim left short leaves its stream to look on its own. When the claims
/// ask for the same operations (the common case), the completions and the claims are one statement; otherwise one
/// transaction of several. `claim_db` is where claims run (see `store::db::connect_claims`). One outcome per claim,
/// in order; on SQLite none is served.
pub async fn complete_many_claiming(
    db: &DatabaseConnection,
    claim_db: &DatabaseConnection,
    now: Micros,
    items: Vec<(String, Json)>,
    claims: &[ClaimRequest],
) -> Result<(Vec<Result<Settled>>, Vec<Claimed>)> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        let settled = complete_in_transaction(db, now, items).await?;
        return Ok((settled, claims.iter().map(|_| Claimed::default()).collect()));
    }
    let (plain, claimed) = if claims.is_empty() {
        (complete_plain_postgres(db.get_postgres_connection_pool(), now, &items).await?, Vec::new())
    } else if leases::one_filter(claims) {
        complete_and_claim_plain_postgres(claim_db, now, &items, claims).await?
    } else {
        let mut txn = claim_db.get_postgres_connection_pool().begin().await.map_err(pg_arrays::exec_err)?;
        let plain = complete_plain_postgres(&mut *txn, now, &items).await?;
        let claimed = leases::claim_plain_within_postgres(&mut txn, now, claims).await?;
        txn.commit().await.map_err(pg_arrays::exec_err)?;
        (plain, claimed)
    };
    let mut by_lease: HashMap<String, Model> =
        plain.into_iter().filter_map(|task| Some((task.lease_id.clone()?, task))).collect();
    let mut outcomes: Vec<Option<Result<Settled>>> = items
        .iter()
        .map(|(lease_id, _)| by_lease.remove(lease_id).map(|task| Ok(Settled { task, recorded: true })))
        .collect();
    let rest: Vec<(String, Json)> =
        items.into_iter().zip(&outcomes).filter(|(_, done)| done.is_none()).map(|(item, _)| item).collect();
    if !rest.is_empty() {
        // What is already written stands, so a failure here is the failure of these items alone, one by one.
        let settled = match complete_in_transaction(db, now, rest.clone()).await {
            Ok(settled) => settled,
            Err(_) => {
                let mut settled = Vec::with_capacity(rest.len());
                for item in rest {
                    let one = complete_in_transaction(db, now, vec![item]).await;
                    settled.push(one.and_then(|mut one| one.pop().unwrap_or_else(|| Err(no_outcome()))));
                }
                settled
            }
        };
        let mut settled = settled.into_iter();
        for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
            *outcome = settled.next();
        }
    }
    Ok((outcomes.into_iter().map(|o| o.unwrap_or_else(|| Err(no_outcome()))).collect(), claimed))
}

/// Completions in one transaction: the tasks, their audit entries and their work models.
async fn complete_in_transaction(
    db: &DatabaseConnection,
    now: Micros,
    items: Vec<(String, Json)>,
) -> Result<Vec<Result<Settled>>> {
    let txn = db.begin().await?;
    // SQLite writes the entries in each chunk's own statement; PostgreSQL's general path writes them below.
    let logged = txn.get_database_backend() != DatabaseBackend::Postgres;
    let completed = if logged {
        let mut completed = Vec::with_capacity(items.len());
        for chunk in items.chunks(ROWS_PER_COMPLETION) {
            completed.extend(complete_chunk(&txn, now, chunk).await?);
        }
        completed
    } else {
        complete_postgres(&txn, now, &items).await?
    };
    let mut by_lease: HashMap<String, Model> = HashMap::with_capacity(items.len());
    for task in completed {
        if let Some(lease_id) = task.lease_id.clone() {
            by_lease.insert(lease_id, task);
        }
    }
    let recorded: Vec<Option<Model>> = items.iter().map(|(lease_id, _)| by_lease.remove(lease_id)).collect();
    if !logged {
        let entries = recorded.iter().flatten().map(|task| settled_entry(task, "running", json!({}), None)).collect();
        audit::append(&txn, now, entries).await?;
    }
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

/// Completions per UPDATE statement: each row looks its result up among the chunk's (a search through a JSON
/// object of them), so the chunk is kept small enough for that to stay cheap.
const ROWS_PER_COMPLETION: usize = 128;

/// SQLite's completion of a chunk and its audit entries, two statements in one text that the connection's thread
/// runs in one go; one text whatever the chunk's size, so that SQLite prepares it once per connection.
///
/// The insert comes first and writes the entries `settled_entry` makes for the tasks the update then completes: its
/// condition is the update's, and the single writer runs both statements inside the completion's transaction, so
/// they find the same rows, each once however often a chunk names its lease (in the order of the tasks' ids, as
/// PostgreSQL's plain completion keeps no order of the items either). Written as rows of their own, a group's
/// entries took a round trip to that thread per 64 of them. The parts every entry shares come from a template entry
/// (`?6`-`?11`).
///
/// The update: `?1` is a JSON object from each lease to its result's JSON text (a string, which `->>` hands back as
/// the text itself, stored as the result as it was written); `?3`-`?5` are the leases' keys (see `LeaseKeys`) as
/// JSON arrays. A matched row's lease is one of ours, hex digits alone, so it is a key of `?1` and safe inside the
/// path.
static SQLITE_COMPLETION_SQL: LazyLock<String> = LazyLock::new(|| {
    let fenced = "((id IN (SELECT value FROM json_each(?3)) AND lease_id IN (SELECT value FROM json_each(?4))) \
        OR (length(lease_id) = 32 AND lease_id IN (SELECT value FROM json_each(?5)))) \
        AND coalesce(status, '') = 'running'";
    format!(
        "INSERT INTO audit_log (ts, actor_kind, actor_id, action, entity_kind, entity_id, before, after, note, trace_id) \
         SELECT ?2, ?6, coalesce(worker_id, ''), ?7, ?8, id, ?9, ?10, ?11, trace_id FROM tasks WHERE {fenced} \
         ORDER BY id; \
         UPDATE tasks SET status = 'completed', result = ?1 ->> ('$.\"' || lease_id || '\"'), error = NULL, \
         completed_at = ?2, lease_expires_at = NULL WHERE {fenced} RETURNING *"
    )
});

/// One UPDATE for a chunk of completions (SQLite); returns the rows it completed.
async fn complete_chunk(txn: &DatabaseTransaction, now: Micros, chunk: &[(String, Json)]) -> Result<Vec<Model>> {
    let results: serde_json::Map<String, Json> =
        chunk.iter().map(|(lease_id, result)| (lease_id.clone(), Json::String(result.to_string()))).collect();
    let keys = LeaseKeys::of(chunk.iter().map(|(lease_id, _)| lease_id.as_str()));
    let array = |texts: &[String]| serde_json::to_string(texts).map_err(|e| Error::internal("complete", e));
    let template = completion_entry_template();
    let values: [sea_orm::Value; 11] = [
        Json::Object(results).to_string().into(),
        now.into(),
        array(&keys.task_ids)?.into(),
        array(&keys.tokens)?.into(),
        array(&keys.legacy)?.into(),
        template.actor.kind.as_str().into(),
        template.action.as_str().into(),
        template.entity_kind.into(),
        template.before.into(),
        template.after.into(),
        template.note.into(),
    ];
    let statement = Statement::from_sql_and_values(DatabaseBackend::Sqlite, SQLITE_COMPLETION_SQL.as_str(), values);
    task_rows::from_results(&txn.query_all_raw(statement).await?)
}

/// The whole group in one statement whose text does not depend on the group's size, so PostgreSQL prepares and
/// plans it once per connection: a JSON object from each lease to its result, and the leases' tasks. The rows are
/// found by primary key (or, for leases granted before tokens named their task, through the legacy lease index),
/// each fenced by its lease and `running`.
///
/// The status test is written so that no index can serve it. As `status = 'running'`, the statistics of a busy
/// queue (few tasks running) led the planner to the status index instead, whose `running` range holds an entry for
/// every task that ran since the last vacuum: measured, 3 ms per statement and most of the database's time in the
/// drain benchmark, against well under 0.1 ms through the lease index.
async fn complete_postgres(txn: &DatabaseTransaction, now: Micros, items: &[(String, Json)]) -> Result<Vec<Model>> {
    const SQL: &str = "UPDATE tasks SET status = 'completed', result = $1::jsonb -> lease_id, error = NULL, \
        completed_at = $2, lease_expires_at = NULL \
        WHERE ((id = ANY($3::text[]) AND lease_id = ANY(ARRAY(SELECT jsonb_object_keys($1::jsonb)))) \
        OR (length(lease_id) = 32 AND lease_id = ANY($4::text[]))) \
        AND coalesce(status, '') = 'running' \
        RETURNING *";
    let keys = LeaseKeys::of(items.iter().map(|(lease_id, _)| lease_id.as_str()));
    let values: [sea_orm::Value; 4] =
        [results_by_lease(items).into(), now.into(), keys.task_ids.into(), keys.legacy.into()];
    let statement = Statement::from_sql_and_values(DatabaseBackend::Postgres, SQL, values);
    task_rows::from_results(&txn.query_all_raw(statement).await?)
}

/// The plain completion's common table expressions: `done` completes the running tasks without a work model among
/// the items, and `done_logged` writes their audit entries, the ones `settled_entry` makes: every part that is the
/// same for all of them comes from a template entry, and the rest (the worker as actor, the task, its trace) from
/// each row. Neither the status test nor the work-model test can be served by an index, so the primary key is the
/// only way in (see `complete_postgres`). Leases granted before tokens named their task are not found here, and so
/// take the general path. Parameters `$1`-`$9`, bound by `bind_plain_completion`.
const PLAIN_COMPLETION_CTES: &str = "done AS (\
        UPDATE tasks SET status = 'completed', result = $1::jsonb -> lease_id, error = NULL, \
        completed_at = $2, lease_expires_at = NULL \
        WHERE id = ANY($9::text[]) AND lease_id = ANY(ARRAY(SELECT jsonb_object_keys($1::jsonb))) \
        AND coalesce(status, '') = 'running' AND coalesce(cwom_issue_id, '') = '' RETURNING *), \
        done_logged AS (INSERT INTO audit_log \
        (ts, actor_kind, actor_id, action, entity_kind, entity_id, before, after, note, trace_id) \
        SELECT $2, $3, coalesce(worker_id, ''), $4, $5, id, $6::text::json, $7::text::json, $8, trace_id FROM done)";

static PLAIN_COMPLETION_SQL: LazyLock<String> =
    LazyLock::new(|| format!("WITH {PLAIN_COMPLETION_CTES} SELECT * FROM done"));

/// The plain completion and the plain claim in one statement, and so one round trip and one commit: the completed
/// tasks (`part` 'completed') and then the claim's rows (`part` 'leased', as `leases::PLAIN_CLAIM_ROWS`). The claim
/// comes first, so that its parameters keep their numbers; the completion's follow. Both parts read the same
/// snapshot, and no row is in both: the completion updates running tasks, the claim queued ones.
static COMPLETION_AND_CLAIM_SQL: LazyLock<String> = LazyLock::new(|| {
    let completion = shifted_parameters(PLAIN_COMPLETION_CTES, 11);
    format!(
        "WITH {}, {completion} \
         SELECT 'completed' AS part, done.*, NULL::bigint AS ord, NULL::bigint AS picked FROM done \
         UNION ALL SELECT 'leased', claim.* FROM ({}) claim",
        leases::PLAIN_CLAIM_CTES,
        leases::PLAIN_CLAIM_ROWS
    )
});

/// `sql` with every parameter `$n` renumbered `$(n + by)`, so that statement fragments numbered on their own can be
/// put together. Our SQL has no dollar quoting, so every `$` followed by digits is a parameter.
fn shifted_parameters(sql: &str, by: usize) -> String {
    let mut shifted = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        shifted.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        match rest[..digits].parse::<usize>() {
            Ok(n) => shifted.push_str(&(n + by).to_string()),
            Err(_) => shifted.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    shifted.push_str(rest);
    shifted
}

/// A completion's audit entry (`settled_entry` of a completed task) with no task in it: the parts every completion
/// entry shares, for the statements that write the entries in SQL.
fn completion_entry_template() -> Entry {
    Entry::status_changed(
        Actor::worker(""),
        ENTITY_KIND,
        "",
        (TaskStatus::Running.as_str(), TaskStatus::Completed.as_str()),
        json!({}),
        None,
        "",
    )
}

/// Binds the parameters of `PLAIN_COMPLETION_CTES` for `items`, after any bound before them.
fn bind_plain_completion<'q>(query: PgQuery<'q>, now: Micros, items: &[(String, Json)]) -> PgQuery<'q> {
    let template = completion_entry_template();
    query
        .bind(results_by_lease(items))
        .bind(now)
        .bind(template.actor.kind.as_str())
        .bind(template.action.as_str())
        .bind(template.entity_kind)
        .bind(template.before)
        .bind(template.after)
        .bind(template.note)
        .bind(LeaseKeys::of(items.iter().map(|(lease_id, _)| lease_id.as_str())).task_ids)
}

/// Completes the running tasks without a work model among `items` and writes their audit entries, in one statement
/// and so one transaction of its own: one round trip instead of four (see `PLAIN_COMPLETION_CTES`).
async fn complete_plain_postgres<'c>(
    db: impl sqlx::PgExecutor<'c>,
    now: Micros,
    items: &[(String, Json)],
) -> Result<Vec<Model>> {
    let rows = bind_plain_completion(sqlx::query(PLAIN_COMPLETION_SQL.as_str()), now, items)
        .fetch_all(db)
        .await
        .map_err(pg_arrays::exec_err)?;
    Ok(task_rows::tasks(&rows)?.into_iter().flatten().collect())
}

/// The plain completion of `items` and the plain claims of `claims`, which ask for the same operations, in one
/// statement on the claim pool (see `COMPLETION_AND_CLAIM_SQL`): the completed tasks, and one outcome per claim.
async fn complete_and_claim_plain_postgres(
    claim_db: &DatabaseConnection,
    now: Micros,
    items: &[(String, Json)],
    claims: &[ClaimRequest],
) -> Result<(Vec<Model>, Vec<Claimed>)> {
    let claims: Vec<&ClaimRequest> = claims.iter().collect();
    let query = leases::bind_plain_claim(sqlx::query(COMPLETION_AND_CLAIM_SQL.as_str()), now, &claims)?;
    let rows = bind_plain_completion(query, now, items)
        .fetch_all(claim_db.get_postgres_connection_pool())
        .await
        .map_err(pg_arrays::exec_err)?;
    let mut completed_rows = Vec::new();
    let mut claim_rows = Vec::new();
    for row in rows {
        let part: &str = row.try_get("part").map_err(pg_arrays::exec_err)?;
        if part == "completed" { &mut completed_rows } else { &mut claim_rows }.push(row);
    }
    let completed = task_rows::tasks(&completed_rows)?.into_iter().flatten().collect();
    let (leased, picked) = leases::plain_claim_rows(&claim_rows, claims.len())?;
    Ok((completed, leases::plain_claims(&claims, leased, picked)))
}

/// The statements' first parameter: a JSON object from each lease to its result.
fn results_by_lease(items: &[(String, Json)]) -> Json {
    Json::Object(items.iter().map(|(lease, result)| (lease.clone(), result.clone())).collect())
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
        .filter(LeaseKeys::of([lease_id]).condition())
        .filter(status_unindexed(TaskStatus::Running))
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
        .filter(LeaseKeys::of([lease_id]).condition())
        .filter(status_unindexed(TaskStatus::Running))
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
        let requeue = fenced
            .col_expr(Column::Status, Expr::value(TaskStatus::Queued.as_str()))
            .col_expr(Column::RunAfter, Expr::value(run_after))
            .col_expr(Column::QueuedAt, Expr::value(now));
        let rows = task_rows::update_returning(&txn, requeue).await?;
        (rows, why)
    } else {
        let why = if retryable {
            format!("attempts exhausted ({} of {})", current.attempt, current.max_attempts)
        } else {
            "permanent failure".to_owned()
        };
        let end = fenced
            .col_expr(Column::Status, Expr::value(TaskStatus::Failed.as_str()))
            .col_expr(Column::CompletedAt, Expr::value(now));
        let rows = task_rows::update_returning(&txn, end).await?;
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
    let task = Tasks::find().filter(LeaseKeys::of([lease_id]).condition()).one(db).await?;
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
        .filter(status_unindexed(current.status));
    if current.status == TaskStatus::Queued {
        // A lease taken back earlier must not look like the one the cancellation interrupted.
        update = update.col_expr(Column::LeaseId, Expr::value(Option::<String>::None));
    }
    let updated = task_rows::update_returning(&txn, update).await?;
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

#[cfg(test)]
mod tests {
    use super::shifted_parameters;

    #[test]
    fn shifting_renumbers_every_parameter_and_nothing_else() {
        assert_eq!(
            shifted_parameters("a = $1 AND b = ANY($12::text[]) AND c = '$' || $9", 11),
            "a = $12 AND b = ANY($23::text[]) AND c = '$' || $20"
        );
        assert_eq!(shifted_parameters("no parameters", 3), "no parameters");
    }
}
