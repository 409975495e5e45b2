//! Leases: claiming queued tasks for a worker stream, extending them, and taking them back.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        LazyLock,
        atomic::{AtomicBool, Ordering},
    },
};

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, Statement, TransactionTrait,
    sea_query::{BinOper, Expr, ExprTrait, LockBehavior, LockType, Order, Query, SqliteQueryBuilder},
    sqlx::{self, Row, postgres::PgRow},
};
use serde_json::json;

use super::{
    ENTITY_KIND,
    lease_tokens::{self, LeaseKeys},
    status_is, status_unindexed, task_rows,
};
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

/// What a claim needs to know about the stream it claims for.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub worker_id: String,
    /// Empty means every operation.
    pub operations: Vec<String>,
    pub limit: u64,
    pub lease_timeout: Micros,
    /// `trace_path` is this prefix followed by the task id.
    pub trace_uri_prefix: String,
    /// How many tasks with the same concurrency key may run at once.
    pub concurrency_limit: u32,
}

/// What a claim leased, and how many eligible tasks it left queued because their concurrency key filled up during
/// the claim (a sign that other tasks may be waiting behind them).
#[derive(Debug, Default)]
pub struct Claimed {
    pub tasks: Vec<Model>,
    pub capped: usize,
}

/// Serves several claims (one per stream) in one transaction, in order, with one audit insert and one commit.
/// Each leases up to `limit` eligible queued tasks to its worker: highest priority first, FIFO within a priority,
/// never more running tasks per concurrency key than the limit. Each lease gets a fresh unguessable token (32 hex
/// characters) made by the database.
///
/// Per claim, three steps: pick candidates (on PostgreSQL locked with FOR UPDATE SKIP LOCKED, so concurrent
/// claimers on any server pass each other by), admit keyed candidates per key while holding that key's lock (a
/// transaction-scoped advisory lock on PostgreSQL; SQLite has a single writer), then lease the admitted rows.
///
/// On PostgreSQL, `db` must be a pool made by `store::db::connect_claims`, whose sessions plan as the claim needs,
/// and `route` is shared by every claim of the server (see `ClaimRoute`).
pub async fn claim_many(
    db: &DatabaseConnection,
    route: &ClaimRoute,
    now: Micros,
    requests: &[ClaimRequest],
) -> Result<Vec<Claimed>> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        return claim_many_postgres(db, route, now, requests).await;
    }
    claim_in_transaction(db, now, requests).await
}

/// Which way the next PostgreSQL claim starts. The one-statement claim leases only plain tasks; when the head of
/// the queue holds keyed or work-model tasks, it picks them, leases none of them, and the claim pays for a second
/// round, the transaction. So once a plain statement meets such tasks, claims go straight to the transaction, until
/// one of them leases none: the head of the queue is plain again. Either way leases the same tasks; this only
/// saves a statement.
#[derive(Debug, Default)]
pub struct ClaimRoute {
    keyed_ahead: AtomicBool,
}

impl ClaimRoute {
    fn keyed_ahead(&self) -> bool {
        self.keyed_ahead.load(Ordering::Relaxed)
    }

    fn set_keyed_ahead(&self, keyed_ahead: bool) {
        self.keyed_ahead.store(keyed_ahead, Ordering::Relaxed);
    }
}

/// The claim as one transaction of several statements: candidates, admission under key locks, lease, audit.
async fn claim_in_transaction(db: &DatabaseConnection, now: Micros, requests: &[ClaimRequest]) -> Result<Vec<Claimed>> {
    let txn = db.begin().await?;
    let results = claim_within(&txn, now, requests).await?;
    txn.commit().await?;
    Ok(results)
}

/// The claims of `claim_in_transaction`, inside a transaction the caller commits.
pub(super) async fn claim_within(
    txn: &DatabaseTransaction,
    now: Micros,
    requests: &[ClaimRequest],
) -> Result<Vec<Claimed>> {
    let mut key_locks = KeyLocks::default();
    let mut results = Vec::with_capacity(requests.len());
    let mut entries = Vec::new();
    let mut exhausted = Exhausted::default();
    for req in requests {
        if exhausted.covers(req) {
            results.push(Claimed::default());
            continue;
        }
        let candidates = candidates(txn, now, req).await?;
        if (candidates.len() as u64) < req.limit {
            exhausted.add(req);
        }
        if candidates.is_empty() {
            results.push(Claimed::default());
            continue;
        }
        let (admitted, capped) = admit(txn, &mut key_locks, candidates, req.concurrency_limit).await?;
        let mut claimed = lease_and_log(txn, now, req, &admitted, &mut entries).await?;
        let actor = Actor::worker(&req.worker_id);
        if claimed.iter().any(|t| t.cwom_issue_id.is_some()) {
            // The task's own entry comes first in the log, then what the lease did to its work model.
            audit::append(txn, now, std::mem::take(&mut entries)).await?;
            for task in claimed.iter().filter(|t| t.cwom_issue_id.is_some()) {
                let change = Change { now, actor: actor.clone(), trace_id: task.trace_id.clone() };
                task_model::on_leased(txn, &change, task).await?;
            }
        }
        sort_in_dispatch_order(&mut claimed);
        results.push(Claimed { tasks: claimed, capped });
    }
    audit::append(txn, now, entries).await?;
    Ok(results)
}

/// PostgreSQL: the claims of a group that ask for the same operations are served by one plain statement, which
/// picks the candidates of all of them, leases those without a concurrency key or a work model, hands them out to
/// the claims in order and writes their audit entries (one round trip, committed on its own). Only when it picked
/// keyed or work-model candidates do the claims it left short take the general transaction, which admits keys
/// under their locks and records the work model. While `route` says such tasks head the queue, claims take the
/// transaction at once.
///
/// One statement for many claims matters: a statement's fixed cost (snapshot, locks on the table and its indexes,
/// executor start, commit) is paid once per group instead of once per stream.
async fn claim_many_postgres(
    db: &DatabaseConnection,
    route: &ClaimRoute,
    now: Micros,
    requests: &[ClaimRequest],
) -> Result<Vec<Claimed>> {
    if route.keyed_ahead() {
        return claim_keyed_many_postgres(db, route, now, requests).await;
    }
    let mut results: Vec<Option<Claimed>> = requests.iter().map(|_| None).collect();
    for group in same_filter_groups(requests) {
        let group_requests: Vec<&ClaimRequest> = group.iter().map(|&i| &requests[i]).collect();
        let outcome = claim_plain_then_keyed_postgres(db, route, now, &group_requests).await;
        let claimed = match outcome {
            Ok(claimed) => claimed,
            // What earlier claims of the group committed stands: their streams get their tasks.
            Err(err) if results.iter().flatten().any(|r| !r.tasks.is_empty()) => {
                tracing::warn!(error = %err, streams = group.len(), "claim failed; the streams will look again");
                group.iter().map(|_| Claimed::default()).collect()
            }
            Err(err) => return Err(err),
        };
        for (i, claimed) in group.into_iter().zip(claimed) {
            results[i] = Some(claimed);
        }
    }
    Ok(results.into_iter().map(Option::unwrap_or_default).collect())
}

/// The indexes of `requests`, grouped by the operations they ask for, in order of first appearance.
fn same_filter_groups(requests: &[ClaimRequest]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, req) in requests.iter().enumerate() {
        match groups.iter_mut().find(|g| requests[g[0]].operations == req.operations) {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// The plain statement for claims of the same filter, then, if it picked keyed or work-model candidates, the
/// transaction for what each claim still lacks.
async fn claim_plain_then_keyed_postgres(
    db: &DatabaseConnection,
    route: &ClaimRoute,
    now: Micros,
    requests: &[&ClaimRequest],
) -> Result<Vec<Claimed>> {
    let (leased, picked) = claim_plain_postgres(db.get_postgres_connection_pool(), now, requests).await?;
    let leased_count: usize = leased.iter().map(Vec::len).sum();
    let mut results = Vec::with_capacity(requests.len());
    let keyed_picked = picked > leased_count;
    if keyed_picked {
        route.set_keyed_ahead(true);
    }
    for (req, mut tasks) in requests.iter().zip(leased) {
        let mut capped = 0;
        let short = req.limit.saturating_sub(tasks.len() as u64);
        if keyed_picked && short > 0 {
            let rest = ClaimRequest { limit: short, ..(*req).clone() };
            match claim_in_transaction(db, now, std::slice::from_ref(&rest)).await {
                Ok(mut more) => {
                    if let Some(more) = more.pop() {
                        capped = more.capped;
                        tasks.extend(more.tasks);
                    }
                }
                // The plain leases of the group are committed: push them; the stream looks again for the rest.
                Err(err) if leased_count > 0 => {
                    tracing::warn!(error = %err, worker_id = %req.worker_id, "claim of keyed tasks failed");
                    // Not exhausted: the stream may claim again.
                    capped = short as usize;
                }
                Err(err) => return Err(err),
            }
        }
        sort_in_dispatch_order(&mut tasks);
        results.push(Claimed { tasks, capped });
    }
    Ok(results)
}

/// The transaction alone, claim by claim, while keyed or work-model tasks head the queue; a claim that leases none
/// of them sends the next claims back to the plain statement.
async fn claim_keyed_many_postgres(
    db: &DatabaseConnection,
    route: &ClaimRoute,
    now: Micros,
    requests: &[ClaimRequest],
) -> Result<Vec<Claimed>> {
    let mut results: Vec<Claimed> = Vec::with_capacity(requests.len());
    let mut exhausted = Exhausted::default();
    for req in requests {
        if exhausted.covers(req) {
            results.push(Claimed::default());
            continue;
        }
        let claimed = match claim_in_transaction(db, now, std::slice::from_ref(req)).await {
            Ok(mut claimed) => claimed.pop().unwrap_or_default(),
            Err(err) if results.iter().any(|r| !r.tasks.is_empty()) => {
                tracing::warn!(error = %err, worker_id = %req.worker_id, "claim failed; the stream will look again");
                results.push(Claimed::default());
                continue;
            }
            Err(err) => return Err(err),
        };
        if !claimed.tasks.iter().any(|t| t.concurrency_key.is_some() || t.cwom_issue_id.is_some()) {
            route.set_keyed_ahead(false);
        }
        if ((claimed.tasks.len() + claimed.capped) as u64) < req.limit {
            exhausted.add(req);
        }
        results.push(claimed);
    }
    Ok(results)
}

/// Operation filters whose eligible tasks ran out during one group of claims: later claims of the group with the
/// same filter, or any claim once every operation ran out, need not look. `None` stands for every operation.
#[derive(Default)]
struct Exhausted<'a>(Vec<Option<&'a [String]>>);

impl<'a> Exhausted<'a> {
    fn filter(req: &ClaimRequest) -> Option<&[String]> {
        (!req.operations.is_empty()).then_some(req.operations.as_slice())
    }

    fn covers(&self, req: &ClaimRequest) -> bool {
        let filter = Self::filter(req);
        self.0.iter().any(|e| e.is_none() || *e == filter)
    }

    fn add(&mut self, req: &'a ClaimRequest) {
        self.0.push(Self::filter(req));
    }
}

/// Highest priority first, FIFO within a priority: the order a stream pushes its claimed tasks in.
fn sort_in_dispatch_order(tasks: &mut [Model]) {
    tasks.sort_by(|a, b| (-a.priority, a.queued_at, &a.id).cmp(&(-b.priority, b.queued_at, &b.id)));
}

/// The plain claim's common table expressions, for claims that ask for the same operations: `picked` holds as
/// many eligible candidates as the claims want together, in dispatch order (locked, skipping rows other claimers
/// hold); `leased` leases those without a concurrency key or a work model, the first ones to the first claim and so
/// on (each row with its claim's position, `ord`); `lease_logged` writes their audit entries, the same entries
/// `claim_in_transaction` writes. Parameters `$1`-`$11`, bound by `bind_plain_claim`. The lease's document is put
/// together as the text `serde_json` writes for `lease_entry`'s (compact, keys in order), the form the audit chain
/// hashes as it is; `to_json` escapes a string as `serde_json` does.
///
/// The server-wide settings (lease timeout, trace prefix, concurrency limit) are taken from the first claim; every
/// claim of a server has the same ones.
pub(super) const PLAIN_CLAIM_CTES: &str = "wants AS (\
        SELECT w.worker_id, w.wanted, w.ord, (sum(w.wanted) OVER (ORDER BY w.ord))::bigint - w.wanted AS after \
        FROM unnest($6::text[], $4::bigint[]) WITH ORDINALITY AS w(worker_id, wanted, ord)), \
        picked AS (\
        SELECT id, concurrency_key, cwom_issue_id, priority, queued_at FROM tasks \
        WHERE status = 'queued' AND run_after <= $1 \
        AND (cardinality($2::text[]) = 0 OR operation = ANY($2::text[])) \
        AND (concurrency_key IS NULL OR (SELECT COUNT(*) FROM tasks r WHERE r.status = 'running' \
             AND r.concurrency_key = tasks.concurrency_key) < $3) \
        ORDER BY priority DESC, queued_at, id LIMIT (SELECT sum(wanted)::bigint FROM wants) FOR UPDATE SKIP LOCKED), \
        plain AS (\
        SELECT id, row_number() OVER (ORDER BY priority DESC, queued_at, id) AS rank FROM picked \
        WHERE concurrency_key IS NULL AND cwom_issue_id IS NULL), \
        assigned AS (\
        SELECT plain.id, wants.worker_id, wants.ord FROM plain \
        JOIN wants ON plain.rank > wants.after AND plain.rank <= wants.after + wants.wanted), \
        leased AS (\
        UPDATE tasks SET status = 'running', \
        lease_id = replace(tasks.id, '-', '') || replace(gen_random_uuid()::text, '-', ''), \
        lease_expires_at = $5, attempt = tasks.attempt + 1, worker_id = assigned.worker_id, started_at = $1, \
        trace_path = $7 || tasks.id \
        FROM assigned WHERE tasks.id = assigned.id \
        RETURNING tasks.*, assigned.ord), \
        lease_logged AS (INSERT INTO audit_log \
        (ts, actor_kind, actor_id, action, entity_kind, entity_id, before, after, note, trace_id) \
        SELECT $1, $8, worker_id, $9, $10, id, $11::text::json, \
        format('{\"attempt\":%s,\"concurrency_key\":%s,\"status\":\"running\",\"worker_id\":%s}', \
               attempt, coalesce(to_json(concurrency_key)::text, 'null'), to_json(worker_id)::text)::json, \
        format('Status changed: queued -> running: leased to %s (attempt %s of %s)', worker_id, attempt, max_attempts), \
        trace_id FROM leased ORDER BY ord, priority DESC, queued_at, id)";

/// The rows a statement with `PLAIN_CLAIM_CTES` answers for its claims: the leased tasks with their `ord`, and on
/// every row the number of candidates picked (one row with that count alone when nothing was leased). Read by
/// `plain_claim_rows`.
pub(super) const PLAIN_CLAIM_ROWS: &str =
    "SELECT leased.*, counted.picked FROM (SELECT COUNT(*) AS picked FROM picked) counted LEFT JOIN leased ON true";

static PLAIN_CLAIM_SQL: LazyLock<String> = LazyLock::new(|| format!("WITH {PLAIN_CLAIM_CTES} {PLAIN_CLAIM_ROWS}"));

/// Binds the parameters of `PLAIN_CLAIM_CTES` for `requests` (at least one), after any bound before them.
pub(super) fn bind_plain_claim<'q>(query: PgQuery<'q>, now: Micros, requests: &[&ClaimRequest]) -> Result<PgQuery<'q>> {
    let first = requests.first().ok_or_else(|| Error::internal("claim", "a statement with no claim"))?;
    let template = lease_entry("", "", 0, 0, None, "");
    let before = template.before;
    let workers: Vec<String> = requests.iter().map(|r| r.worker_id.clone()).collect();
    let wanted: Vec<i64> = requests.iter().map(|r| r.limit as i64).collect();
    Ok(query
        .bind(now)
        .bind(first.operations.clone())
        .bind(i64::from(first.concurrency_limit))
        .bind(wanted)
        .bind(now + first.lease_timeout)
        .bind(workers)
        .bind(first.trace_uri_prefix.clone())
        .bind(template.actor.kind.as_str())
        .bind(template.action.as_str())
        .bind(template.entity_kind)
        .bind(before))
}

/// Each claim's leased tasks among `PLAIN_CLAIM_ROWS` answered for `claims` claims, and how many candidates were
/// picked in all.
pub(super) fn plain_claim_rows(rows: &[PgRow], claims: usize) -> Result<(Vec<Vec<Model>>, usize)> {
    let picked = match rows.first() {
        Some(row) => row.try_get::<i64, _>("picked").map_err(pg_arrays::exec_err)? as usize,
        None => 0,
    };
    let mut leased: Vec<Vec<Model>> = (0..claims).map(|_| Vec::new()).collect();
    for (row, task) in rows.iter().zip(task_rows::tasks(rows)?) {
        // The one row of a claim that leased nothing carries only the count.
        let Some(task) = task else { continue };
        let ord = row.try_get::<i64, _>("ord").map_err(pg_arrays::exec_err)?;
        if let Some(tasks) = leased.get_mut((ord - 1) as usize) {
            tasks.push(task);
        }
    }
    Ok((leased, picked))
}

/// The plain claim as one statement for claims that ask for the same operations (see `PLAIN_CLAIM_CTES`). Returns
/// each claim's leased tasks and how many candidates were picked in all.
///
/// `conn` is the claim pool (the statement commits on its own) or a transaction that also does something else.
async fn claim_plain_postgres<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    now: Micros,
    requests: &[&ClaimRequest],
) -> Result<(Vec<Vec<Model>>, usize)> {
    if requests.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let rows = bind_plain_claim(sqlx::query(PLAIN_CLAIM_SQL.as_str()), now, requests)?
        .fetch_all(conn)
        .await
        .map_err(pg_arrays::exec_err)?;
    plain_claim_rows(&rows, requests.len())
}

/// PostgreSQL: serves `requests` inside `txn`, which the caller commits, with the plain statement alone. Keyed and
/// work-model tasks are left queued and counted as `capped`, so that their streams look again on their own.
pub(super) async fn claim_plain_within_postgres(
    txn: &mut sqlx::PgConnection,
    now: Micros,
    requests: &[ClaimRequest],
) -> Result<Vec<Claimed>> {
    let mut results: Vec<Option<Claimed>> = requests.iter().map(|_| None).collect();
    for group in same_filter_groups(requests) {
        let group_requests: Vec<&ClaimRequest> = group.iter().map(|&i| &requests[i]).collect();
        let (leased, picked) = claim_plain_postgres(&mut *txn, now, &group_requests).await?;
        for (i, claimed) in group.into_iter().zip(plain_claims(&group_requests, leased, picked)) {
            results[i] = Some(claimed);
        }
    }
    Ok(results.into_iter().map(Option::unwrap_or_default).collect())
}

/// The claims of one plain statement, each with its tasks in dispatch order. The keyed candidates it picked and
/// left queued go to the claims left short, as `capped`, so that their streams look again.
pub(super) fn plain_claims(requests: &[&ClaimRequest], leased: Vec<Vec<Model>>, picked: usize) -> Vec<Claimed> {
    let mut capped_left = picked - leased.iter().map(Vec::len).sum::<usize>();
    requests
        .iter()
        .zip(leased)
        .map(|(req, mut tasks)| {
            sort_in_dispatch_order(&mut tasks);
            let short = (req.limit as usize).saturating_sub(tasks.len());
            let capped = short.min(capped_left);
            capped_left -= capped;
            Claimed { tasks, capped }
        })
        .collect()
}

/// Whether every claim of `requests` asks for the same operations, so that one plain statement serves them all.
pub(super) fn one_filter(requests: &[ClaimRequest]) -> bool {
    requests.windows(2).all(|pair| pair[0].operations == pair[1].operations)
}

/// The audit entry of a lease; the plain PostgreSQL claim writes the same one in SQL.
fn lease_entry(
    worker_id: &str,
    task_id: &str,
    attempt: i32,
    max_attempts: i32,
    concurrency_key: Option<&str>,
    trace_id: &str,
) -> Entry {
    Entry::status_changed(
        Actor::worker(worker_id),
        ENTITY_KIND,
        task_id,
        ("queued", "running"),
        json!({ "worker_id": worker_id, "attempt": attempt, "concurrency_key": concurrency_key }),
        Some(&format!("leased to {worker_id} (attempt {attempt} of {max_attempts})")),
        trace_id,
    )
}

/// Eligible queued tasks in dispatch order, skipping keys that are already full, as (id, concurrency key).
async fn candidates(
    txn: &DatabaseTransaction,
    now: Micros,
    req: &ClaimRequest,
) -> Result<Vec<(String, Option<String>)>> {
    let mut query = Query::select();
    query
        .columns([Column::Id, Column::ConcurrencyKey])
        .from(Tasks)
        .and_where(status_is(TaskStatus::Queued))
        .and_where(Column::RunAfter.lte(now))
        .cond_where(
            // The limit is a number of ours, inlined: a bound value in custom SQL would need per-backend placeholders.
            Condition::any().add(Column::ConcurrencyKey.is_null()).add(Expr::cust(format!(
                "(SELECT COUNT(*) FROM tasks r WHERE r.status = 'running' \
                 AND r.concurrency_key = tasks.concurrency_key) < {}",
                req.concurrency_limit
            ))),
        )
        .order_by(Column::Priority, Order::Desc)
        .order_by(Column::QueuedAt, Order::Asc)
        .order_by(Column::Id, Order::Asc)
        // Ignored by SQLite, which has a single writer.
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    if !req.operations.is_empty() {
        query.and_where(Column::Operation.is_in(req.operations.iter().map(String::as_str)));
    }
    let rows = match txn.get_database_backend() {
        DatabaseBackend::Sqlite => {
            // SQLite's planner, seeing no LIMIT-aware cost, prefers sorting every queued row through another index;
            // the claim index yields them in dispatch order, so the claim reads `limit` rows whatever the backlog.
            // The limit is inlined: SQLite plans with the value bound to `LIMIT ?` and so would prepare the
            // statement again at every execution.
            let (sql, values) = query.build(SqliteQueryBuilder);
            let sql = sql.replacen("FROM \"tasks\"", "FROM \"tasks\" INDEXED BY tasks_claim_idx", 1);
            let sql = format!("{sql} LIMIT {}", req.limit);
            txn.query_all_raw(Statement::from_sql_and_values(DatabaseBackend::Sqlite, sql, values.0)).await?
        }
        _ => txn.query_all(query.limit(req.limit)).await?,
    };
    rows.iter()
        .map(|row| Ok((row.try_get_by_index::<String>(0)?, row.try_get_by_index::<Option<String>>(1)?)))
        .collect()
}

/// The concurrency keys a claim transaction has locked (PostgreSQL advisory locks, held until it ends).
///
/// Waiting for a lock only ever happens in ascending key order, so two claimers never wait on each other in a
/// cycle. A transaction serving several streams meets keys out of order; a key below one it already holds is only
/// tried, and if another claimer holds it, it is treated as full for now (the stream looks again at once).
#[derive(Default)]
struct KeyLocks {
    held: HashSet<String>,
    highest: Option<String>,
}

impl KeyLocks {
    /// Whether the key is now locked by this transaction.
    async fn lock(&mut self, txn: &DatabaseTransaction, key: &str) -> Result<bool> {
        let backend = txn.get_database_backend();
        if backend != DatabaseBackend::Postgres || self.held.contains(key) {
            return Ok(true);
        }
        let in_order = self.highest.as_deref().is_none_or(|highest| key > highest);
        let sql = if in_order {
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))::text IS NOT NULL"
        } else {
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))"
        };
        let row = txn.query_one_raw(Statement::from_sql_and_values(backend, sql, [key.into()])).await?;
        let locked = match row {
            Some(row) => row.try_get_by_index::<bool>(0)?,
            None => false,
        };
        if locked {
            self.held.insert(key.to_owned());
            if in_order {
                self.highest = Some(key.to_owned());
            }
        }
        Ok(locked)
    }
}

/// Keeps unkeyed candidates, and per key as many as the key has room for. Returns the admitted ids and how many
/// were held back.
async fn admit(
    txn: &DatabaseTransaction,
    locks: &mut KeyLocks,
    candidates: Vec<(String, Option<String>)>,
    limit: u32,
) -> Result<(Vec<String>, usize)> {
    let mut admitted = Vec::with_capacity(candidates.len());
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, key) in candidates {
        match key {
            None => admitted.push(id),
            Some(key) => by_key.entry(key).or_default().push(id),
        }
    }
    let mut capped = 0;
    for (key, ids) in by_key {
        if !locks.lock(txn, &key).await? {
            capped += ids.len();
            continue;
        }
        // Counted after taking the lock: every claim for this key that came before us has committed.
        let running = Tasks::find()
            .filter(Column::ConcurrencyKey.eq(key.as_str()))
            .filter(status_is(TaskStatus::Running))
            .count(txn)
            .await?;
        let room = u64::from(limit).saturating_sub(running) as usize;
        capped += ids.len().saturating_sub(room);
        admitted.extend(ids.into_iter().take(room));
    }
    Ok((admitted, capped))
}

/// Leases `ids` to the claim's worker and records each lease's audit entry (`lease_entry`): SQLite writes them in
/// the lease's own statement; elsewhere they are added to `entries`, which the claim writes in one insert.
async fn lease_and_log(
    txn: &DatabaseTransaction,
    now: Micros,
    req: &ClaimRequest,
    ids: &[String],
    entries: &mut Vec<Entry>,
) -> Result<Vec<Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    if txn.get_database_backend() == DatabaseBackend::Sqlite {
        return lease_sqlite(txn, now, req, ids).await;
    }
    let claimed = lease(txn, now, req, ids).await?;
    entries.extend(claimed.iter().map(|t| {
        lease_entry(&req.worker_id, &t.id, t.attempt, t.max_attempts, t.concurrency_key.as_deref(), &t.trace_id)
    }));
    Ok(claimed)
}

async fn lease(txn: &DatabaseTransaction, now: Micros, req: &ClaimRequest, ids: &[String]) -> Result<Vec<Model>> {
    let token = lease_tokens::fresh_token(txn.get_database_backend());
    let update = Tasks::update_many()
        .col_expr(Column::Status, Expr::value(TaskStatus::Running.as_str()))
        .col_expr(Column::LeaseId, Expr::cust(token))
        .col_expr(Column::LeaseExpiresAt, Expr::value(now + req.lease_timeout))
        .col_expr(Column::Attempt, Expr::col(Column::Attempt).add(1))
        .col_expr(Column::WorkerId, Expr::value(req.worker_id.as_str()))
        .col_expr(Column::StartedAt, Expr::value(now))
        .col_expr(
            Column::TracePath,
            Expr::value(req.trace_uri_prefix.as_str()).binary(BinOper::Custom("||"), Expr::col(Column::Id)),
        )
        // No status condition: the candidates were queued and are locked by this transaction (FOR UPDATE on
        // PostgreSQL, the single writer on SQLite). Without it, only the primary key matches the condition, so no
        // planner, whatever its statistics, scans a partial index of the queue instead.
        .filter(Column::Id.is_in(ids.iter().map(String::as_str)));
    task_rows::update_returning(txn, update).await
}

/// SQLite's lease and its audit entries, two statements in one text that the connection's thread runs in one go.
/// The lease is the statement `lease` builds, with the ids as one JSON array, so that the text is the same whatever
/// the number of ids and SQLite prepares it once per connection (with one placeholder per id, every group size was
/// a text of its own, prepared again whenever the statement cache had let it go). The insert then writes the entries
/// `lease_entry` makes, in dispatch order, from the rows just leased (the lease has no other condition than the ids,
/// so those are exactly its rows): written as rows of their own, the entries of a large claim took a round trip to
/// that thread per 64 of them. `json_object` writes the document as `serde_json` does (compact, the keys in the
/// order given, which is the sorted order of `lease_entry`'s, strings escaped alike); `printf` writes the note.
/// Parameters `?6`-`?9` are the parts every entry shares, from a template entry (see `lease_sqlite`).
static SQLITE_LEASE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE tasks SET status = 'running', lease_id = {}, lease_expires_at = ?1, attempt = attempt + 1, \
         worker_id = ?2, started_at = ?3, trace_path = ?4 || id \
         WHERE id IN (SELECT value FROM json_each(?5)) RETURNING *; \
         INSERT INTO audit_log (ts, actor_kind, actor_id, action, entity_kind, entity_id, before, after, note, trace_id) \
         SELECT ?3, ?6, worker_id, ?7, ?8, id, ?9, \
         json_object('attempt', attempt, 'concurrency_key', concurrency_key, 'status', status, 'worker_id', worker_id), \
         printf('Status changed: queued -> running: leased to %s (attempt %d of %d)', worker_id, attempt, max_attempts), \
         trace_id FROM tasks WHERE id IN (SELECT value FROM json_each(?5)) ORDER BY priority DESC, queued_at, id",
        lease_tokens::fresh_token(DatabaseBackend::Sqlite)
    )
});

async fn lease_sqlite(
    txn: &DatabaseTransaction,
    now: Micros,
    req: &ClaimRequest,
    ids: &[String],
) -> Result<Vec<Model>> {
    let template = lease_entry("", "", 0, 0, None, "");
    let values: [sea_orm::Value; 9] = [
        (now + req.lease_timeout).into(),
        req.worker_id.as_str().into(),
        now.into(),
        req.trace_uri_prefix.as_str().into(),
        serde_json::to_string(ids).map_err(|e| Error::internal("lease", e))?.into(),
        template.actor.kind.as_str().into(),
        template.action.as_str().into(),
        template.entity_kind.into(),
        template.before.into(),
    ];
    let statement = Statement::from_sql_and_values(DatabaseBackend::Sqlite, SQLITE_LEASE_SQL.as_str(), values);
    task_rows::from_results(&txn.query_all_raw(statement).await?)
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
    let extended = task_rows::update_returning(
        db,
        Tasks::update_many()
            .col_expr(Column::LeaseExpiresAt, Expr::value(deadline))
            .filter(LeaseKeys::of(lease_ids.iter().map(String::as_str)).condition())
            .filter(status_unindexed(TaskStatus::Running))
            .filter(Column::WorkerId.eq(worker_id)),
    )
    .await?;
    report.extended = extended.into_iter().filter_map(|t| t.lease_id).collect();
    let rest: Vec<&str> =
        lease_ids.iter().map(String::as_str).filter(|id| !report.extended.iter().any(|e| e == id)).collect();
    let others = if rest.is_empty() {
        Vec::new()
    } else {
        Tasks::find().filter(LeaseKeys::of(rest.iter().copied()).condition()).all(db).await?
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
        LeaseLoss::StreamClosed => {
            Condition::all().add(LeaseKeys::of(lease_ids.iter().map(String::as_str)).condition())
        }
        LeaseLoss::Expired => Condition::all().add(Column::LeaseExpiresAt.lt(now)),
    }
    .add(status_is(TaskStatus::Running));
    let why = loss.describe();

    let txn = db.begin().await?;
    let exhausted = task_rows::update_returning(
        &txn,
        Tasks::update_many()
            .col_expr(Column::Status, Expr::value(TaskStatus::Failed.as_str()))
            .col_expr(Column::Error, Expr::value(format!("{why}; no attempts left")))
            .col_expr(Column::CompletedAt, Expr::value(now))
            .col_expr(Column::LeaseExpiresAt, Expr::value(Option::<i64>::None))
            .filter(scope.clone())
            .filter(Expr::col(Column::Attempt).gte(Expr::col(Column::MaxAttempts))),
    )
    .await?;
    let requeued = task_rows::update_returning(
        &txn,
        Tasks::update_many()
            .col_expr(Column::Status, Expr::value(TaskStatus::Queued.as_str()))
            .col_expr(Column::Error, Expr::value(why))
            .col_expr(Column::LeaseExpiresAt, Expr::value(Option::<i64>::None))
            .col_expr(Column::RunAfter, Expr::value(now))
            .col_expr(Column::QueuedAt, Expr::value(now))
            .filter(scope)
            // Repeated so that a row matching only now (a deadline passing between the two statements) still
            // cannot be requeued past its attempts.
            .filter(Expr::col(Column::Attempt).lt(Expr::col(Column::MaxAttempts))),
    )
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
