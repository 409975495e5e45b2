//! The attributes ListTasks filters on that never change (operation, requester, target repository) get a table of
//! their own, written once per task, and their indexes move there.
//!
//! On `tasks` they cost PostgreSQL dearly: a task's row is updated twice in its life (leased, settled), each update
//! changes `status`, which the queue's indexes name, so no update can be HOT, and every index of the table gets a
//! new entry for the row's new version, whether its own columns changed or not. Here each index gets one entry per
//! task. ListTasks joins this table when it filters on these attributes.
//!
//! No foreign key: checking it would lock the task's row at every insert, and tasks are never deleted.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TaskFilters {
    Table,
    Id,
    Operation,
    RequestedByKind,
    RequestedById,
    TargetRepo,
}

const UP: &[&str] = &[
    "INSERT INTO task_filters (id, operation, requested_by_kind, requested_by_id, target_repo) \
     SELECT id, operation, requested_by_kind, requested_by_id, target_repo FROM tasks",
    // Each ordered newest first by the time-ordered id, as ListTasks pages. The requester's kind has a handful of
    // values and gets no index of its own, as it had none before (it led an index that then had to be sorted).
    "CREATE INDEX task_filters_operation_idx ON task_filters (operation, id)",
    "CREATE INDEX task_filters_target_repo_idx ON task_filters (target_repo, id)",
    "CREATE INDEX task_filters_requester_idx ON task_filters (requested_by_id, id)",
    "DROP INDEX tasks_operation_idx",
    "DROP INDEX tasks_target_repo_idx",
    "DROP INDEX tasks_requested_by_idx",
];

const DOWN: &[&str] = &[
    "CREATE INDEX tasks_operation_idx ON tasks (operation, id)",
    "CREATE INDEX tasks_target_repo_idx ON tasks (target_repo, id)",
    "CREATE INDEX tasks_requested_by_idx ON tasks (requested_by_kind, requested_by_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TaskFilters::Table)
                    .col(string_len(TaskFilters::Id, 36))
                    .col(string_len(TaskFilters::Operation, 32))
                    .col(string_len(TaskFilters::RequestedByKind, 16))
                    .col(string_len(TaskFilters::RequestedById, 128))
                    .col(string_len(TaskFilters::TargetRepo, 256))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for sql in UP {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in DOWN {
            db.execute_unprepared(sql).await?;
        }
        manager.drop_table(Table::drop().table(TaskFilters::Table).to_owned()).await
    }
}
