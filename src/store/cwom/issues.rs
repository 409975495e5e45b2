//! Issues: units of work in a repo, with a status machine. Their links (doctrine refs, constraint snapshots,
//! context packets) and runs are derived on read.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait, sea_query::Expr,
};

use super::{
    Change,
    enums::{DbEnum, stored},
    from_json,
    links::{self, Link},
    meta_from_json, meta_to_json, new_id, object_ref, parse_id, snapshot,
    status::{self, issue_allows},
    to_json, validate,
};
use crate::{
    convert::timestamp,
    error::{Error, Result, Violations},
    pb::{self, ObjectKind},
    store::{
        audit::{self, Entry},
        entity::cwom::{
            issue::{self, Column, Entity as Issues, Model},
            run::{Column as RunColumn, Entity as Runs},
        },
    },
};

pub const KIND: &str = "Issue";

/// What an issue shows besides its own row.
#[derive(Debug, Default)]
pub struct Derived {
    doctrine_refs: HashMap<String, Vec<String>>,
    constraints: HashMap<String, Vec<String>>,
    context_packets: HashMap<String, Vec<String>>,
    runs: HashMap<String, Vec<String>>,
}

pub async fn derived(db: &impl ConnectionTrait, ids: &[String]) -> Result<Derived> {
    let mut runs: HashMap<String, Vec<String>> = HashMap::new();
    if !ids.is_empty() {
        let rows: Vec<(String, String)> = Runs::find()
            .select_only()
            .column(RunColumn::IssueId)
            .column(RunColumn::Id)
            .filter(RunColumn::IssueId.is_in(ids.iter().map(String::as_str)))
            .order_by_asc(RunColumn::Id)
            .into_tuple()
            .all(db)
            .await?;
        for (issue_id, run_id) in rows {
            runs.entry(issue_id).or_default().push(run_id);
        }
    }
    Ok(Derived {
        doctrine_refs: links::linked(db, Link::IssueDoctrineRef, ids).await?,
        constraints: links::linked(db, Link::IssueConstraintSnapshot, ids).await?,
        context_packets: links::linked(db, Link::IssueContextPacket, ids).await?,
        runs,
    })
}

fn refs(map: &HashMap<String, Vec<String>>, id: &str, kind: ObjectKind) -> Vec<pb::Ref> {
    map.get(id).map(|ids| ids.iter().map(|i| object_ref(kind, i)).collect()).unwrap_or_default()
}

pub fn to_pb(m: &Model, derived: &Derived) -> pb::Issue {
    pb::Issue {
        id: m.id.clone(),
        repo: Some(object_ref(ObjectKind::Repo, &m.repo_id)),
        title: m.title.clone(),
        description: m.description.clone(),
        r#type: stored::<pb::IssueType>(&m.issue_type),
        priority: stored::<pb::Priority>(&m.priority),
        status: stored::<pb::WorkStatus>(&m.status),
        assignees: from_json(&m.assignees),
        watchers: from_json(&m.watchers),
        doctrine_refs: refs(&derived.doctrine_refs, &m.id, ObjectKind::DoctrineRef),
        constraints: refs(&derived.constraints, &m.id, ObjectKind::ConstraintSnapshot),
        context_packets: refs(&derived.context_packets, &m.id, ObjectKind::ContextPacket),
        acceptance: from_json(&m.acceptance),
        relationships: from_json(&m.relationships),
        runs: refs(&derived.runs, &m.id, ObjectKind::Run),
        tags: from_json(&m.tags),
        meta: meta_from_json(&m.meta),
        trace_id: m.trace_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
    }
}

/// The issue as it is now, with its derived references.
pub async fn load(db: &impl ConnectionTrait, id: &str) -> Result<pb::Issue> {
    let model = find(db, id).await?;
    Ok(to_pb(&model, &derived(db, std::slice::from_ref(&model.id)).await?))
}

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Model> {
    Issues::find_by_id(id.to_owned()).one(db).await?.ok_or_else(|| Error::NotFound(format!("Issue {id} not found")))
}

struct Fields {
    issue_type: pb::IssueType,
    priority: pb::Priority,
}

fn validate_fields(issue: &pb::Issue, v: &mut Violations) -> Option<Fields> {
    v.length("issue.title", &issue.title, 1, 512);
    v.length("issue.description", &issue.description, 0, 16_000);
    let issue_type = validate::enumeration(v, "issue.type", issue.r#type, None);
    let priority = validate::enumeration(v, "issue.priority", issue.priority, Some(pb::Priority::P2));
    validate::actors(v, "issue.assignees", &issue.assignees);
    validate::actors(v, "issue.watchers", &issue.watchers);
    if let Some(acceptance) = &issue.acceptance {
        validate::strings(v, "issue.acceptance.criteria", &acceptance.criteria, 4000);
        validate::strings(v, "issue.acceptance.tests_expected", &acceptance.tests_expected, 4000);
    }
    if let Some(rel) = &issue.relationships {
        validate::optional_reference(v, "issue.relationships.parent", rel.parent.as_ref(), ObjectKind::Issue);
        validate::references(v, "issue.relationships.blocks", &rel.blocks, ObjectKind::Issue);
        validate::references(v, "issue.relationships.blocked_by", &rel.blocked_by, ObjectKind::Issue);
        validate::references(v, "issue.relationships.duplicates", &rel.duplicates, ObjectKind::Issue);
    }
    Some(Fields { issue_type: issue_type?, priority: priority? })
}

/// Issues named in relationships must exist.
async fn check_related(db: &impl ConnectionTrait, issue: &pb::Issue) -> Result<()> {
    let Some(rel) = &issue.relationships else { return Ok(()) };
    let all = rel.parent.iter().chain(&rel.blocks).chain(&rel.blocked_by).chain(&rel.duplicates);
    for r in all {
        let id = parse_id("issue.relationships", &r.id)?;
        if Issues::find_by_id(id.clone()).one(db).await?.is_none() {
            return Err(Error::NotFound(format!("issue.relationships: Issue {id} not found")));
        }
    }
    Ok(())
}

pub async fn create(db: &DatabaseConnection, change: &Change, issue: pb::Issue) -> Result<pb::Issue> {
    let txn = db.begin().await?;
    let created = insert(&txn, change, issue).await?;
    txn.commit().await?;
    Ok(created)
}

/// Inserts an issue (inside the caller's transaction) with its audit entry.
pub async fn insert(db: &impl ConnectionTrait, change: &Change, issue: pb::Issue) -> Result<pb::Issue> {
    insert_with_id(db, change, &new_id(), issue).await
}

/// `insert` with an id chosen by the caller.
pub async fn insert_with_id(
    db: &impl ConnectionTrait,
    change: &Change,
    id: &str,
    issue: pb::Issue,
) -> Result<pb::Issue> {
    let mut v = Violations::default();
    let repo_id = validate::reference(&mut v, "issue.repo", issue.repo.as_ref(), ObjectKind::Repo);
    let fields = validate_fields(&issue, &mut v);
    let status = match issue.status() {
        pb::WorkStatus::Unspecified | pb::WorkStatus::Planned => pb::WorkStatus::Planned,
        pb::WorkStatus::Ready => pb::WorkStatus::Ready,
        other => {
            v.push("issue.status", format!("a new issue starts planned or ready, got {}", other.to_db()));
            pb::WorkStatus::Planned
        }
    };
    v.into_result()?;
    let (Some(repo_id), Some(fields)) = (repo_id, fields) else { return Err(Error::invalid("issue", "is invalid")) };
    super::repos::find(db, &repo_id)
        .await
        .map_err(|_| Error::NotFound(format!("issue.repo: Repo {repo_id} not found")))?;
    check_related(db, &issue).await?;

    let model = Model {
        id: id.to_owned(),
        repo_id,
        title: issue.title,
        description: issue.description,
        issue_type: fields.issue_type.to_db().to_owned(),
        priority: fields.priority.to_db().to_owned(),
        status: status.to_db().to_owned(),
        assignees: to_json(&issue.assignees),
        watchers: to_json(&issue.watchers),
        acceptance: to_json(&issue.acceptance),
        relationships: to_json(&issue.relationships),
        tags: to_json(&issue.tags),
        meta: meta_to_json(issue.meta),
        trace_id: Some(change.trace_id.clone()),
        created_at: change.now,
        updated_at: change.now,
    };
    Issues::insert(issue::ActiveModel::from(model.clone())).exec_without_returning(db).await?;
    let created = to_pb(&model, &Derived::default());
    let entry = Entry::created(change.actor.clone(), KIND, &model.id, snapshot(&created), &change.trace_id);
    audit::append(db, change.now, vec![entry]).await?;
    Ok(created)
}

#[derive(Debug, Clone, Default)]
pub struct IssueFilter {
    pub repo_id: Option<String>,
    pub status: Option<pb::WorkStatus>,
    pub issue_type: Option<pb::IssueType>,
    pub priority: Option<pb::Priority>,
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &IssueFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<pb::Issue>> {
    let mut query = Issues::find();
    if let Some(repo_id) = &filter.repo_id {
        query = query.filter(Column::RepoId.eq(repo_id.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(Column::Status.eq(status.to_db()));
    }
    if let Some(t) = filter.issue_type {
        query = query.filter(Column::IssueType.eq(t.to_db()));
    }
    if let Some(p) = filter.priority {
        query = query.filter(Column::Priority.eq(p.to_db()));
    }
    if let Some(after) = after {
        query = query.filter(Column::Id.lt(after));
    }
    let rows = query.order_by_desc(Column::Id).limit(limit).all(db).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let derived = derived(db, &ids).await?;
    Ok(rows.iter().map(|r| to_pb(r, &derived)).collect())
}

/// Replaces the descriptive fields. The repo is fixed and the status moves only through `set_status`.
pub async fn update(db: &DatabaseConnection, change: &Change, issue: pb::Issue) -> Result<pb::Issue> {
    let id = parse_id("issue.id", &issue.id)?;
    let mut v = Violations::default();
    let fields = validate_fields(&issue, &mut v);
    v.into_result()?;
    let Some(fields) = fields else { return Err(Error::invalid("issue", "is invalid")) };
    let txn = db.begin().await?;
    let current = find(&txn, &id).await?;
    if issue.status != 0 && stored::<pb::WorkStatus>(&current.status) != issue.status {
        return Err(Error::invalid("issue.status", "change the status with UpdateIssueStatus"));
    }
    if let Some(repo) = &issue.repo
        && !repo.id.is_empty()
        && repo.id != current.repo_id
    {
        return Err(Error::invalid("issue.repo", "an issue cannot move to another repo"));
    }
    check_related(&txn, &issue).await?;
    let derived = derived(&txn, std::slice::from_ref(&id)).await?;
    let before = to_pb(&current, &derived);
    let mut model = current;
    model.title = issue.title;
    model.description = issue.description;
    model.issue_type = fields.issue_type.to_db().to_owned();
    model.priority = fields.priority.to_db().to_owned();
    model.assignees = to_json(&issue.assignees);
    model.watchers = to_json(&issue.watchers);
    model.acceptance = to_json(&issue.acceptance);
    model.relationships = to_json(&issue.relationships);
    model.tags = to_json(&issue.tags);
    model.meta = meta_to_json(issue.meta);
    model.updated_at = change.now;
    let after = to_pb(&model, &derived);
    if (pb::Issue { updated_at: None, ..before.clone() }) == (pb::Issue { updated_at: None, ..after.clone() }) {
        return Ok(before);
    }
    Issues::update(issue::ActiveModel::from(model).reset_all()).exec(&txn).await?;
    let entry = Entry::updated(change.actor.clone(), KIND, &id, snapshot(&before), snapshot(&after), &change.trace_id);
    audit::append(&txn, change.now, vec![entry]).await?;
    txn.commit().await?;
    Ok(after)
}

/// Moves an issue to `to` if its status machine allows it; the same status is a no-op. Returns the old status when
/// it changed. Runs inside the caller's transaction, with its audit entry.
pub async fn set_status(
    db: &impl ConnectionTrait,
    change: &Change,
    id: &str,
    to: pb::WorkStatus,
    note: Option<&str>,
) -> Result<Option<pb::WorkStatus>> {
    let current = find(db, id).await?;
    let from = pb::WorkStatus::from_db(&current.status).unwrap_or(pb::WorkStatus::Unspecified);
    if from == to {
        return Ok(None);
    }
    status::check(KIND, issue_allows, from, to)?;
    let updated = Issues::update_many()
        .col_expr(Column::Status, Expr::value(to.to_db()))
        .col_expr(Column::UpdatedAt, Expr::value(change.now))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(from.to_db()))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(Error::precondition("CONCURRENT_CHANGE", format!("Issue {id} changed status meanwhile; retry")));
    }
    let entry = Entry::status_changed(
        change.actor.clone(),
        KIND,
        id,
        (from.to_db(), to.to_db()),
        serde_json::json!({}),
        note,
        &change.trace_id,
    );
    audit::append(db, change.now, vec![entry]).await?;
    Ok(Some(from))
}

pub async fn update_status(
    db: &DatabaseConnection,
    change: &Change,
    id: &str,
    to: pb::WorkStatus,
    note: &str,
) -> Result<pb::Issue> {
    let id = parse_id("id", id)?;
    if to == pb::WorkStatus::Unspecified {
        return Err(Error::invalid("status", format!("is required (one of {})", pb::WorkStatus::names())));
    }
    let txn = db.begin().await?;
    set_status(&txn, change, &id, to, (!note.is_empty()).then_some(note)).await?;
    let issue = load(&txn, &id).await?;
    txn.commit().await?;
    Ok(issue)
}

/// Links or unlinks a doctrine ref or constraint snapshot, with the audit entry on the issue.
pub async fn set_link(
    db: &DatabaseConnection,
    change: &Change,
    link: Link,
    issue_id: &str,
    target_id: &str,
    linked: bool,
) -> Result<pb::Issue> {
    let issue_id = parse_id("issue_id", issue_id)?;
    let target_id = parse_id("target_id", target_id)?;
    let txn = db.begin().await?;
    find(&txn, &issue_id).await?;
    let kind = link.right_kind();
    let exists = match kind {
        ObjectKind::DoctrineRef => super::doctrine::find(&txn, &target_id).await.is_ok(),
        ObjectKind::ConstraintSnapshot => super::snapshots::find(&txn, &target_id).await.is_ok(),
        _ => false,
    };
    if !exists {
        return Err(Error::NotFound(format!("target_id: {} {target_id} not found", kind.to_db())));
    }
    let changed = if linked {
        links::add(&txn, link, &issue_id, &target_id, change.now).await?
    } else {
        links::remove(&txn, link, &issue_id, &target_id).await?
    };
    if changed {
        let entry =
            Entry::link(change.actor.clone(), linked, (KIND, &issue_id), (kind.to_db(), &target_id), &change.trace_id);
        audit::append(&txn, change.now, vec![entry]).await?;
    }
    let issue = load(&txn, &issue_id).await?;
    txn.commit().await?;
    Ok(issue)
}
