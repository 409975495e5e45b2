use sea_orm::entity::prelude::*;
use serde::Serialize;

/// A row of the append-only `audit_log`. Nothing updates or deletes one.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub ts: i64,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub entity_kind: String,
    pub entity_id: String,
    #[sea_orm(column_type = "Json", nullable)]
    pub before: Option<Json>,
    #[sea_orm(column_type = "Json", nullable)]
    pub after: Option<Json>,
    pub note: Option<String>,
    pub trace_id: Option<String>,
    /// The writing transaction's id on PostgreSQL (0 on SQLite), set by the database: see `audit::tail`.
    pub txid: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
