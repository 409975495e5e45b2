//! Runs: one execution of an issue's work, by a person, an agent or the system, with a status machine. A run's
//! artifacts are derived on read from the artifacts it produced.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::{
    Change,
    enums::{DbEnum, stored},
    from_json,
    links::{self, Link},
    meta_from_json, meta_to_json, new_id, object_ref, parse_id, snapshot,
    status::{self, run_allows},
    to_json, validate,
};
use crate::{
    convert::timestamp,
    error::{Error, Result, Violations},
    pb::{self, ObjectKind},
    spec::timestamp_micros,
    store::{
        audit::{self, Entry},
        entity::cwom::{
            artifact::{Column as ArtifactColumn, Entity as Artifacts},
            run::{self, Column, Entity as Runs, Model},
        },
    },
};

pub const KIND: &str = "Run";

pub fn to_pb(m: &Model, artifacts: &[String]) -> pb::Run {
    let mut outputs: pb::RunOutputs = from_json(&m.outputs);
    outputs.artifacts = artifacts.iter().map(|id| object_ref(ObjectKind::Artifact, id)).collect();
    pb::Run {
        id: m.id.clone(),
        for_issue: Some(object_ref(ObjectKind::Issue, &m.issue_id)),
        repo: Some(object_ref(ObjectKind::Repo, &m.repo_id)),
        status: stored::<pb::WorkStatus>(&m.status),
        mode: stored::<pb::RunMode>(&m.mode),
        executor: from_json(&m.executor),
        inputs: from_json(&m.inputs),
        plan: from_json(&m.plan),
        telemetry: from_json(&m.telemetry),
        cost: from_json(&m.cost),
        outputs: Some(outputs),
        failure: m.failure.as_ref().map(from_json),
        artifact_root_uri: m.artifact_root_uri.clone(),
        task_id: m.task_id.clone().unwrap_or_default(),
        task_attempt: m.task_attempt.unwrap_or_default(),
        tags: from_json(&m.tags),
        meta: meta_from_json(&m.meta),
        trace_id: m.trace_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
    }
}

async fn with_artifacts(db: &impl ConnectionTrait, rows: &[Model]) -> Result<Vec<pb::Run>> {
    let mut by_run: HashMap<String, Vec<String>> = HashMap::new();
    if !rows.is_empty() {
        let pairs: Vec<(String, String)> = Artifacts::find()
            .select_only()
            .column(ArtifactColumn::RunId)
            .column(ArtifactColumn::Id)
            .filter(ArtifactColumn::RunId.is_in(rows.iter().map(|r| r.id.as_str())))
            .order_by_asc(ArtifactColumn::Id)
            .into_tuple()
            .all(db)
            .await?;
        for (run_id, id) in pairs {
            by_run.entry(run_id).or_default().push(id);
        }
    }
    Ok(rows.iter().map(|r| to_pb(r, by_run.get(&r.id).map(Vec::as_slice).unwrap_or_default())).collect())
}

pub async fn load(db: &impl ConnectionTrait, id: &str) -> Result<pb::Run> {
    let model = find(db, id).await?;
    Ok(with_artifacts(db, &[model]).await?.remove(0))
}

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Model> {
    Runs::find_by_id(id.to_owned()).one(db).await?.ok_or_else(|| Error::NotFound(format!("Run {id} not found")))
}

/// Checks the parts of a run that an update may replace.
fn validate_mutable(
    v: &mut Violations,
    telemetry: Option<&pb::Telemetry>,
    cost: Option<&pb::Cost>,
    outputs: Option<&pb::RunOutputs>,
    failure: Option<&pb::Failure>,
) {
    if let Some(t) = telemetry {
        for (name, ts) in [("started_at", &t.started_at), ("ended_at", &t.ended_at)] {
            if ts.as_ref().is_some_and(|ts| timestamp_micros(ts).is_none()) {
                v.push(&format!("run.telemetry.{name}"), "must be a valid timestamp");
            }
        }
        if t.duration_s.is_some_and(|d| d < 0.0 || !d.is_finite()) {
            v.push("run.telemetry.duration_s", "must be >= 0");
        }
    }
    if let Some(c) = cost {
        if c.usd.is_some_and(|x| x < 0.0 || !x.is_finite()) {
            v.push("run.cost.usd", "must be >= 0");
        }
        if c.tokens.is_some_and(|x| x < 0) {
            v.push("run.cost.tokens", "must be >= 0");
        }
        if c.compute_s.is_some_and(|x| x < 0.0 || !x.is_finite()) {
            v.push("run.cost.compute_s", "must be >= 0");
        }
    }
    if let Some(o) = outputs {
        v.length("run.outputs.result_summary", &o.result_summary, 0, 4000);
    }
    if let Some(f) = failure {
        validate::enumeration::<pb::FailureCategory>(v, "run.failure.category", f.category, None);
        v.length("run.failure.message", &f.message, 1, 4000);
    }
}

pub async fn create(db: &DatabaseConnection, change: &Change, run: pb::Run) -> Result<pb::Run> {
    let txn = db.begin().await?;
    let created = insert(&txn, change, run).await?;
    txn.commit().await?;
    Ok(created)
}

/// Inserts a run with its input links and their audit entries, inside the caller's transaction.
pub async fn insert(db: &impl ConnectionTrait, change: &Change, run: pb::Run) -> Result<pb::Run> {
    let mut v = Violations::default();
    let issue_id = validate::reference(&mut v, "run.for_issue", run.for_issue.as_ref(), ObjectKind::Issue);
    let repo_id = validate::optional_reference(&mut v, "run.repo", run.repo.as_ref(), ObjectKind::Repo);
    let mode = validate::enumeration::<pb::RunMode>(&mut v, "run.mode", run.mode, None);
    let status = match run.status() {
        pb::WorkStatus::Unspecified | pb::WorkStatus::Planned => pb::WorkStatus::Planned,
        pb::WorkStatus::Running => pb::WorkStatus::Running,
        other => {
            v.push("run.status", format!("a new run starts planned or running, got {}", other.to_db()));
            pb::WorkStatus::Planned
        }
    };
    match &run.executor {
        None => v.push("run.executor", "is required"),
        Some(e) => {
            validate::actor(&mut v, "run.executor.actor", e.actor.as_ref());
            v.length("run.executor.runtime", &e.runtime, 1, 64);
        }
    }
    let inputs = run.inputs.clone().unwrap_or_default();
    let packet_ids =
        validate::references(&mut v, "run.inputs.context_packets", &inputs.context_packets, ObjectKind::ContextPacket);
    let doctrine_ids =
        validate::references(&mut v, "run.inputs.doctrine_refs", &inputs.doctrine_refs, ObjectKind::DoctrineRef);
    let snapshot_id = validate::optional_reference(
        &mut v,
        "run.inputs.constraint_snapshot",
        inputs.constraint_snapshot.as_ref(),
        ObjectKind::ConstraintSnapshot,
    );
    validate_mutable(&mut v, run.telemetry.as_ref(), run.cost.as_ref(), run.outputs.as_ref(), run.failure.as_ref());
    v.length("run.artifact_root_uri", &run.artifact_root_uri, 0, 2000);
    v.into_result()?;
    let (Some(issue_id), Some(mode)) = (issue_id, mode) else { return Err(Error::invalid("run", "is invalid")) };

    let issue = super::issues::find(db, &issue_id)
        .await
        .map_err(|_| Error::NotFound(format!("run.for_issue: Issue {issue_id} not found")))?;
    let repo_id = match repo_id {
        None => issue.repo_id.clone(),
        Some(repo_id) if repo_id == issue.repo_id => repo_id,
        Some(repo_id) => {
            return Err(Error::invalid(
                "run.repo",
                format!("must be the issue's repo {} (got {repo_id})", issue.repo_id),
            ));
        }
    };
    for id in &packet_ids {
        super::packets::get(db, id)
            .await
            .map_err(|_| Error::NotFound(format!("run.inputs.context_packets: ContextPacket {id} not found")))?;
    }
    for id in &doctrine_ids {
        super::doctrine::find(db, id)
            .await
            .map_err(|_| Error::NotFound(format!("run.inputs.doctrine_refs: DoctrineRef {id} not found")))?;
    }
    if let Some(id) = &snapshot_id {
        super::snapshots::find(db, id).await.map_err(|_| {
            Error::NotFound(format!("run.inputs.constraint_snapshot: ConstraintSnapshot {id} not found"))
        })?;
    }

    let model = Model {
        id: new_id(),
        issue_id,
        repo_id,
        status: status.to_db().to_owned(),
        mode: mode.to_db().to_owned(),
        executor: to_json(&run.executor),
        inputs: to_json(&inputs),
        plan: to_json(&run.plan),
        telemetry: to_json(&run.telemetry),
        cost: to_json(&run.cost),
        outputs: to_json(&run.outputs.map(|o| pb::RunOutputs { artifacts: vec![], ..o })),
        failure: run.failure.as_ref().map(to_json),
        artifact_root_uri: run.artifact_root_uri,
        task_id: (!run.task_id.is_empty()).then_some(run.task_id),
        task_attempt: (run.task_attempt > 0).then_some(run.task_attempt),
        tags: to_json(&run.tags),
        meta: meta_to_json(run.meta),
        trace_id: Some(change.trace_id.clone()),
        created_at: change.now,
        updated_at: change.now,
    };
    Runs::insert(run::ActiveModel::from(model.clone())).exec_without_returning(db).await?;
    let mut entries = Vec::new();
    for (link, ids, kind) in [
        (Link::RunContextPacket, &packet_ids, super::packets::KIND),
        (Link::RunDoctrineRef, &doctrine_ids, super::doctrine::KIND),
    ] {
        for id in ids {
            links::add(db, link, &model.id, id, change.now).await?;
            entries.push(Entry::link(change.actor.clone(), true, (KIND, &model.id), (kind, id), &change.trace_id));
        }
    }
    let created = to_pb(&model, &[]);
    entries.insert(0, Entry::created(change.actor.clone(), KIND, &model.id, snapshot(&created), &change.trace_id));
    audit::append(db, change.now, entries).await?;
    Ok(created)
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub issue_id: Option<String>,
    pub repo_id: Option<String>,
    pub status: Option<pb::WorkStatus>,
    pub mode: Option<pb::RunMode>,
}

pub async fn list(
    db: &impl ConnectionTrait,
    filter: &RunFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<pb::Run>> {
    let mut query = Runs::find();
    if let Some(id) = &filter.issue_id {
        query = query.filter(Column::IssueId.eq(id.as_str()));
    }
    if let Some(id) = &filter.repo_id {
        query = query.filter(Column::RepoId.eq(id.as_str()));
    }
    if let Some(s) = filter.status {
        query = query.filter(Column::Status.eq(s.to_db()));
    }
    if let Some(m) = filter.mode {
        query = query.filter(Column::Mode.eq(m.to_db()));
    }
    if let Some(after) = after {
        query = query.filter(Column::Id.lt(after));
    }
    let rows = query.order_by_desc(Column::Id).limit(limit).all(db).await?;
    with_artifacts(db, &rows).await
}

/// A change to a run: each present part replaces the stored one.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub status: Option<pb::WorkStatus>,
    pub telemetry: Option<pb::Telemetry>,
    pub cost: Option<pb::Cost>,
    pub outputs: Option<pb::RunOutputs>,
    pub failure: Option<pb::Failure>,
    pub artifact_root_uri: Option<String>,
    pub note: Option<String>,
}

/// Applies an update inside the caller's transaction: a status change (checked against the machine) writes a
/// `status_changed` entry, any other change an `updated` entry with the whole run before and after.
pub async fn apply(db: &impl ConnectionTrait, change: &Change, id: &str, update: RunUpdate) -> Result<pb::Run> {
    let mut v = Violations::default();
    validate_mutable(
        &mut v,
        update.telemetry.as_ref(),
        update.cost.as_ref(),
        update.outputs.as_ref(),
        update.failure.as_ref(),
    );
    v.into_result()?;
    let current = find(db, id).await?;
    let from = pb::WorkStatus::from_db(&current.status).unwrap_or(pb::WorkStatus::Unspecified);
    let mut model = current.clone();
    let mut entries = Vec::new();
    if let Some(to) = update.status.filter(|to| *to != from) {
        status::check(KIND, run_allows, from, to)?;
        model.status = to.to_db().to_owned();
        entries.push(Entry::status_changed(
            change.actor.clone(),
            KIND,
            id,
            (from.to_db(), to.to_db()),
            serde_json::json!({}),
            update.note.as_deref(),
            &change.trace_id,
        ));
    }
    if let Some(t) = &update.telemetry {
        model.telemetry = to_json(t);
    }
    if let Some(c) = &update.cost {
        model.cost = to_json(c);
    }
    if let Some(o) = update.outputs {
        model.outputs = to_json(&pb::RunOutputs { artifacts: vec![], ..o });
    }
    if let Some(f) = &update.failure {
        model.failure = Some(to_json(f));
    }
    if let Some(uri) = update.artifact_root_uri {
        model.artifact_root_uri = uri;
    }
    let mut described = model.clone();
    described.status = current.status.clone();
    if described != current {
        let before = snapshot(&to_pb(&current, &[]));
        let after = snapshot(&to_pb(&model, &[]));
        entries.push(Entry::updated(change.actor.clone(), KIND, id, before, after, &change.trace_id));
    }
    if entries.is_empty() {
        return load(db, id).await;
    }
    model.updated_at = change.now;
    // The status fence: a concurrent status change between our read and this write fails the update.
    let updated = Runs::update_many()
        .set(run::ActiveModel::from(model).reset_all())
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(current.status.as_str()))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(Error::precondition("CONCURRENT_CHANGE", format!("Run {id} changed meanwhile; retry")));
    }
    audit::append(db, change.now, entries).await?;
    load(db, id).await
}

pub async fn update(db: &DatabaseConnection, change: &Change, id: &str, update: RunUpdate) -> Result<pb::Run> {
    let id = parse_id("id", id)?;
    let txn = db.begin().await?;
    let run = apply(&txn, change, &id, update).await?;
    txn.commit().await?;
    Ok(run)
}

/// The run executing a task's attempt, if the task has a work model.
pub async fn for_task(db: &impl ConnectionTrait, task_id: &str, attempt: i32) -> Result<Option<Model>> {
    Ok(Runs::find().filter(Column::TaskId.eq(task_id)).filter(Column::TaskAttempt.eq(attempt)).one(db).await?)
}
