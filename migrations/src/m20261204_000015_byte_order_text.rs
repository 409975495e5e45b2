//! PostgreSQL: every text column of the schema compares byte by byte (collation `C`).
//!
//! A column without a collation of its own takes the database's, usually `C.UTF-8` or `en_US.UTF-8`, and PostgreSQL
//! compares those through the C library's `strcoll`; only `C` (and `POSIX`) take the byte path. Every B-tree entry
//! of a text key pays for it: task, lease and work-model ids, audit entity, actor and trace ids, the filter columns.
//! The profile of a bulk enqueue put 7% of the database's time in `bttextcmp` alone.
//!
//! Nothing the API shows changes order: ids are lowercase hex and dashes, whose byte order is their time order
//! (UUIDv7), and byte order is code point order for UTF-8, which is also how SQLite compares text, so both backends
//! now list the work model's names alike. Comparisons with a parameter, a literal or a column of the database's
//! default collation take `C` without a word; only a column declared with another collation would conflict, and the
//! schema declares none. New text columns should be declared `COLLATE "C"` too: an index of a column of the default
//! collation cannot serve a comparison with one of these.
//!
//! Changing a column's collation keeps its rows and rebuilds its indexes, table by table (each under an exclusive
//! lock while it runs).

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The schema's tables.
const TABLES: &[&str] = &[
    "tasks",
    "task_filters",
    "audit_log",
    "audit_seals",
    "cwom_repos",
    "cwom_issues",
    "cwom_constraint_snapshots",
    "cwom_context_packets",
    "cwom_doctrine_refs",
    "cwom_runs",
    "cwom_artifacts",
    "cwom_issue_context_packets",
    "cwom_issue_constraint_snapshots",
    "cwom_issue_doctrine_refs",
    "cwom_context_packet_doctrine_refs",
    "cwom_run_context_packets",
    "cwom_run_doctrine_refs",
];

/// Gives every collatable column of `TABLES` (text, varchar, their arrays) the collation `collation`, with one
/// ALTER TABLE per table so that each table's indexes are rebuilt once. The columns are read from the catalog, so
/// that none is forgotten.
fn set_collation(collation: &str) -> String {
    let tables = TABLES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    format!(
        "DO $$ DECLARE t record; BEGIN \
         FOR t IN SELECT c.relname, string_agg(format('ALTER COLUMN %I TYPE %s COLLATE \"{collation}\"', \
             a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum) AS alters \
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
           WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' \
           AND c.relname = ANY (ARRAY[{tables}]) AND a.attnum > 0 AND NOT a.attisdropped AND a.attcollation <> 0 \
           GROUP BY c.relname ORDER BY c.relname \
         LOOP EXECUTE format('ALTER TABLE %I %s', t.relname, t.alters); END LOOP; END $$"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager.get_connection().execute_unprepared(&set_collation("C")).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager.get_connection().execute_unprepared(&set_collation("default")).await?;
        }
        Ok(())
    }
}
