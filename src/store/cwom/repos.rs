//! Repos: the repositories work happens in. The slug is unique and stable; the name may change.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::{
    Change,
    enums::{DbEnum, stored},
    from_json, meta_from_json, meta_to_json, new_id, snapshot, to_json, validate,
};
use crate::{
    convert::timestamp,
    error::{Error, Result, Violations},
    pb,
    store::{
        audit::{self, Entry},
        entity::cwom::repo::{self, Column, Entity as Repos, Model},
    },
};

pub const KIND: &str = "Repo";

pub fn to_pb(m: &Model) -> pb::Repo {
    pb::Repo {
        id: m.id.clone(),
        name: m.name.clone(),
        slug: m.slug.clone(),
        source: from_json(&m.source),
        default_branch: m.default_branch.clone(),
        visibility: stored::<pb::Visibility>(&m.visibility),
        owners: from_json(&m.owners),
        policy: from_json(&m.policy),
        links: from_json(&m.links),
        tags: from_json(&m.tags),
        meta: meta_from_json(&m.meta),
        trace_id: m.trace_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
    }
}

/// The fields a client sets, checked and with defaults applied.
struct Fields {
    name: String,
    default_branch: String,
    visibility: pb::Visibility,
}

fn validate(repo: &pb::Repo, v: &mut Violations) -> Fields {
    v.length("repo.name", &repo.name, 1, 256);
    let default_branch = if repo.default_branch.is_empty() { "main".to_owned() } else { repo.default_branch.clone() };
    v.length("repo.default_branch", &default_branch, 1, 128);
    validate::source(v, "repo.source", repo.source.as_ref());
    validate::actors(v, "repo.owners", &repo.owners);
    if let Some(policy) = &repo.policy {
        v.length("repo.policy.secrets_profile", &policy.secrets_profile, 0, 64);
    }
    let visibility = validate::enumeration(v, "repo.visibility", repo.visibility, Some(pb::Visibility::Private));
    Fields { name: repo.name.clone(), default_branch, visibility: visibility.unwrap_or(pb::Visibility::Private) }
}

pub async fn create(db: &DatabaseConnection, change: &Change, repo: pb::Repo) -> Result<pb::Repo> {
    let mut v = Violations::default();
    v.length("repo.slug", &repo.slug, 1, 256);
    let fields = validate(&repo, &mut v);
    v.into_result()?;
    let model = new_model(change, repo, fields);
    let txn = db.begin().await?;
    Repos::insert(repo::ActiveModel::from(model.clone())).exec_without_returning(&txn).await.map_err(|e| {
        match Error::from(e) {
            Error::AlreadyExists(_) => Error::AlreadyExists(format!("Repo slug '{}' already exists", model.slug)),
            other => other,
        }
    })?;
    let created = created(&txn, change, &model).await?;
    txn.commit().await?;
    Ok(created)
}

fn new_model(change: &Change, repo: pb::Repo, fields: Fields) -> Model {
    Model {
        id: new_id(),
        name: fields.name,
        slug: repo.slug,
        source: to_json(&repo.source),
        default_branch: fields.default_branch,
        visibility: fields.visibility.to_db().to_owned(),
        owners: to_json(&repo.owners),
        policy: to_json(&repo.policy),
        links: to_json(&repo.links),
        tags: to_json(&repo.tags),
        meta: meta_to_json(repo.meta),
        trace_id: Some(change.trace_id.clone()),
        created_at: change.now,
        updated_at: change.now,
    }
}

/// The `created` audit entry of a new repo.
async fn created(db: &impl ConnectionTrait, change: &Change, model: &Model) -> Result<pb::Repo> {
    let created = to_pb(model);
    let entry = Entry::created(change.actor.clone(), KIND, &model.id, snapshot(&created), &change.trace_id);
    audit::append(db, change.now, vec![entry]).await?;
    Ok(created)
}

/// The repo with this slug, created (with its audit entry) if there is none. Safe against concurrent callers.
pub async fn get_or_create(db: &impl ConnectionTrait, change: &Change, repo: pb::Repo) -> Result<(pb::Repo, bool)> {
    if let Some(existing) = Repos::find().filter(Column::Slug.eq(&repo.slug)).one(db).await? {
        return Ok((to_pb(&existing), false));
    }
    let mut v = Violations::default();
    v.length("target.repo", &repo.slug, 1, 256);
    let fields = validate(&repo, &mut v);
    v.into_result()?;
    let model = new_model(change, repo, fields);
    // ON CONFLICT DO NOTHING: a concurrent creator of the same slug wins without aborting our transaction.
    let inserted = Repos::insert(repo::ActiveModel::from(model.clone()))
        .on_conflict(sea_orm::sea_query::OnConflict::column(Column::Slug).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    if inserted > 0 {
        return Ok((created(db, change, &model).await?, true));
    }
    let stored = Repos::find()
        .filter(Column::Slug.eq(&model.slug))
        .one(db)
        .await?
        .ok_or_else(|| Error::internal("repo get-or-create", "the repo vanished"))?;
    Ok((to_pb(&stored), false))
}

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Model> {
    Repos::find_by_id(id.to_owned()).one(db).await?.ok_or_else(|| Error::NotFound(format!("Repo {id} not found")))
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<pb::Repo> {
    Ok(to_pb(&find(db, id).await?))
}

pub async fn list(
    db: &impl ConnectionTrait,
    visibility: Option<pb::Visibility>,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<pb::Repo>> {
    let mut query = Repos::find();
    if let Some(visibility) = visibility {
        query = query.filter(Column::Visibility.eq(visibility.to_db()));
    }
    if let Some(after) = after {
        query = query.filter(Column::Id.lt(after));
    }
    let rows = query.order_by_desc(Column::Id).limit(limit).all(db).await?;
    Ok(rows.iter().map(to_pb).collect())
}

/// Replaces the mutable fields; the slug is the repo's identity and cannot change.
pub async fn update(db: &DatabaseConnection, change: &Change, repo: pb::Repo) -> Result<pb::Repo> {
    let id = super::parse_id("repo.id", &repo.id)?;
    let mut v = Violations::default();
    let fields = validate(&repo, &mut v);
    v.into_result()?;
    let txn = db.begin().await?;
    let current = find(&txn, &id).await?;
    if !repo.slug.is_empty() && repo.slug != current.slug {
        return Err(Error::invalid("repo.slug", format!("cannot change (is '{}'); the slug is stable", current.slug)));
    }
    let before = to_pb(&current);
    let mut model = current.clone();
    model.name = fields.name;
    model.source = to_json(&repo.source);
    model.default_branch = fields.default_branch;
    model.visibility = fields.visibility.to_db().to_owned();
    model.owners = to_json(&repo.owners);
    model.policy = to_json(&repo.policy);
    model.links = to_json(&repo.links);
    model.tags = to_json(&repo.tags);
    model.meta = meta_to_json(repo.meta);
    model.updated_at = change.now;
    let after = to_pb(&model);
    if strip_time(&before) == strip_time(&after) {
        return Ok(before);
    }
    Repos::update(repo::ActiveModel::from(model).reset_all()).exec(&txn).await?;
    audit::append(
        &txn,
        change.now,
        vec![Entry::updated(change.actor.clone(), KIND, &id, snapshot(&before), snapshot(&after), &change.trace_id)],
    )
    .await?;
    txn.commit().await?;
    Ok(after)
}

fn strip_time(repo: &pb::Repo) -> pb::Repo {
    pb::Repo { updated_at: None, ..repo.clone() }
}
