//! The audit chain: each audit entry, in the order entries become visible, gets a seal holding
//! `sha256(previous seal's hash, the entry's content)`. Seals are written by a background sealer in batches, so the
//! hot path never waits on the chain; a change to a sealed entry, or a deleted one, breaks the chain from there on.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditSeals {
    Table,
    Seq,
    AuditId,
    Txid,
    Hash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditSeals::Table)
                    .col(big_integer(AuditSeals::Seq).primary_key())
                    .col(big_integer(AuditSeals::AuditId))
                    .col(big_integer(AuditSeals::Txid))
                    .col(string_len(AuditSeals::Hash, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditSeals::Table).to_owned()).await
    }
}
