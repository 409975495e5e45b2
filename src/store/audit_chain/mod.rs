//! The tamper-evident audit chain.
//!
//! A sealer follows the audit log in the order entries become visible (the same gapless order as
//! WatchAuditEvents, see `audit::tail`) and links each entry to the one before: its link hash is
//! `sha256(previous link hash, entry content)`. It works in batches behind the writers, so no request waits on the
//! chain and writers never contend for its head. Each batch is one seal row: where it ends in the chain, the hash
//! after its last entry, and every entry's id and link hash (so a thousand entries cost one row, not a thousand,
//! and verification still names the exact entry). Verifying recomputes the chain from the first seal: an edited
//! entry, a deleted entry or a removed seal breaks it, and the first broken link is reported.
//!
//! The chain proves the log unchanged since it was sealed, as far as the database's own contents go. Someone who
//! can rewrite the whole tail of both tables can also rewrite the chain; recording the head (`seq`, `hash`) that
//! `audit verify` prints somewhere else closes that gap.

mod canonical;

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait, FromQueryResult,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Select, Statement,
    TransactionTrait,
    sea_query::Expr,
    sqlx::{self, ColumnIndex, Decode, Row, Type},
};
use sha2::{Digest, Sha256};

use super::{
    audit::{self, Cursor, Filter},
    entity::{
        audit_log::{self, Model as Entry},
        audit_seal::{Column, Entity as Seals, Model as Seal},
    },
    pg_arrays,
};

/// The hash before the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Entries sealed per transaction (and so at most per seal row).
pub const BATCH: u64 = 1000;
/// Seal rows read per page when verifying: up to this many batches of entries in memory at once.
const SEALS_PER_PAGE: u64 = 16;
/// A link in a seal's `links`: the entry's id (8 bytes, big-endian), then its link hash (32 bytes).
const LINK_BYTES: usize = 8 + 32;
/// PostgreSQL advisory lock (two-key form, apart from the one-key locks of concurrency keys) that lets one sealer
/// at a time extend the chain when several servers share the database.
const SEALER_LOCK: (i32, i32) = (0x4354_4155, 1);

/// The link after `previous` (a link hash in hex): covers every column of the entry, so no part of it can change
/// unnoticed. The content is the entry's columns as one compact JSON array, its documents as `serde_json` writes
/// their values.
pub fn link_hash(previous: &str, entry: &Entry) -> Result<[u8; 32], DbErr> {
    let before = entry.before.as_ref().map(ToString::to_string);
    let after = entry.after.as_ref().map(ToString::to_string);
    let stored = StoredEntry {
        id: entry.id,
        ts: entry.ts,
        actor_kind: &entry.actor_kind,
        actor_id: &entry.actor_id,
        action: &entry.action,
        entity_kind: &entry.entity_kind,
        entity_id: &entry.entity_id,
        before: before.as_deref(),
        after: after.as_deref(),
        note: entry.note.as_deref(),
        trace_id: entry.trace_id.as_deref(),
        txid: entry.txid,
    };
    link_hash_stored(previous, &stored)
}

/// An entry as the chain reads it back, borrowed from the row the database answered with: its JSON documents as
/// the text stored, which `link_hash_stored` hashes without building a `Value` of them (see `canonical`), and no
/// column copied. (Decoding entries into owned strings, column by column by name, was two fifths of the sealer's
/// time.)
#[derive(Debug)]
struct StoredEntry<'r> {
    id: i64,
    ts: i64,
    actor_kind: &'r str,
    actor_id: &'r str,
    action: &'r str,
    entity_kind: &'r str,
    entity_id: &'r str,
    before: Option<&'r str>,
    after: Option<&'r str>,
    note: Option<&'r str>,
    trace_id: Option<&'r str>,
    txid: i64,
}

/// The statement reading `select`'s entries as `StoredEntry::read` takes them: its columns in its order, the
/// documents cast to text.
fn stored(select: Select<audit_log::Entity>, backend: DatabaseBackend) -> Statement {
    use audit_log::Column as C;
    select
        .select_only()
        .columns([C::Id, C::Ts, C::ActorKind, C::ActorId, C::Action, C::EntityKind, C::EntityId])
        .column_as(Expr::cust("CAST(before AS TEXT)"), "before")
        .column_as(Expr::cust("CAST(after AS TEXT)"), "after")
        .columns([C::Note, C::TraceId, C::Txid])
        .build(backend)
}

impl<'r> StoredEntry<'r> {
    /// The entries of an answer to `stored`, in its order.
    ///
    /// A PostgreSQL answer describes its columns' types once for all its rows, so they are checked once, against
    /// the first row's description, and every row is then read without checking each value again (that check was
    /// a fifth of the sealer's instructions). SQLite types each value on its own, so there every value is checked.
    fn read_all(rows: &'r [QueryResult]) -> Result<Vec<Self>, DbErr> {
        let Some(first) = rows.first() else { return Ok(Vec::new()) };
        if let Some(described) = first.try_as_pg_row() {
            check_described_types(described)?;
            let pg_rows = rows.iter().map(|row| row.try_as_pg_row().ok_or_else(not_one_backend));
            return pg_rows.map(|row| Self::by_position(row?, Read::Unchecked)).collect();
        }
        rows.iter().map(Self::read).collect()
    }

    fn read(row: &'r QueryResult) -> Result<Self, DbErr> {
        if let Some(row) = row.try_as_pg_row() {
            return Self::by_position(row, Read::Checked);
        }
        if let Some(row) = row.try_as_sqlite_row() {
            return Self::by_position(row, Read::Checked);
        }
        Err(DbErr::Custom("audit entries are read from PostgreSQL or SQLite only".into()))
    }

    /// The columns by their position in `stored`.
    fn by_position<R>(row: &'r R, read: Read) -> Result<Self, DbErr>
    where
        R: Row,
        usize: ColumnIndex<R>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        &'r str: Decode<'r, R::Database> + Type<R::Database>,
    {
        fn get<'r, R, T>(row: &'r R, index: usize, read: Read) -> Result<T, DbErr>
        where
            R: Row,
            usize: ColumnIndex<R>,
            T: Decode<'r, R::Database> + Type<R::Database>,
        {
            let value = match read {
                Read::Checked => row.try_get(index),
                Read::Unchecked => row.try_get_unchecked(index),
            };
            value.map_err(|err| DbErr::Custom(format!("an audit entry could not be read: {err}")))
        }
        Ok(Self {
            id: get(row, 0, read)?,
            ts: get(row, 1, read)?,
            actor_kind: get(row, 2, read)?,
            actor_id: get(row, 3, read)?,
            action: get(row, 4, read)?,
            entity_kind: get(row, 5, read)?,
            entity_id: get(row, 6, read)?,
            before: get(row, 7, read)?,
            after: get(row, 8, read)?,
            note: get(row, 9, read)?,
            trace_id: get(row, 10, read)?,
            txid: get(row, 11, read)?,
        })
    }
}

/// Whether each value's type is checked as it is read.
#[derive(Clone, Copy)]
enum Read {
    Checked,
    /// The answer's column types were checked already.
    Unchecked,
}

fn not_one_backend() -> DbErr {
    DbErr::Custom("an answer's rows come from one database".into())
}

/// Checks the column types of a PostgreSQL answer to `stored` against those `StoredEntry::by_position` reads.
fn check_described_types(row: &sqlx::postgres::PgRow) -> Result<(), DbErr> {
    const INTEGERS: [usize; 3] = [0, 1, 11];
    for position in 0..row.len() {
        let described = if INTEGERS.contains(&position) {
            pg_arrays::described_as::<i64>(row, position)
        } else {
            pg_arrays::described_as::<&str>(row, position)
        };
        described.map_err(|e| DbErr::Custom(format!("an audit entry could not be read: {e}")))?;
    }
    Ok(())
}

/// `link_hash` of the entry that `entry` was read from.
fn link_hash_stored(previous: &str, entry: &StoredEntry) -> Result<[u8; 32], DbErr> {
    CONTENT.with_borrow_mut(|content| {
        content.clear();
        let hash = entry.write_content(content).map(|()| {
            let mut hasher = Sha256::new();
            hasher.update(previous.as_bytes());
            hasher.update(b"\n");
            hasher.update(content.as_slice());
            hasher.finalize().into()
        });
        if content.capacity() > CONTENT_KEPT {
            *content = Vec::new();
        }
        hash.map_err(|e| DbErr::Custom(format!("audit entry {} holds a document that is not JSON: {e}", entry.id)))
    })
}

thread_local! {
    /// The content of the entry being hashed, written whole and then hashed in one call: written straight into the
    /// hash, each quote, comma and key was a call of its own, and that bookkeeping cost more than the hashing.
    static CONTENT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest content buffer a thread keeps for the next entry; a larger one (a large document) is let go.
const CONTENT_KEPT: usize = 64 << 10;

impl StoredEntry<'_> {
    /// The entry's columns as one compact JSON array, as `serde_json` writes the tuple of them, with the documents
    /// in canonical form.
    fn write_content(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.push(b'[');
        serde_json::to_writer(&mut *out, &self.id)?;
        out.push(b',');
        serde_json::to_writer(&mut *out, &self.ts)?;
        for text in [self.actor_kind, self.actor_id, self.action, self.entity_kind, self.entity_id] {
            out.push(b',');
            serde_json::to_writer(&mut *out, text)?;
        }
        for document in [self.before, self.after] {
            out.push(b',');
            match document {
                Some(text) => canonical::write(out, text)?,
                None => out.extend_from_slice(b"null"),
            }
        }
        for text in [self.note, self.trace_id] {
            out.push(b',');
            serde_json::to_writer(&mut *out, &text)?;
        }
        out.push(b',');
        serde_json::to_writer(&mut *out, &self.txid)?;
        out.push(b']');
        Ok(())
    }
}

/// Bytes in lowercase hex: how link hashes are chained and shown.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// A seal without its links: what extending the chain and reporting its head need.
#[derive(Debug, FromQueryResult)]
struct Head {
    seq: i64,
    audit_id: i64,
    txid: i64,
    hash: String,
}

async fn chain_head(db: &impl ConnectionTrait) -> Result<Option<Head>, DbErr> {
    Seals::find()
        .select_only()
        .columns([Column::Seq, Column::AuditId, Column::Txid, Column::Hash])
        .order_by_desc(Column::Seq)
        .into_model::<Head>()
        .one(db)
        .await
}

/// Seals the next batch of entries after the chain's head; returns how many it sealed.
pub async fn seal_next(db: &DatabaseConnection) -> Result<u64, DbErr> {
    seal_next_reading(db, db).await
}

/// `seal_next`, reading the entries through `reader` (see `store::db::connect_reader`). On SQLite with a reader of
/// its own, the batch is read and hashed there, and only the seal's insert takes the writer, briefly: the one
/// writer connection would otherwise be held, and every claim and completion kept waiting, for the whole batch.
pub async fn seal_next_reading(db: &DatabaseConnection, reader: &DatabaseConnection) -> Result<u64, DbErr> {
    if db.get_database_backend() == DatabaseBackend::Postgres || std::ptr::eq(db, reader) {
        return seal_next_in_transaction(db).await;
    }
    loop {
        if let Some(sealed) = seal_next_beside(db, reader).await? {
            return Ok(sealed);
        }
        // Another sealer extended the chain meanwhile: read again from the new head.
    }
}

/// The head, the batch and the seal in one transaction; on PostgreSQL under the sealers' lock, so that one sealer
/// at a time extends the chain.
async fn seal_next_in_transaction(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        let (class, key) = SEALER_LOCK;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({class}, {key})")).await?;
    }
    let head = chain_head(&txn).await?;
    let Some(seal) = next_seal(&txn, head).await? else {
        return Ok(0);
    };
    let sealed = seal.entries;
    Seals::insert(seal.into_active_model()).exec_without_returning(&txn).await?;
    txn.commit().await?;
    Ok(sealed as u64)
}

/// SQLite: reads the head and the batch through `reader`, then inserts the seal through `db` only if the chain's
/// head is still the one read (one statement, so the check and the insert cannot be split by another writer).
/// `None` when another sealer got there first.
async fn seal_next_beside(db: &DatabaseConnection, reader: &DatabaseConnection) -> Result<Option<u64>, DbErr> {
    const SQL: &str = "INSERT INTO audit_seals (seq, audit_id, txid, hash, entries, links) \
        SELECT ?, ?, ?, ?, ?, ? WHERE (SELECT COALESCE(MAX(seq), 0) FROM audit_seals) = ?";
    let head = chain_head(reader).await?;
    let head_seq = head.as_ref().map_or(0, |h| h.seq);
    let Some(seal) = next_seal(reader, head).await? else {
        return Ok(Some(0));
    };
    let values: [sea_orm::Value; 7] = [
        seal.seq.into(),
        seal.audit_id.into(),
        seal.txid.into(),
        seal.hash.into(),
        seal.entries.into(),
        seal.links.into(),
        head_seq.into(),
    ];
    let inserted = db.execute_raw(Statement::from_sql_and_values(DatabaseBackend::Sqlite, SQL, values)).await?;
    Ok((inserted.rows_affected() == 1).then_some(seal.entries as u64))
}

/// The seal of the entries after `head`, up to a batch of them; `None` when there are none.
async fn next_seal(db: &impl ConnectionTrait, head: Option<Head>) -> Result<Option<Seal>, DbErr> {
    let (seq, mut previous, cursor) = match head {
        Some(head) => (head.seq, head.hash, Cursor { txid: head.txid, id: head.audit_id }),
        None => (0, GENESIS.to_owned(), Cursor::default()),
    };
    let head = audit::head(db).await?;
    if head <= cursor {
        return Ok(None);
    }
    let backend = db.get_database_backend();
    let select = audit::tail_select(backend, &Filter::default(), cursor, head);
    let rows = db.query_all_raw(stored(select.limit(BATCH), backend)).await?;
    let entries = StoredEntry::read_all(&rows)?;
    let Some(last) = entries.last() else {
        return Ok(None);
    };
    let mut links = Vec::with_capacity(entries.len() * LINK_BYTES);
    for entry in &entries {
        let link = link_hash_stored(&previous, entry)?;
        links.extend_from_slice(&entry.id.to_be_bytes());
        links.extend_from_slice(&link);
        previous = hex(&link);
    }
    Ok(Some(Seal {
        seq: seq + entries.len() as i64,
        audit_id: last.id,
        txid: last.txid,
        hash: previous,
        entries: entries.len() as i64,
        links: Some(links),
    }))
}

/// Seals everything visible now; returns how many entries it sealed.
pub async fn seal_all(db: &DatabaseConnection) -> Result<u64, DbErr> {
    seal_all_reading(db, db).await
}

/// `seal_all`, reading through `reader` (see `seal_next_reading`).
pub async fn seal_all_reading(db: &DatabaseConnection, reader: &DatabaseConnection) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let sealed = seal_next_reading(db, reader).await?;
        total += sealed;
        if sealed < BATCH {
            return Ok(total);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The chain position (the first entry sealed is 1) where the chain stops holding.
    pub seq: i64,
    /// The entry at that position, as its seal names it.
    pub audit_id: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries whose link checked out, from the first seal up to the first broken link.
    pub verified: u64,
    /// Entries written but not sealed yet.
    pub unsealed: u64,
    /// The chain's head: the position of its last sealed entry (so the number of entries sealed) and the hash
    /// after it.
    pub head: Option<(i64, String)>,
    pub broken: Option<BrokenLink>,
}

/// A seal's links as (entry id, link hash in hex), or why they cannot be read.
fn links_of(seal: &Seal) -> Result<Vec<(i64, String)>, String> {
    let Some(bytes) = &seal.links else {
        // A one-entry seal from before batches: its link is the seal itself.
        return Ok(vec![(seal.audit_id, seal.hash.clone())]);
    };
    if bytes.len() != seal.entries.max(0) as usize * LINK_BYTES {
        return Err(format!(
            "seal {} holds {} bytes of links for {} entries: the seal was changed",
            seal.seq,
            bytes.len(),
            seal.entries
        ));
    }
    Ok(bytes
        .chunks_exact(LINK_BYTES)
        .map(|link| {
            let (id, hash) = link.split_at(8);
            (i64::from_be_bytes(id.try_into().expect("8 bytes")), hex(hash))
        })
        .collect())
}

/// Checks one seal's entries against their links, continuing the chain from `previous`; on success returns the
/// hash after its last entry. `position` is the chain position of the seal's first entry.
async fn verify_seal(
    db: &impl ConnectionTrait,
    seal: &Seal,
    mut previous: String,
    position: i64,
    verified: &mut u64,
) -> Result<Result<String, BrokenLink>, DbErr> {
    let broken =
        |offset: usize, audit_id: i64, reason: String| BrokenLink { seq: position + offset as i64, audit_id, reason };
    let links = match links_of(seal) {
        Ok(links) => links,
        Err(reason) => return Ok(Err(broken(0, seal.audit_id, reason))),
    };
    let ids: Vec<i64> = links.iter().map(|(id, _)| *id).collect();
    let select = audit_log::Entity::find().filter(audit_log::Column::Id.is_in(ids));
    let rows = db.query_all_raw(stored(select, db.get_database_backend())).await?;
    let mut entries = HashMap::with_capacity(rows.len());
    for entry in StoredEntry::read_all(&rows)? {
        entries.insert(entry.id, entry);
    }
    for (offset, (audit_id, sealed)) in links.into_iter().enumerate() {
        let Some(entry) = entries.get(&audit_id) else {
            return Ok(Err(broken(offset, audit_id, format!("audit entry {audit_id} was deleted"))));
        };
        let link = hex(&link_hash_stored(&previous, entry)?);
        if link != sealed {
            let reason = format!("audit entry {audit_id} does not match its seal: the entry or the seal was changed");
            return Ok(Err(broken(offset, audit_id, reason)));
        }
        previous = link;
        *verified += 1;
    }
    if previous != seal.hash {
        let reason = format!("seal {} ends on another hash than its last link: the seal was changed", seal.seq);
        return Ok(Err(broken(seal.entries.max(1) as usize - 1, seal.audit_id, reason)));
    }
    Ok(Ok(previous))
}

/// Recomputes the chain from its first seal and reports the first link that does not hold.
pub async fn verify(db: &impl ConnectionTrait) -> Result<Verification, DbErr> {
    // Counted before the walk: the sealer keeps going meanwhile, and every entry counted here that is sealed by the
    // time the walk reaches the head is then among the verified.
    let entries = audit_log::Entity::find().count(db).await?;
    let mut previous = GENESIS.to_owned();
    let mut verified = 0u64;
    let mut next_position = 1i64;
    let mut broken = None;
    'pages: loop {
        let seals: Vec<Seal> = Seals::find()
            .filter(Column::Seq.gte(next_position))
            .order_by_asc(Column::Seq)
            .limit(SEALS_PER_PAGE)
            .all(db)
            .await?;
        if seals.is_empty() {
            break;
        }
        for seal in seals {
            let first = seal.seq - seal.entries + 1;
            if first != next_position {
                let reason = if first > next_position {
                    format!("entries {next_position} to {} have no seal: the chain was cut", first - 1)
                } else {
                    format!("seal {} overlaps the seal before it: the seals were changed", seal.seq)
                };
                broken = Some(BrokenLink { seq: next_position, audit_id: seal.audit_id, reason });
                break 'pages;
            }
            match verify_seal(db, &seal, previous, first, &mut verified).await? {
                Ok(hash) => previous = hash,
                Err(link) => {
                    broken = Some(link);
                    break 'pages;
                }
            }
            next_position = seal.seq + 1;
        }
    }
    let head = chain_head(db).await?;
    // Past a broken link the walk stops; the head then says how far the chain reaches.
    let sealed = match (&broken, &head) {
        (Some(_), Some(head)) => head.seq.max(0) as u64,
        _ => verified,
    };
    Ok(Verification { verified, unsealed: entries.saturating_sub(sealed), head: head.map(|h| (h.seq, h.hash)), broken })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The chain's definition: sha256 of the previous link, a newline, and the entry's columns as a compact JSON
    /// array. Seals written by earlier versions were computed this way; the streamed hash must match it bit for bit.
    fn link_by_definition(previous: &str, entry: &Entry) -> [u8; 32] {
        let content = json!([
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
        Sha256::digest(format!("{previous}\n{content}")).into()
    }

    #[test]
    fn the_streamed_link_is_the_defined_one() {
        let entry = Entry {
            id: 42,
            ts: 1_795_000_000_000_000,
            actor_kind: "agent".into(),
            actor_id: "ag\"ent \u{1F600}\n".into(),
            action: "created".into(),
            entity_kind: "task".into(),
            entity_id: "01a2".into(),
            before: None,
            after: Some(json!({"z": [1, -2.5e-300, 1.7976931348623157e308, null], "a": {"é": "tab\t"}, "m": true})),
            note: Some("a note".into()),
            trace_id: None,
            txid: 7,
        };
        assert_eq!(link_hash(GENESIS, &entry).unwrap(), link_by_definition(GENESIS, &entry));
        let previous = hex(&link_by_definition(GENESIS, &entry));
        assert_eq!(link_hash(&previous, &entry).unwrap(), link_by_definition(&previous, &entry));
    }

    /// PostgreSQL answers read by `StoredEntry::read_all`; skipped without a PostgreSQL to ask (`TEST_DATABASE_URL`).
    #[tokio::test]
    async fn a_postgres_answers_column_types_are_checked_once_even_where_its_first_row_is_null() {
        use sea_orm::{ConnectOptions, Database};
        let Some(url) = std::env::var("TEST_DATABASE_URL").ok().filter(|u| u.starts_with("postgres")) else { return };
        let db = Database::connect(ConnectOptions::new(url)).await.unwrap();
        let answer = |trace_id_first: &str, trace_id_second: &str| {
            let row = |id: i64, trace_id: &str| {
                format!(
                    "SELECT {id}::int8, 5::int8, 'agent', 'a', 'created', 'task', 't', NULL::text, '{{}}', \
                     NULL::text, {trace_id}, 9::int8"
                )
            };
            let sql = format!("{} UNION ALL {} ORDER BY 1", row(1, trace_id_first), row(2, trace_id_second));
            Statement::from_string(DatabaseBackend::Postgres, sql)
        };

        let rows = db.query_all_raw(answer("NULL::text", "'tr'")).await.unwrap();
        let entries = StoredEntry::read_all(&rows).unwrap();
        assert_eq!((entries[0].id, entries[0].trace_id, entries[1].trace_id), (1, None, Some("tr")));
        assert_eq!((entries[1].txid, entries[1].after, entries[1].before), (9, Some("{}"), None));

        // The second row's value would be read as text without its check: the first row's description refuses it.
        let rows = db.query_all_raw(answer("NULL::int8", "7::int8")).await.unwrap();
        let refused = StoredEntry::read_all(&rows).unwrap_err().to_string();
        assert!(refused.contains("not TEXT"), "{refused}");
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let digest: [u8; 32] = Sha256::digest(b"x").into();
        assert_eq!(hex(&digest), digest.iter().map(|b| format!("{b:02x}")).collect::<String>());
    }
}
