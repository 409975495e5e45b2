use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    Version,
    IdempotencyKey,
    RequestedByKind,
    RequestedById,
    RequestedByLabel,
    Objective,
    Operation,
    TargetRepo,
    TargetRef,
    TargetPath,
    TimeBudgetSeconds,
    AllowNetwork,
    AllowSecrets,
    Inputs,
    Metadata,
    AcceptanceCriteria,
    EvidenceRequirements,
    Priority,
    MaxAttempts,
    Status,
    Attempt,
    RunAfter,
    LeaseId,
    LeaseExpiresAt,
    WorkerId,
    Result,
    Error,
    TracePath,
    CwomIssueId,
    TraceId,
    CreatedAt,
    QueuedAt,
    StartedAt,
    CompletedAt,
}

/// Indexes that the schema builder cannot express portably (partial and descending ones), in SQL that SQLite and
/// PostgreSQL both accept.
const INDEXES: &[&str] = &[
    // The claim path: queued tasks, highest priority first, FIFO within a priority.
    "CREATE INDEX tasks_claim_idx ON tasks (priority DESC, queued_at, id) WHERE status = 'queued'",
    // The reaper: running tasks by lease deadline.
    "CREATE INDEX tasks_lease_expiry_idx ON tasks (lease_expires_at) WHERE status = 'running'",
    // Fencing: every worker call names its lease.
    "CREATE UNIQUE INDEX tasks_lease_id_idx ON tasks (lease_id)",
    // ListTasks filters, each ordered newest first by the time-ordered id.
    "CREATE INDEX tasks_status_idx ON tasks (status, id)",
    "CREATE INDEX tasks_operation_idx ON tasks (operation, id)",
    "CREATE INDEX tasks_target_repo_idx ON tasks (target_repo, id)",
    "CREATE INDEX tasks_requested_by_idx ON tasks (requested_by_kind, requested_by_id)",
    "CREATE INDEX tasks_worker_id_idx ON tasks (worker_id, id)",
    "CREATE INDEX tasks_trace_id_idx ON tasks (trace_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(string_len(Tasks::Id, 36).primary_key())
                    .col(string_len(Tasks::Version, 8))
                    .col(string_len_uniq(Tasks::IdempotencyKey, 256).null())
                    .col(string_len(Tasks::RequestedByKind, 16))
                    .col(string_len(Tasks::RequestedById, 128))
                    .col(string_len_null(Tasks::RequestedByLabel, 256))
                    .col(text(Tasks::Objective))
                    .col(string_len(Tasks::Operation, 32))
                    .col(string_len(Tasks::TargetRepo, 256))
                    .col(string_len(Tasks::TargetRef, 256))
                    .col(string_len(Tasks::TargetPath, 512))
                    .col(integer(Tasks::TimeBudgetSeconds))
                    .col(boolean(Tasks::AllowNetwork))
                    .col(boolean(Tasks::AllowSecrets))
                    .col(json_binary(Tasks::Inputs))
                    .col(json_binary(Tasks::Metadata))
                    .col(json_binary(Tasks::AcceptanceCriteria))
                    .col(json_binary(Tasks::EvidenceRequirements))
                    .col(integer(Tasks::Priority).default(0))
                    .col(integer(Tasks::MaxAttempts))
                    .col(string_len(Tasks::Status, 16))
                    .col(integer(Tasks::Attempt).default(0))
                    .col(big_integer(Tasks::RunAfter))
                    .col(string_len_null(Tasks::LeaseId, 64))
                    .col(big_integer_null(Tasks::LeaseExpiresAt))
                    .col(string_len_null(Tasks::WorkerId, 128))
                    .col(json_binary_null(Tasks::Result))
                    .col(text_null(Tasks::Error))
                    .col(text_null(Tasks::TracePath))
                    .col(string_len_null(Tasks::CwomIssueId, 128))
                    .col(string_len(Tasks::TraceId, 128))
                    .col(big_integer(Tasks::CreatedAt))
                    .col(big_integer(Tasks::QueuedAt))
                    .col(big_integer_null(Tasks::StartedAt))
                    .col(big_integer_null(Tasks::CompletedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for sql in INDEXES {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Tasks::Table).to_owned()).await
    }
}
