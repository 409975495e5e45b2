//! Gapless tailing of the audit log, and the task -> issue foreign key.
//!
//! On PostgreSQL, ids come from a sequence and transactions commit in any order, so "every id above my cursor" can
//! miss a row whose transaction commits late. Each entry therefore records the id of the transaction that wrote it
//! (`txid`); a reader only takes entries of transactions older than every transaction still running
//! (`pg_snapshot_xmin`), in (txid, id) order, so whatever becomes visible later sorts after its cursor. SQLite has
//! one writer, so commit order is id order and `txid` stays 0.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "ALTER TABLE audit_log ADD COLUMN txid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint)",
                )
                .await?;
                // SQLite cannot add a constraint to an existing table; there the task row and its issue are only
                // ever written together, in one transaction.
                db.execute_unprepared(
                    "ALTER TABLE tasks ADD CONSTRAINT tasks_cwom_issue_id_fkey FOREIGN KEY (cwom_issue_id) \
                     REFERENCES cwom_issues (id) ON DELETE SET NULL",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared("ALTER TABLE audit_log ADD COLUMN txid BIGINT NOT NULL DEFAULT 0").await?;
            }
        }
        db.execute_unprepared("CREATE INDEX audit_log_cursor_idx ON audit_log (txid, id)").await?;
        db.execute_unprepared("CREATE INDEX tasks_cwom_issue_idx ON tasks (cwom_issue_id)").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX tasks_cwom_issue_idx").await?;
        db.execute_unprepared("DROP INDEX audit_log_cursor_idx").await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("ALTER TABLE tasks DROP CONSTRAINT tasks_cwom_issue_id_fkey").await?;
        }
        db.execute_unprepared("ALTER TABLE audit_log DROP COLUMN txid").await?;
        Ok(())
    }
}
