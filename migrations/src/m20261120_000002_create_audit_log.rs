use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    Ts,
    ActorKind,
    ActorId,
    Action,
    EntityKind,
    EntityId,
    Before,
    After,
    Note,
    TraceId,
}

/// Each query of the audit log reads newest first, so every index ends with the id, which grows with commit order.
const INDEXES: &[&str] = &[
    "CREATE INDEX audit_log_ts_idx ON audit_log (ts)",
    "CREATE INDEX audit_log_entity_idx ON audit_log (entity_kind, entity_id, id)",
    "CREATE INDEX audit_log_trace_id_idx ON audit_log (trace_id, id)",
    "CREATE INDEX audit_log_actor_id_idx ON audit_log (actor_id, id)",
    "CREATE INDEX audit_log_action_idx ON audit_log (action, id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_pk_auto(AuditLog::Id))
                    .col(big_integer(AuditLog::Ts))
                    .col(string_len(AuditLog::ActorKind, 16))
                    .col(string_len(AuditLog::ActorId, 128))
                    .col(string_len(AuditLog::Action, 32))
                    .col(string_len(AuditLog::EntityKind, 32))
                    .col(string_len(AuditLog::EntityId, 128))
                    .col(json_binary_null(AuditLog::Before))
                    .col(json_binary_null(AuditLog::After))
                    .col(text_null(AuditLog::Note))
                    .col(string_len_null(AuditLog::TraceId, 128))
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
        manager.drop_table(Table::drop().table(AuditLog::Table).to_owned()).await
    }
}
