//! The audit log's index on `action` goes. Every entry paid for it (the busiest writes of the system write three
//! entries per task), while the column has five values and queries filter on it together with a selective column
//! (entity, trace, actor) or page newest-first, where walking the primary key finds a page of a common action at
//! once. A filter on a rare action alone now walks the log from the newest entry until a page is full.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX audit_log_action_idx").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE INDEX audit_log_action_idx ON audit_log (action, id)")
            .await?;
        Ok(())
    }
}
