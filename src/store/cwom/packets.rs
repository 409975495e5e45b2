//! ContextPackets: what an issue's work starts from. Immutable (the database refuses UPDATE and DELETE); a new
//! version is a new packet. Versions are unique per issue, and `sequence` (1, 2, 3... per issue) orders them: the
//! latest packet is the one with the highest sequence.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use super::{
    Change, from_json,
    links::{self, Link},
    meta_from_json, meta_to_json, new_id, object_ref, snapshot, to_json, validate,
};
use crate::{
    convert::timestamp,
    error::{Error, Result, Violations},
    pb::{self, ObjectKind},
    store::{
        audit::{self, Entry},
        entity::cwom::context_packet::{self, Column, Entity as Packets, Model},
    },
};

pub const KIND: &str = "ContextPacket";

pub fn to_pb(m: &Model, doctrine_refs: &[String]) -> pb::ContextPacket {
    pb::ContextPacket {
        id: m.id.clone(),
        for_issue: Some(object_ref(ObjectKind::Issue, &m.issue_id)),
        version: m.version.clone(),
        sequence: m.sequence,
        summary: m.summary.clone(),
        inputs: from_json(&m.inputs),
        assumptions: from_json(&m.assumptions),
        open_questions: from_json(&m.open_questions),
        instructions: m.instructions.clone(),
        doctrine_refs: doctrine_refs.iter().map(|id| object_ref(ObjectKind::DoctrineRef, id)).collect(),
        constraint_snapshot: m
            .constraint_snapshot_id
            .as_deref()
            .map(|id| object_ref(ObjectKind::ConstraintSnapshot, id)),
        tags: from_json(&m.tags),
        meta: meta_from_json(&m.meta),
        trace_id: m.trace_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
    }
}

async fn with_links(db: &impl ConnectionTrait, rows: Vec<Model>) -> Result<Vec<pb::ContextPacket>> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let doctrine = links::linked(db, Link::ContextPacketDoctrineRef, &ids).await?;
    Ok(rows.iter().map(|r| to_pb(r, doctrine.get(&r.id).map(Vec::as_slice).unwrap_or_default())).collect())
}

pub async fn create(db: &DatabaseConnection, change: &Change, cp: pb::ContextPacket) -> Result<pb::ContextPacket> {
    let txn = db.begin().await?;
    let created = insert(&txn, change, cp).await?;
    txn.commit().await?;
    Ok(created)
}

/// Inserts a packet, its doctrine links and its link to the issue, with their audit entries.
pub async fn insert(db: &impl ConnectionTrait, change: &Change, cp: pb::ContextPacket) -> Result<pb::ContextPacket> {
    let mut v = Violations::default();
    let issue_id = validate::reference(&mut v, "context_packet.for_issue", cp.for_issue.as_ref(), ObjectKind::Issue);
    v.length("context_packet.version", &cp.version, 1, 64);
    v.length("context_packet.summary", &cp.summary, 1, 4000);
    v.length("context_packet.instructions", &cp.instructions, 0, 8000);
    validate::strings(&mut v, "context_packet.assumptions", &cp.assumptions, 4000);
    validate::strings(&mut v, "context_packet.open_questions", &cp.open_questions, 4000);
    let doctrine_ids =
        validate::references(&mut v, "context_packet.doctrine_refs", &cp.doctrine_refs, ObjectKind::DoctrineRef);
    let snapshot_id = validate::optional_reference(
        &mut v,
        "context_packet.constraint_snapshot",
        cp.constraint_snapshot.as_ref(),
        ObjectKind::ConstraintSnapshot,
    );
    v.into_result()?;
    let Some(issue_id) = issue_id else { return Err(Error::invalid("context_packet.for_issue", "is required")) };
    super::issues::find(db, &issue_id)
        .await
        .map_err(|_| Error::NotFound(format!("context_packet.for_issue: Issue {issue_id} not found")))?;
    if let Some(id) = &snapshot_id {
        super::snapshots::find(db, id).await.map_err(|_| {
            Error::NotFound(format!("context_packet.constraint_snapshot: ConstraintSnapshot {id} not found"))
        })?;
    }
    for id in &doctrine_ids {
        super::doctrine::find(db, id)
            .await
            .map_err(|_| Error::NotFound(format!("context_packet.doctrine_refs: DoctrineRef {id} not found")))?;
    }
    if Packets::find()
        .filter(Column::IssueId.eq(&issue_id))
        .filter(Column::Version.eq(&cp.version))
        .one(db)
        .await?
        .is_some()
    {
        return Err(Error::AlreadyExists(format!(
            "ContextPacket version '{}' already exists for issue {issue_id}",
            cp.version
        )));
    }
    let last: Option<i32> = Packets::find()
        .select_only()
        .column(Column::Sequence)
        .filter(Column::IssueId.eq(&issue_id))
        .order_by_desc(Column::Sequence)
        .into_tuple()
        .one(db)
        .await?;
    let model = Model {
        id: new_id(),
        issue_id: issue_id.clone(),
        version: cp.version,
        sequence: last.unwrap_or(0) + 1,
        summary: cp.summary,
        inputs: to_json(&cp.inputs),
        assumptions: to_json(&cp.assumptions),
        open_questions: to_json(&cp.open_questions),
        instructions: cp.instructions,
        constraint_snapshot_id: snapshot_id,
        tags: to_json(&cp.tags),
        meta: meta_to_json(cp.meta),
        trace_id: Some(change.trace_id.clone()),
        created_at: change.now,
    };
    // Unique (issue, version) and (issue, sequence) also stop a concurrent writer that passed the checks above.
    Packets::insert(context_packet::ActiveModel::from(model.clone())).exec_without_returning(db).await.map_err(
        |e| match Error::from(e) {
            Error::AlreadyExists(_) => Error::AlreadyExists(format!(
                "ContextPacket version '{}' already exists for issue {}",
                model.version, model.issue_id
            )),
            other => other,
        },
    )?;
    for id in &doctrine_ids {
        links::add(db, Link::ContextPacketDoctrineRef, &model.id, id, change.now).await?;
    }
    links::add(db, Link::IssueContextPacket, &issue_id, &model.id, change.now).await?;
    let created = to_pb(&model, &doctrine_ids);
    audit::append(
        db,
        change.now,
        vec![
            Entry::created(change.actor.clone(), KIND, &model.id, snapshot(&created), &change.trace_id),
            Entry::link(
                change.actor.clone(),
                true,
                (super::issues::KIND, &issue_id),
                (KIND, &model.id),
                &change.trace_id,
            ),
        ],
    )
    .await?;
    Ok(created)
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<pb::ContextPacket> {
    let row = Packets::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("ContextPacket {id} not found")))?;
    Ok(with_links(db, vec![row]).await?.remove(0))
}

/// Newest first (highest sequence first within an issue).
pub async fn list(
    db: &impl ConnectionTrait,
    issue_id: Option<&str>,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<pb::ContextPacket>> {
    let mut query = Packets::find();
    if let Some(issue) = issue_id {
        query = query.filter(Column::IssueId.eq(issue));
    }
    if let Some(after) = after {
        query = query.filter(Column::Id.lt(after));
    }
    let rows = query.order_by_desc(Column::Id).limit(limit).all(db).await?;
    with_links(db, rows).await
}

/// The issue's latest packet, if it has any.
pub async fn latest(db: &impl ConnectionTrait, issue_id: &str) -> Result<Option<Model>> {
    Ok(Packets::find().filter(Column::IssueId.eq(issue_id)).order_by_desc(Column::Sequence).one(db).await?)
}

/// The issue's first packet, if it has any.
pub async fn first(db: &impl ConnectionTrait, issue_id: &str) -> Result<Option<Model>> {
    Ok(Packets::find().filter(Column::IssueId.eq(issue_id)).order_by_asc(Column::Sequence).one(db).await?)
}

/// The refusal of any change to a packet.
pub fn immutable() -> Error {
    Error::precondition("IMMUTABILITY_VIOLATION", "ContextPacket is immutable: create a new version instead")
}
