//! PostgreSQL: the audit log keeps its `before` and `after` documents as `json` instead of `jsonb`, and indexes `ts`
//! with a BRIN index instead of a B-tree.
//!
//! Nothing queries inside an entry's documents: they are written once, read back whole, and hashed into the audit
//! chain from their parsed values, so the binary form `jsonb` buys nothing, while building it was the dearest part
//! of writing an entry. A task's `created` entry holds the whole task (about a kilobyte): inserting 10,000 of them
//! took 20-25 us per entry as `jsonb`, 11-13 us as `json`, which only checks the syntax.
//!
//! Entries are appended in time order, so each block of the table covers a narrow range of `ts`: a BRIN index (a
//! summary per range of blocks, written when the range is summarized) serves the time filters of audit queries,
//! where the B-tree cost an index entry for every entry written (about 3 us each).
//!
//! A block range is summarized when the table is vacuumed (autovacuum vacuums an append-only table after enough
//! inserts); a range not yet summarized is read by every time filter, so queries stay right either way. Not
//! `autosummarize`: where autovacuum is off, its requests are never served, and once 256 wait, PostgreSQL logs a
//! line for every new range.
//!
//! Changing the columns' type rewrites the table and its indexes under an exclusive lock: on a large audit log the
//! upgrade takes a while before the server starts.
//!
//! Rolling back restores the B-tree but leaves the documents as `json`. Converting them back to `jsonb` would
//! rewrite some of them (`1e+16` becomes `10000000000000000`, `-0.0` becomes `0.0`), and entries sealed since the
//! upgrade would then fail verification; the previous version reads and writes `json` columns as it did `jsonb`.
//!
//! SQLite keeps both as they are: it stores JSON as text anyway, and has no BRIN indexes.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "ALTER TABLE audit_log ALTER COLUMN before TYPE json USING before::json, \
     ALTER COLUMN after TYPE json USING after::json",
    "DROP INDEX audit_log_ts_idx",
    "CREATE INDEX audit_log_ts_idx ON audit_log USING brin (ts)",
];

const DOWN: &[&str] = &["DROP INDEX audit_log_ts_idx", "CREATE INDEX audit_log_ts_idx ON audit_log (ts)"];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, DOWN).await
    }
}
