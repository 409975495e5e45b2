//! The append-only audit log: who changed what, when, from what to what.
//!
//! Entries are written through the same connection or transaction as the change they describe, so a change and
//! its entry commit together or not at all.

use std::sync::OnceLock;

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, Statement,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use serde_json::{Value as Json, json};

use super::{
    entity::audit_log::{Column, Entity as AuditLog, Model},
    sqlite_rows::RowInserts,
};
use crate::clock::Micros;

/// Who made a change: `human`, `agent` or `system`, and an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: String,
    pub id: String,
}

impl Actor {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self { kind: kind.into(), id: id.into() }
    }

    /// A worker daemon acting on a lease it holds.
    pub fn worker(worker_id: &str) -> Self {
        Self::new("system", worker_id)
    }

    /// The server itself (lease reaper, stream supervision).
    pub fn server() -> Self {
        Self::new("system", "control-tower")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    StatusChanged,
    Linked,
    Unlinked,
}

impl Action {
    pub const ALL: [Action; 5] = [Self::Created, Self::Updated, Self::StatusChanged, Self::Linked, Self::Unlinked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::StatusChanged => "status_changed",
            Self::Linked => "linked",
            Self::Unlinked => "unlinked",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: Actor,
    pub action: Action,
    pub entity_kind: &'static str,
    pub entity_id: String,
    /// The documents as JSON text, compact, as `serde_json` writes them (the form the audit chain hashes).
    pub before: Option<String>,
    pub after: Option<String>,
    pub note: Option<String>,
    pub trace_id: Option<String>,
}

impl Entry {
    /// `created`: no before, the whole new object after.
    pub fn created(actor: Actor, entity_kind: &'static str, entity_id: &str, after: Json, trace_id: &str) -> Self {
        Self::created_written(actor, entity_kind, entity_id, after.to_string(), trace_id)
    }

    /// `created`, with the new object already written as JSON text (compact, keys in order, as `serde_json` writes
    /// its value): a large object is then serialised once, straight from its fields, without a `Value` between.
    pub fn created_written(
        actor: Actor,
        entity_kind: &'static str,
        entity_id: &str,
        after: String,
        trace_id: &str,
    ) -> Self {
        Self {
            actor,
            action: Action::Created,
            entity_kind,
            entity_id: entity_id.to_owned(),
            before: None,
            after: Some(after),
            note: None,
            trace_id: Some(trace_id.to_owned()),
        }
    }

    /// `updated`: the whole object before and after.
    pub fn updated(
        actor: Actor,
        entity_kind: &'static str,
        entity_id: &str,
        before: Json,
        after: Json,
        trace_id: &str,
    ) -> Self {
        Self {
            actor,
            action: Action::Updated,
            entity_kind,
            entity_id: entity_id.to_owned(),
            before: Some(before.to_string()),
            after: Some(after.to_string()),
            note: None,
            trace_id: Some(trace_id.to_owned()),
        }
    }

    /// `linked` (after `{linked_kind, linked_id}`) or `unlinked` (before `{linked_kind, linked_id}`).
    pub fn link(
        actor: Actor,
        linked: bool,
        (entity_kind, entity_id): (&'static str, &str),
        (linked_kind, linked_id): (&str, &str),
        trace_id: &str,
    ) -> Self {
        let link = json!({ "linked_kind": linked_kind, "linked_id": linked_id }).to_string();
        let (action, before, after) =
            if linked { (Action::Linked, None, Some(link)) } else { (Action::Unlinked, Some(link), None) };
        Self {
            actor,
            action,
            entity_kind,
            entity_id: entity_id.to_owned(),
            before,
            after,
            note: None,
            trace_id: Some(trace_id.to_owned()),
        }
    }

    /// `status_changed`: `{status: from}` before and `{status: to, ...details}` after, with a note saying both
    /// states and, when given, why.
    pub fn status_changed(
        actor: Actor,
        entity_kind: &'static str,
        entity_id: &str,
        (from, to): (&str, &str),
        details: Json,
        why: Option<&str>,
        trace_id: &str,
    ) -> Self {
        let mut after = json!({ "status": to });
        if let (Some(after), Json::Object(details)) = (after.as_object_mut(), details) {
            after.extend(details);
        }
        let note = match why {
            Some(why) => format!("Status changed: {from} -> {to}: {why}"),
            None => format!("Status changed: {from} -> {to}"),
        };
        Self {
            actor,
            action: Action::StatusChanged,
            entity_kind,
            entity_id: entity_id.to_owned(),
            before: Some(json!({ "status": from }).to_string()),
            after: Some(after.to_string()),
            note: Some(note),
            trace_id: Some(trace_id.to_owned()),
        }
    }
}

pub async fn append(db: &impl ConnectionTrait, ts: Micros, entries: Vec<Entry>) -> Result<(), DbErr> {
    if entries.is_empty() {
        return Ok(());
    }
    if db.get_database_backend() == DatabaseBackend::Postgres {
        return append_postgres(db, ts, &entries).await;
    }
    append_sqlite(db, ts, &entries).await
}

/// Entries in multi-row inserts (see `sqlite_rows`); ids are drawn in the entries' order. The documents are bound
/// as their JSON text, so that they are stored exactly as serialised.
async fn append_sqlite(db: &impl ConnectionTrait, ts: Micros, entries: &[Entry]) -> Result<(), DbErr> {
    static INSERTS: OnceLock<RowInserts> = OnceLock::new();
    let inserts = INSERTS.get_or_init(|| {
        let columns = [
            "ts",
            "actor_kind",
            "actor_id",
            "action",
            "entity_kind",
            "entity_id",
            "before",
            "after",
            "note",
            "trace_id",
        ];
        RowInserts::new("audit_log", &columns)
    });
    inserts
        .insert(db, entries, |e, values| {
            values.extend([
                ts.into(),
                e.actor.kind.as_str().into(),
                e.actor.id.as_str().into(),
                e.action.as_str().into(),
                e.entity_kind.into(),
                e.entity_id.as_str().into(),
                e.before.clone().into(),
                e.after.clone().into(),
                e.note.clone().into(),
                e.trace_id.clone().into(),
            ])
        })
        .await
}

/// An entry as `APPEND_POSTGRES_SQL` reads it: keys named after the columns, the documents as JSON text.
#[derive(Serialize)]
struct PgRow<'a> {
    ts: Micros,
    actor_kind: &'a str,
    actor_id: &'a str,
    action: &'static str,
    entity_kind: &'static str,
    entity_id: &'a str,
    before: &'a Option<String>,
    after: &'a Option<String>,
    note: &'a Option<String>,
    trace_id: &'a Option<String>,
}

/// All entries in one statement with one parameter, a JSON array of rows: its text is the same whatever the number
/// of entries, so PostgreSQL prepares and plans it once per connection instead of parsing ten parameters per row.
/// Ids are drawn in the order of the array (the `ORDER BY`), as the log's order requires.
async fn append_postgres(db: &impl ConnectionTrait, ts: Micros, entries: &[Entry]) -> Result<(), DbErr> {
    const SQL: &str = "INSERT INTO audit_log \
        (ts, actor_kind, actor_id, action, entity_kind, entity_id, before, after, note, trace_id) \
        SELECT r.ts, r.actor_kind, r.actor_id, r.action, r.entity_kind, r.entity_id, r.before::json, r.after::json, \
        r.note, r.trace_id FROM ROWS FROM (json_to_recordset($1::text::json) AS (ts bigint, actor_kind text, \
        actor_id text, action text, entity_kind text, entity_id text, before text, after text, note text, \
        trace_id text)) WITH ORDINALITY AS r(ts, actor_kind, actor_id, action, entity_kind, entity_id, before, after, \
        note, trace_id, ord) ORDER BY r.ord";
    let rows: Vec<PgRow> = entries
        .iter()
        .map(|e| PgRow {
            ts,
            actor_kind: &e.actor.kind,
            actor_id: &e.actor.id,
            action: e.action.as_str(),
            entity_kind: e.entity_kind,
            entity_id: &e.entity_id,
            before: &e.before,
            after: &e.after,
            note: &e.note,
            trace_id: &e.trace_id,
        })
        .collect();
    let rows = serde_json::to_string(&rows).map_err(|e| DbErr::Custom(format!("audit entries as JSON: {e}")))?;
    db.execute_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, SQL, [rows.into()])).await?;
    Ok(())
}

/// Filters of ListAuditEvents and WatchAuditEvents; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub entity_kind: Option<String>,
    pub entity_id: Option<String>,
    pub trace_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<Micros>,
    pub until: Option<Micros>,
}

impl Filter {
    fn condition(&self) -> Condition {
        let mut c = Condition::all();
        for (column, value) in [
            (Column::EntityKind, &self.entity_kind),
            (Column::EntityId, &self.entity_id),
            (Column::TraceId, &self.trace_id),
            (Column::ActorId, &self.actor_id),
            (Column::Action, &self.action),
        ] {
            if let Some(value) = value {
                c = c.add(column.eq(value.as_str()));
            }
        }
        if let Some(since) = self.since {
            c = c.add(Column::Ts.gte(since));
        }
        if let Some(until) = self.until {
            c = c.add(Column::Ts.lt(until));
        }
        c
    }
}

/// Newest first, starting below `before_id`.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &Filter,
    before_id: Option<i64>,
    limit: u64,
) -> Result<Vec<Model>, DbErr> {
    let mut query = AuditLog::find().filter(filter.condition());
    if let Some(before) = before_id {
        query = query.filter(Column::Id.lt(before));
    }
    query.order_by_desc(Column::Id).limit(limit).all(db).await
}

/// Who created an object: the actor of its `created` entry.
pub async fn creator(db: &impl ConnectionTrait, entity_kind: &str, entity_id: &str) -> Result<Option<String>, DbErr> {
    let created = AuditLog::find()
        .filter(Column::EntityKind.eq(entity_kind))
        .filter(Column::EntityId.eq(entity_id))
        .filter(Column::Action.eq(Action::Created.as_str()))
        .one(db)
        .await?;
    Ok(created.map(|entry| entry.actor_id))
}

/// A position in the audit log, in the order entries become visible: (writing transaction, id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub txid: i64,
    pub id: i64,
}

impl Cursor {
    pub fn of(entry: &Model) -> Self {
        Self { txid: entry.txid, id: entry.id }
    }

    pub fn encode(self) -> String {
        format!("{}.{}", self.txid, self.id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (txid, id) = s.split_once('.')?;
        Some(Self { txid: txid.parse().ok()?, id: id.parse().ok()? })
    }

    /// Entries after `self` up to and including `head`, as a range the index can serve. On PostgreSQL a row
    /// comparison over the (txid, id) index; on SQLite, where txid is always 0, a range of the primary key (a
    /// condition on txid there would make every pass read the whole log).
    fn range_to(self, head: Cursor, backend: DatabaseBackend) -> Condition {
        match backend {
            DatabaseBackend::Postgres => Condition::all()
                .add(Expr::cust(format!("(txid, id) > ({}, {})", self.txid, self.id)))
                .add(Expr::cust(format!("(txid, id) <= ({}, {})", head.txid, head.id))),
            _ => Condition::all().add(Column::Id.gt(self.id)).add(Column::Id.lte(head.id)),
        }
    }
}

/// On PostgreSQL, entries of transactions still running (or that may still commit) are not yet stable.
fn stable(backend: DatabaseBackend) -> Condition {
    match backend {
        DatabaseBackend::Postgres => Condition::all()
            .add(Expr::col(Column::Txid).lt(Expr::cust("pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))),
        _ => Condition::all(),
    }
}

/// The position of the newest stable entry: everything at or before it has committed, and whatever commits later
/// sorts after it. On SQLite (one writer) commit order is id order; on PostgreSQL an entry is stable once every
/// transaction older than its own has ended (`pg_snapshot_xmin`), and entries are ordered by (txid, id).
pub async fn head(db: &impl ConnectionTrait) -> Result<Cursor, DbErr> {
    let newest = AuditLog::find()
        .filter(stable(db.get_database_backend()))
        .order_by_desc(Column::Txid)
        .order_by_desc(Column::Id)
        .one(db)
        .await?;
    Ok(newest.as_ref().map(Cursor::of).unwrap_or_default())
}

/// Entries after `cursor` up to `head` (a stable head, see `head`) that pass `filter`, in visibility order.
pub fn tail_select(backend: DatabaseBackend, filter: &Filter, cursor: Cursor, head: Cursor) -> Select<AuditLog> {
    let query = AuditLog::find().filter(cursor.range_to(head, backend)).filter(filter.condition());
    let query = if backend == DatabaseBackend::Postgres { query.order_by_asc(Column::Txid) } else { query };
    query.order_by_asc(Column::Id)
}

/// Entries after `cursor`, up to the current stable head, in visibility order. Returns them and the position to
/// continue from, which moves past non-matching entries too, so that a narrow filter does not rescan the log.
pub async fn tail(
    db: &impl ConnectionTrait,
    filter: &Filter,
    cursor: Cursor,
    limit: u64,
) -> Result<(Vec<Model>, Cursor), DbErr> {
    let head = head(db).await?;
    if head <= cursor {
        return Ok((Vec::new(), cursor));
    }
    let rows = tail_select(db.get_database_backend(), filter, cursor, head).limit(limit).all(db).await?;
    let next = if rows.len() as u64 == limit { rows.last().map(Cursor::of).unwrap_or(head) } else { head };
    Ok((rows, next))
}
