//! The tasks' index on `trace_id` goes: no query reads tasks by trace (a trace is followed through the audit log,
//! which has its own index, and through the task's own row). PostgreSQL wrote an entry in it at the insert and at
//! every status change of every task.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX tasks_trace_id_idx").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("CREATE INDEX tasks_trace_id_idx ON tasks (trace_id)").await?;
        Ok(())
    }
}
