//! Fewer index entries per task state change. A lease and a settlement each rewrite the task's row, and PostgreSQL
//! writes an entry in every index the new row version belongs to; those entries were most of the database's work
//! in a drain.
//!
//! - Leases: a lease token now starts with its task's id, so the calls that name a lease find the task by primary
//!   key. The unique lease index goes; tokens granted before (32 hex digits) keep a partial index of their own, which
//!   no new token enters. Both backends.
//! - Status (PostgreSQL): the index of every row by status becomes two partial ones, the queued tasks and the ended
//!   ones, so that a lease (queued -> running) writes no status entry at all. Running tasks are listed through the
//!   lease expiry index, which holds exactly them (as many as there are leases out). SQLite keeps its status index:
//!   its planner reads partial indexes only under conditions it can match term by term.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const LEASES_UP: &[&str] = &[
    "DROP INDEX tasks_lease_id_idx",
    "CREATE INDEX tasks_legacy_lease_idx ON tasks (lease_id) WHERE length(lease_id) = 32",
];
const LEASES_DOWN: &[&str] = &[
    "DROP INDEX tasks_legacy_lease_idx",
    "CREATE UNIQUE INDEX tasks_lease_id_idx ON tasks (lease_id) WHERE lease_id IS NOT NULL",
];
const STATUS_UP: &[&str] = &[
    "DROP INDEX tasks_status_idx",
    "CREATE INDEX tasks_queued_idx ON tasks (id) WHERE status = 'queued'",
    "CREATE INDEX tasks_ended_idx ON tasks (status, id) \
     WHERE status = 'completed' OR status = 'failed' OR status = 'cancelled'",
];
const STATUS_DOWN: &[&str] = &[
    "DROP INDEX tasks_ended_idx",
    "DROP INDEX tasks_queued_idx",
    "CREATE INDEX tasks_status_idx ON tasks (status, id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, LEASES_UP).await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            run(manager, STATUS_UP).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            run(manager, STATUS_DOWN).await?;
        }
        run(manager, LEASES_DOWN).await
    }
}

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}
