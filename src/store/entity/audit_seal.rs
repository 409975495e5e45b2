use sea_orm::entity::prelude::*;

/// The seal of a batch of consecutive audit entries: where it ends in the chain and the chain's hash after its last
/// entry. See `store::audit_chain`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_seals")]
pub struct Model {
    /// The chain position of the batch's last entry (the first entry sealed is 1).
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// The batch's last entry.
    pub audit_id: i64,
    /// The last entry's transaction id: with `audit_id`, where the next batch of the chain starts.
    pub txid: i64,
    /// The chain's hash after the batch's last entry, in hex.
    pub hash: String,
    /// How many entries the batch seals.
    pub entries: i64,
    /// Each entry's id (8 bytes, big-endian) and link hash (32 bytes), in chain order. Absent on the one-entry
    /// seals written before batches, whose only link is (`audit_id`, `hash`).
    pub links: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
