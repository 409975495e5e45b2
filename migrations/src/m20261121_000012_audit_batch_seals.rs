//! One seal per sealed batch instead of one per audit entry. A seal row now covers `entries` consecutive entries of
//! the chain, ending at `seq` (the chain position of its last entry, so the head's `seq` still counts the entries
//! sealed); `links` holds each entry's id and link hash, so verification still names the exact entry that was
//! changed or deleted. Existing rows are batches of one entry, whose only link is the row's own (`audit_id`, `hash`).
//!
//! The sealer wrote a heap row and an index entry per audit entry, three per task; now one per sealed batch (up to a
//! thousand entries).

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditSeals {
    Table,
    Entries,
    Links,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds a single column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(AuditSeals::Table)
                    .add_column(big_integer(AuditSeals::Entries).default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table(AuditSeals::Table).add_column(blob_null(AuditSeals::Links)).to_owned())
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            // Hashes do not compress: store the links out of line without trying.
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE audit_seals ALTER COLUMN links SET STORAGE EXTERNAL")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Batch seals cannot be split back into one row per entry: the chain is dropped and the sealer builds it
        // again from the first entry.
        manager.get_connection().execute_unprepared("DELETE FROM audit_seals").await?;
        for column in [AuditSeals::Links, AuditSeals::Entries] {
            manager.alter_table(Table::alter().table(AuditSeals::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
