use sea_orm::entity::prelude::*;

/// The seal of one audit entry: its place in the chain and `sha256(previous hash, entry)`. See `store::audit_chain`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_seals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub audit_id: i64,
    /// The entry's transaction id: with `audit_id`, where the next batch of the chain starts.
    pub txid: i64,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
