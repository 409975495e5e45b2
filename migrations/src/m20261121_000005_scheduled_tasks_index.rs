//! Finding the next scheduled task quickly: the earliest `run_after` among queued tasks, so that a delayed task
//! (scheduled, or backing off after a retryable failure) is dispatched at its time on every server.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE INDEX tasks_run_after_idx ON tasks (run_after) WHERE status = 'queued'")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX tasks_run_after_idx").await?;
        Ok(())
    }
}
