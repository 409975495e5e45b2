//! Concurrency keys: a task may name a key, and at most a configured number of tasks with the same key run at
//! once across all servers. The partial index makes "how many run with this key" a short index scan.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    ConcurrencyKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Tasks::Table).add_column(string_len_null(Tasks::ConcurrencyKey, 128)).to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX tasks_concurrency_running_idx ON tasks (concurrency_key) WHERE status = 'running'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX tasks_concurrency_running_idx").await?;
        manager.alter_table(Table::alter().table(Tasks::Table).drop_column(Tasks::ConcurrencyKey).to_owned()).await?;
        Ok(())
    }
}
