//! Database schema migrations for Control Tower, for SQLite and PostgreSQL alike.
//!
//! Released migrations are never edited: a schema change is a new file. Times are stored as BIGINT microseconds
//! since the Unix epoch so that both backends compare and index them the same way; text compares byte by byte on both
//! (on PostgreSQL every text column is declared `COLLATE "C"`, see migration 15).

pub use sea_orm_migration::prelude::*;

mod m20261120_000001_create_tasks;
mod m20261120_000002_create_audit_log;
mod m20261121_000003_create_cwom;
mod m20261121_000004_audit_cursor;
mod m20261121_000005_scheduled_tasks_index;
mod m20261121_000006_concurrency_keys;
mod m20261121_000007_audit_seals;
mod m20261121_000008_drop_audit_action_index;
mod m20261121_000009_partial_task_indexes;
mod m20261121_000010_drop_task_trace_id_index;
mod m20261121_000011_task_filters;
mod m20261121_000012_audit_batch_seals;
mod m20261122_000013_audit_json_documents;
mod m20261202_000014_lean_task_indexes;
mod m20261204_000015_byte_order_text;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261120_000001_create_tasks::Migration),
            Box::new(m20261120_000002_create_audit_log::Migration),
            Box::new(m20261121_000003_create_cwom::Migration),
            Box::new(m20261121_000004_audit_cursor::Migration),
            Box::new(m20261121_000005_scheduled_tasks_index::Migration),
            Box::new(m20261121_000006_concurrency_keys::Migration),
            Box::new(m20261121_000007_audit_seals::Migration),
            Box::new(m20261121_000008_drop_audit_action_index::Migration),
            Box::new(m20261121_000009_partial_task_indexes::Migration),
            Box::new(m20261121_000010_drop_task_trace_id_index::Migration),
            Box::new(m20261121_000011_task_filters::Migration),
            Box::new(m20261121_000012_audit_batch_seals::Migration),
            Box::new(m20261122_000013_audit_json_documents::Migration),
            Box::new(m20261202_000014_lean_task_indexes::Migration),
            Box::new(m20261204_000015_byte_order_text::Migration),
        ]
    }
}
