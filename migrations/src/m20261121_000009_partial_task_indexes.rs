//! Indexes of optional task columns keep entries only for the tasks that have a value. PostgreSQL updates every
//! index of a row on each non-HOT update, and a task's row is updated twice in its life (leased, settled), with an
//! index entry written each time even for an empty column. Most tasks have no idempotency key, no work model and no
//! concurrency key, and no worker or lease while queued: those entries were written only to be skipped.
//!
//! Every query of these columns compares them with a value, which implies the `IS NOT NULL` of the index, so both
//! planners still use them. SQLite keeps the idempotency key's unique constraint as it is: it belongs to the table
//! definition and could only change by rebuilding the table.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (index, its definition before, its definition now).
const INDEXES: &[(&str, &str, &str)] = &[
    (
        "tasks_lease_id_idx",
        "CREATE UNIQUE INDEX tasks_lease_id_idx ON tasks (lease_id)",
        "CREATE UNIQUE INDEX tasks_lease_id_idx ON tasks (lease_id) WHERE lease_id IS NOT NULL",
    ),
    (
        "tasks_worker_id_idx",
        "CREATE INDEX tasks_worker_id_idx ON tasks (worker_id, id)",
        "CREATE INDEX tasks_worker_id_idx ON tasks (worker_id, id) WHERE worker_id IS NOT NULL",
    ),
    (
        "tasks_cwom_issue_idx",
        "CREATE INDEX tasks_cwom_issue_idx ON tasks (cwom_issue_id)",
        "CREATE INDEX tasks_cwom_issue_idx ON tasks (cwom_issue_id) WHERE cwom_issue_id IS NOT NULL",
    ),
    (
        "tasks_concurrency_running_idx",
        "CREATE INDEX tasks_concurrency_running_idx ON tasks (concurrency_key) WHERE status = 'running'",
        "CREATE INDEX tasks_concurrency_running_idx ON tasks (concurrency_key) \
         WHERE status = 'running' AND concurrency_key IS NOT NULL",
    ),
];

/// PostgreSQL only: the unique constraint that `idempotency_key` was declared with, as a partial unique index.
const IDEMPOTENCY_KEY_UP: &[&str] = &[
    "ALTER TABLE tasks DROP CONSTRAINT tasks_idempotency_key_key",
    "CREATE UNIQUE INDEX tasks_idempotency_key_idx ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL",
];
const IDEMPOTENCY_KEY_DOWN: &[&str] = &[
    "DROP INDEX tasks_idempotency_key_idx",
    "ALTER TABLE tasks ADD CONSTRAINT tasks_idempotency_key_key UNIQUE (idempotency_key)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild(manager, |(_, _, now)| now, IDEMPOTENCY_KEY_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild(manager, |(_, before, _)| before, IDEMPOTENCY_KEY_DOWN).await
    }
}

/// Recreates each index of `INDEXES` with the definition `pick` chooses, then, on PostgreSQL, runs `idempotency_key`.
async fn rebuild(
    manager: &SchemaManager<'_>,
    pick: fn(&(&str, &'static str, &'static str)) -> &'static str,
    idempotency_key: &[&str],
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for index in INDEXES {
        db.execute_unprepared(&format!("DROP INDEX {}", index.0)).await?;
        db.execute_unprepared(pick(index)).await?;
    }
    if manager.get_database_backend() == DatabaseBackend::Postgres {
        for sql in idempotency_key {
            db.execute_unprepared(sql).await?;
        }
    }
    Ok(())
}
