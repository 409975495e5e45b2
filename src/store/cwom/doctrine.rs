//! DoctrineRefs: principles, policies and procedures work should follow. (namespace, name, version) is unique and
//! is the ref's identity; the rest may be updated.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use super::{
    Change,
    enums::{DbEnum, stored},
    from_json, meta_from_json, meta_to_json, new_id, parse_id, snapshot, to_json, validate,
};
use crate::{
    convert::timestamp,
    error::{Error, Result, Violations},
    pb::{self, ObjectKind},
    store::{
        audit::{self, Entry},
        entity::cwom::doctrine_ref::{self, Column, Entity as Doctrine, Model},
    },
};

pub const KIND: &str = "DoctrineRef";

pub fn to_pb(m: &Model) -> pb::DoctrineRef {
    pb::DoctrineRef {
        id: m.id.clone(),
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        version: m.version.clone(),
        r#type: stored::<pb::DoctrineType>(&m.doctrine_type),
        priority: stored::<pb::DoctrinePriority>(&m.priority),
        statement: m.statement.clone(),
        rationale: m.rationale.clone(),
        links: from_json(&m.links),
        applicability: from_json(&m.applicability),
        tags: from_json(&m.tags),
        meta: meta_from_json(&m.meta),
        trace_id: m.trace_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
    }
}

fn triple(d: &pb::DoctrineRef) -> String {
    format!("{}/{}@{}", d.namespace, d.name, d.version)
}

struct Fields {
    doctrine_type: pb::DoctrineType,
    priority: pb::DoctrinePriority,
}

fn validate_fields(d: &pb::DoctrineRef, v: &mut Violations) -> Option<Fields> {
    let doctrine_type = validate::enumeration(v, "doctrine_ref.type", d.r#type, None);
    let priority = validate::enumeration(v, "doctrine_ref.priority", d.priority, Some(pb::DoctrinePriority::Should));
    v.length("doctrine_ref.statement", &d.statement, 1, 4000);
    v.length("doctrine_ref.rationale", &d.rationale, 0, 8000);
    if let Some(a) = &d.applicability {
        validate::references(v, "doctrine_ref.applicability.repo_refs", &a.repo_refs, ObjectKind::Repo);
    }
    Some(Fields { doctrine_type: doctrine_type?, priority: priority? })
}

pub async fn create(db: &DatabaseConnection, change: &Change, d: pb::DoctrineRef) -> Result<pb::DoctrineRef> {
    let mut v = Violations::default();
    v.length("doctrine_ref.namespace", &d.namespace, 1, 128);
    v.length("doctrine_ref.name", &d.name, 1, 256);
    v.length("doctrine_ref.version", &d.version, 1, 64);
    let fields = validate_fields(&d, &mut v);
    v.into_result()?;
    let Some(fields) = fields else { return Err(Error::invalid("doctrine_ref", "is invalid")) };
    let model = Model {
        id: new_id(),
        namespace: d.namespace.clone(),
        name: d.name.clone(),
        version: d.version.clone(),
        doctrine_type: fields.doctrine_type.to_db().to_owned(),
        priority: fields.priority.to_db().to_owned(),
        statement: d.statement.clone(),
        rationale: d.rationale.clone(),
        links: to_json(&d.links),
        applicability: to_json(&d.applicability),
        tags: to_json(&d.tags),
        meta: meta_to_json(d.meta.clone()),
        trace_id: Some(change.trace_id.clone()),
        created_at: change.now,
        updated_at: change.now,
    };
    let txn = db.begin().await?;
    Doctrine::insert(doctrine_ref::ActiveModel::from(model.clone())).exec_without_returning(&txn).await.map_err(
        |e| match Error::from(e) {
            Error::AlreadyExists(_) => Error::AlreadyExists(format!("DoctrineRef '{}' already exists", triple(&d))),
            other => other,
        },
    )?;
    let created = to_pb(&model);
    let entry = Entry::created(change.actor.clone(), KIND, &model.id, snapshot(&created), &change.trace_id);
    audit::append(&txn, change.now, vec![entry]).await?;
    txn.commit().await?;
    Ok(created)
}

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Model> {
    Doctrine::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("DoctrineRef {id} not found")))
}

#[derive(Debug, Clone, Default)]
pub struct DoctrineFilter {
    pub namespace: Option<String>,
    pub doctrine_type: Option<pb::DoctrineType>,
    pub priority: Option<pb::DoctrinePriority>,
}

/// Ordered by (namespace, name, version); `after` is the last triple returned.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &DoctrineFilter,
    after: Option<(String, String, String)>,
    limit: u64,
) -> Result<Vec<pb::DoctrineRef>> {
    let mut query = Doctrine::find();
    if let Some(ns) = &filter.namespace {
        query = query.filter(Column::Namespace.eq(ns.as_str()));
    }
    if let Some(t) = filter.doctrine_type {
        query = query.filter(Column::DoctrineType.eq(t.to_db()));
    }
    if let Some(p) = filter.priority {
        query = query.filter(Column::Priority.eq(p.to_db()));
    }
    if let Some((ns, name, version)) = after {
        query = query.filter(
            Condition::any()
                .add(Column::Namespace.gt(ns.clone()))
                .add(Condition::all().add(Column::Namespace.eq(ns.clone())).add(Column::Name.gt(name.clone())))
                .add(
                    Condition::all()
                        .add(Column::Namespace.eq(ns))
                        .add(Column::Name.eq(name))
                        .add(Column::Version.gt(version)),
                ),
        );
    }
    let rows = query
        .order_by_asc(Column::Namespace)
        .order_by_asc(Column::Name)
        .order_by_asc(Column::Version)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows.iter().map(to_pb).collect())
}

/// Replaces type, priority, statement, rationale, links, applicability, tags and meta.
pub async fn update(db: &DatabaseConnection, change: &Change, d: pb::DoctrineRef) -> Result<pb::DoctrineRef> {
    let id = parse_id("doctrine_ref.id", &d.id)?;
    let mut v = Violations::default();
    let fields = validate_fields(&d, &mut v);
    v.into_result()?;
    let Some(fields) = fields else { return Err(Error::invalid("doctrine_ref", "is invalid")) };
    let txn = db.begin().await?;
    let current = find(&txn, &id).await?;
    for (field, given, stored) in [
        ("namespace", &d.namespace, &current.namespace),
        ("name", &d.name, &current.name),
        ("version", &d.version, &current.version),
    ] {
        if !given.is_empty() && given != stored {
            return Err(Error::invalid(
                format!("doctrine_ref.{field}"),
                "is part of the ref's identity and cannot change; create a new version instead",
            ));
        }
    }
    let before = to_pb(&current);
    let mut model = current;
    model.doctrine_type = fields.doctrine_type.to_db().to_owned();
    model.priority = fields.priority.to_db().to_owned();
    model.statement = d.statement;
    model.rationale = d.rationale;
    model.links = to_json(&d.links);
    model.applicability = to_json(&d.applicability);
    model.tags = to_json(&d.tags);
    model.meta = meta_to_json(d.meta);
    model.updated_at = change.now;
    let after = to_pb(&model);
    if (pb::DoctrineRef { updated_at: None, ..before.clone() })
        == (pb::DoctrineRef { updated_at: None, ..after.clone() })
    {
        return Ok(before);
    }
    Doctrine::update(doctrine_ref::ActiveModel::from(model).reset_all()).exec(&txn).await?;
    let entry = Entry::updated(change.actor.clone(), KIND, &id, snapshot(&before), snapshot(&after), &change.trace_id);
    audit::append(&txn, change.now, vec![entry]).await?;
    txn.commit().await?;
    Ok(after)
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<pb::DoctrineRef> {
    Ok(to_pb(&find(db, id).await?))
}
