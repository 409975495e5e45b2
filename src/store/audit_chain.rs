//! The tamper-evident audit chain.
//!
//! A sealer follows the audit log in the order entries become visible (the same gapless order as
//! WatchAuditEvents, see `audit::tail`) and gives each entry a seal: its sequence number and
//! `sha256(previous hash, entry content)`. It works in batches behind the writers, so no request waits on the
//! chain and writers never contend for its head. Verifying recomputes the chain from the first seal: an edited
//! entry, a deleted entry or a removed seal breaks it, and the first broken link is reported.
//!
//! The chain proves the log unchanged since it was sealed, as far as the database's own contents go. Someone who
//! can rewrite the whole tail of both tables can also rewrite the chain; recording the head (`seq`, `hash`) that
//! `audit verify` prints somewhere else closes that gap.

use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use sha2::{Digest, Sha256};

use super::{
    audit::{self, Cursor, Filter},
    entity::{
        audit_log::{self, Model as Entry},
        audit_seal::{self, Entity as Seals, Model as Seal},
    },
};

/// The hash before the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Entries sealed per transaction, and seals read per page when verifying.
pub const BATCH: u64 = 1000;
/// PostgreSQL advisory lock (two-key form, apart from the one-key locks of concurrency keys) that lets one sealer
/// at a time extend the chain when several servers share the database.
const SEALER_LOCK: (i32, i32) = (0x4354_4155, 1);

/// The link after `previous`: covers every column of the entry, so no part of it can change unnoticed.
pub fn link_hash(previous: &str, entry: &Entry) -> String {
    let content = serde_json::json!([
        entry.id,
        entry.ts,
        entry.actor_kind,
        entry.actor_id,
        entry.action,
        entry.entity_kind,
        entry.entity_id,
        entry.before,
        entry.after,
        entry.note,
        entry.trace_id,
        entry.txid,
    ]);
    let mut hasher = Sha256::new();
    hasher.update(previous.as_bytes());
    hasher.update(b"\n");
    hasher.update(content.to_string().as_bytes());
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Seals the next batch of entries after the chain's head; returns how many it sealed.
pub async fn seal_next(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        let (class, key) = SEALER_LOCK;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({class}, {key})")).await?;
    }
    let head = Seals::find().order_by_desc(audit_seal::Column::Seq).one(&txn).await?;
    let (mut seq, mut previous, cursor) = match head {
        Some(head) => (head.seq, head.hash, Cursor { txid: head.txid, id: head.audit_id }),
        None => (0, GENESIS.to_owned(), Cursor::default()),
    };
    let (entries, _) = audit::tail(&txn, &Filter::default(), cursor, BATCH).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let seals: Vec<audit_seal::ActiveModel> = entries
        .iter()
        .map(|entry| {
            seq += 1;
            previous = link_hash(&previous, entry);
            audit_seal::ActiveModel {
                seq: Set(seq),
                audit_id: Set(entry.id),
                txid: Set(entry.txid),
                hash: Set(previous.clone()),
            }
        })
        .collect();
    Seals::insert_many(seals).exec_without_returning(&txn).await?;
    txn.commit().await?;
    Ok(entries.len() as u64)
}

/// Seals everything visible now; returns how many entries it sealed.
pub async fn seal_all(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let sealed = seal_next(db).await?;
        total += sealed;
        if sealed < BATCH {
            return Ok(total);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i64,
    pub audit_id: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries whose link checked out, from the first seal up to the first broken link.
    pub verified: u64,
    /// Entries written but not sealed yet.
    pub unsealed: u64,
    /// The chain's last seal (sequence and hash).
    pub head: Option<(i64, String)>,
    pub broken: Option<BrokenLink>,
}

/// Recomputes the chain from its first seal and reports the first link that does not hold.
pub async fn verify(db: &impl ConnectionTrait) -> Result<Verification, DbErr> {
    // Counted before the walk: the sealer keeps going meanwhile, and every entry counted here that is sealed by the
    // time the walk reaches the head is then among the verified.
    let entries = audit_log::Entity::find().count(db).await?;
    let mut previous = GENESIS.to_owned();
    let mut verified = 0u64;
    let mut next_seq = 1i64;
    let mut broken = None;
    'pages: loop {
        let seals: Vec<Seal> = Seals::find()
            .filter(audit_seal::Column::Seq.gte(next_seq))
            .order_by_asc(audit_seal::Column::Seq)
            .limit(BATCH)
            .all(db)
            .await?;
        if seals.is_empty() {
            break;
        }
        let ids: Vec<i64> = seals.iter().map(|s| s.audit_id).collect();
        let entries: HashMap<i64, Entry> = audit_log::Entity::find()
            .filter(audit_log::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        for seal in seals {
            let problem = if seal.seq != next_seq {
                Some(format!("seal {next_seq} is missing: the chain was cut"))
            } else {
                match entries.get(&seal.audit_id) {
                    None => Some(format!("audit entry {} was deleted", seal.audit_id)),
                    Some(entry) => {
                        let hash = link_hash(&previous, entry);
                        if hash == seal.hash {
                            previous = hash;
                            None
                        } else {
                            Some(format!(
                                "audit entry {} does not match its seal: the entry or the seal was changed",
                                seal.audit_id
                            ))
                        }
                    }
                }
            };
            if let Some(reason) = problem {
                broken = Some(BrokenLink { seq: next_seq, audit_id: seal.audit_id, reason });
                break 'pages;
            }
            verified += 1;
            next_seq += 1;
        }
    }
    let head = Seals::find().order_by_desc(audit_seal::Column::Seq).one(db).await?;
    // Past a broken link the walk stops; the head then says how far the chain reaches.
    let sealed = match (&broken, &head) {
        (Some(_), Some(head)) => head.seq.max(0) as u64,
        _ => verified,
    };
    Ok(Verification { verified, unsealed: entries.saturating_sub(sealed), head: head.map(|h| (h.seq, h.hash)), broken })
}
