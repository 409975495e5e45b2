//! The append-only audit log: who changed what, when, from what to what.
//!
//! Entries are written through the same connection or transaction as the change they describe, so a change and
//! its entry commit together or not at all.

use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use serde_json::{Value as Json, json};

use super::entity::audit_log;
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
    StatusChanged,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::StatusChanged => "status_changed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: Actor,
    pub action: Action,
    pub entity_kind: &'static str,
    pub entity_id: String,
    pub before: Option<Json>,
    pub after: Option<Json>,
    pub note: Option<String>,
    pub trace_id: Option<String>,
}

impl Entry {
    /// `created`: no before, the whole new object after.
    pub fn created(actor: Actor, entity_kind: &'static str, entity_id: &str, after: Json, trace_id: &str) -> Self {
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
            before: Some(json!({ "status": from })),
            after: Some(after),
            note: Some(note),
            trace_id: Some(trace_id.to_owned()),
        }
    }
}

/// Rows per INSERT, well under the bind-parameter limits of SQLite and PostgreSQL.
const ROWS_PER_INSERT: usize = 1000;

pub async fn append(db: &impl ConnectionTrait, ts: Micros, entries: Vec<Entry>) -> Result<(), DbErr> {
    let mut rows = entries.into_iter().map(|e| audit_log::ActiveModel {
        ts: Set(ts),
        actor_kind: Set(e.actor.kind),
        actor_id: Set(e.actor.id),
        action: Set(e.action.as_str().to_owned()),
        entity_kind: Set(e.entity_kind.to_owned()),
        entity_id: Set(e.entity_id),
        before: Set(e.before),
        after: Set(e.after),
        note: Set(e.note),
        trace_id: Set(e.trace_id),
        ..Default::default()
    });
    loop {
        let chunk: Vec<_> = rows.by_ref().take(ROWS_PER_INSERT).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        audit_log::Entity::insert_many(chunk).exec_without_returning(db).await?;
    }
}
