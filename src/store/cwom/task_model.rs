//! The task adapter: builds a task's work model when it is enqueued with `create_cwom`, and moves it along as the
//! task runs: a Run per attempt, the Issue's status, and an Artifact per trace file. Everything here runs inside
//! the transaction of the task change it belongs to.

use serde_json::{Value as Json, json};

use super::{
    Change,
    enums::DbEnum,
    issues,
    links::{self, Link},
    new_id, object_ref, packets, repos,
    runs::{self, RunUpdate},
    snapshots,
};
use crate::{
    convert::timestamp,
    error::Result,
    json::json_to_struct,
    pb::{self, ObjectKind, WorkStatus},
    store::{
        audit::{self, Entry},
        entity::{cwom::issue, task::Model as TaskRow},
    },
};
use sea_orm::{ConnectionTrait, EntityTrait};

/// The objects made for a task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CwomIds {
    pub repo_id: String,
    pub issue_id: String,
    pub context_packet_id: String,
    pub constraint_snapshot_id: String,
}

impl From<CwomIds> for pb::CwomIds {
    fn from(ids: CwomIds) -> Self {
        Self {
            repo_id: ids.repo_id,
            issue_id: ids.issue_id,
            context_packet_id: ids.context_packet_id,
            constraint_snapshot_id: ids.constraint_snapshot_id,
        }
    }
}

fn actor_kind(kind: &str) -> pb::ActorKind {
    match kind {
        "human" => pb::ActorKind::Human,
        "agent" => pb::ActorKind::Agent,
        _ => pb::ActorKind::System,
    }
}

fn issue_type(operation: &str) -> pb::IssueType {
    match operation {
        "code_change" => pb::IssueType::Feature,
        "docs" => pb::IssueType::Doc,
        "analysis" => pb::IssueType::Research,
        _ => pb::IssueType::Ops,
    }
}

fn strings(list: &Json) -> Vec<String> {
    serde_json::from_value(list.clone()).unwrap_or_default()
}

/// A new id for the issue of a task, chosen before the task row is written so that the row can name it.
pub fn new_issue_id() -> String {
    new_id()
}

/// Creates Repo (found or created by the normalised slug), ConstraintSnapshot, Issue (with the given id) and
/// ContextPacket, and links the issue to the snapshot and the packet, as the seed system's mapping describes.
pub async fn build(db: &impl ConnectionTrait, change: &Change, task: &TaskRow, issue_id: &str) -> Result<CwomIds> {
    let slug = task.target_repo.clone();
    let name = slug.rsplit('/').next().unwrap_or(&slug).to_owned();
    let (repo, _) = repos::get_or_create(
        db,
        change,
        pb::Repo {
            name,
            slug: slug.clone(),
            source: Some(pb::Source { system: "jct".into(), external_id: slug, url: String::new() }),
            default_branch: task.target_ref.clone(),
            visibility: pb::Visibility::Private.into(),
            ..Default::default()
        },
    )
    .await?;

    let requester = pb::Actor {
        actor_kind: actor_kind(&task.requested_by_kind).into(),
        actor_id: task.requested_by_id.clone(),
        display: task.requested_by_label.clone().unwrap_or_default(),
    };
    let tolerance = match (task.allow_network, task.allow_secrets) {
        (true, true) => pb::RiskTolerance::High,
        (true, false) | (false, true) => pb::RiskTolerance::Medium,
        (false, false) => pb::RiskTolerance::Low,
    };
    let key = task.idempotency_key.clone();
    let snapshot = snapshots::insert(
        db,
        change,
        pb::ConstraintSnapshot {
            scope: pb::ConstraintScope::Run.into(),
            owner: Some(requester.clone()),
            constraints: Some(pb::ConstraintSet {
                time: Some(pb::TimeConstraints {
                    available_minutes: Some(task.time_budget_seconds / 60),
                    deadline: None,
                }),
                risk: Some(pb::RiskConstraints { tolerance: tolerance.into(), notes: String::new() }),
                ..Default::default()
            }),
            meta: Some(json_to_struct(&json!({
                "source": "jct_task",
                "idempotency_key": key,
                "time_budget_seconds": task.time_budget_seconds,
                "allow_network": task.allow_network,
                "allow_secrets": task.allow_secrets,
            }))),
            ..Default::default()
        },
    )
    .await?;

    let title: String = task.objective.lines().next().unwrap_or_default().chars().take(200).collect();
    let criteria = match strings(&task.acceptance_criteria) {
        criteria if criteria.is_empty() => vec![task.objective.clone()],
        criteria => criteria,
    };
    let issue = issues::insert_with_id(
        db,
        change,
        issue_id,
        pb::Issue {
            repo: Some(object_ref(ObjectKind::Repo, &repo.id)),
            title,
            description: task.objective.clone(),
            r#type: issue_type(&task.operation).into(),
            priority: pb::Priority::P2.into(),
            status: WorkStatus::Planned.into(),
            assignees: vec![requester],
            acceptance: Some(pb::Acceptance { criteria, tests_expected: vec![] }),
            meta: Some(json_to_struct(&json!({
                "source": "jct_task",
                "idempotency_key": key,
                "task_metadata": task.metadata,
                "evidence_requirements": task.evidence_requirements,
            }))),
            ..Default::default()
        },
    )
    .await?;
    links::add(db, Link::IssueConstraintSnapshot, &issue.id, &snapshot.id, change.now).await?;
    let linked = Entry::link(
        change.actor.clone(),
        true,
        (issues::KIND, &issue.id),
        (snapshots::KIND, &snapshot.id),
        &change.trace_id,
    );
    audit::append(db, change.now, vec![linked]).await?;

    let path = if task.target_path.is_empty() { "(root)" } else { task.target_path.as_str() };
    let packet = packets::insert(
        db,
        change,
        pb::ContextPacket {
            for_issue: Some(object_ref(ObjectKind::Issue, &issue.id)),
            version: "1.0".into(),
            summary: "Initial context from JCT task".into(),
            assumptions: vec![format!("Target branch: {}", task.target_ref), format!("Working path: {path}")],
            instructions: task.objective.clone(),
            constraint_snapshot: Some(object_ref(ObjectKind::ConstraintSnapshot, &snapshot.id)),
            meta: Some(json_to_struct(&json!({
                "source": "jct_task",
                "idempotency_key": key,
                "acceptance_criteria": task.acceptance_criteria,
                "evidence_requirements": task.evidence_requirements,
                "task_ref": task.target_ref,
                "task_path": task.target_path,
                "task_inputs": task.inputs,
            }))),
            ..Default::default()
        },
    )
    .await?;
    Ok(CwomIds {
        repo_id: repo.id,
        issue_id: issue.id,
        context_packet_id: packet.id,
        constraint_snapshot_id: snapshot.id,
    })
}

/// The ids of a task's work model, read back (for a repeated enqueue).
pub async fn ids_for(db: &impl ConnectionTrait, issue_id: &str) -> Result<CwomIds> {
    let issue = issue::Entity::find_by_id(issue_id.to_owned()).one(db).await?;
    let first_packet = packets::first(db, issue_id).await?;
    let snapshot = links::linked(db, Link::IssueConstraintSnapshot, &[issue_id.to_owned()])
        .await?
        .remove(issue_id)
        .and_then(|ids| ids.into_iter().next());
    Ok(CwomIds {
        repo_id: issue.map(|i| i.repo_id).unwrap_or_default(),
        issue_id: issue_id.to_owned(),
        context_packet_id: first_packet.map(|p| p.id).unwrap_or_default(),
        constraint_snapshot_id: snapshot.unwrap_or_default(),
    })
}

/// Moves the issue if its status machine allows it; a task's progress never fails because someone moved its issue
/// elsewhere by hand.
async fn advance_issue(
    db: &impl ConnectionTrait,
    change: &Change,
    issue_id: &str,
    to: WorkStatus,
    why: &str,
) -> Result<()> {
    let current = issues::find(db, issue_id).await?;
    let from = WorkStatus::from_db(&current.status).unwrap_or(WorkStatus::Unspecified);
    if from == to || !super::status::issue_allows(from, to) {
        if from != to {
            tracing::info!(issue_id, from = from.to_db(), to = to.to_db(), "issue left as it is");
        }
        return Ok(());
    }
    issues::set_status(db, change, issue_id, to, Some(why)).await?;
    Ok(())
}

/// A task was leased: its attempt gets a Run (running, mode system, executed by the worker) and its issue runs.
pub async fn on_leased(db: &impl ConnectionTrait, change: &Change, task: &TaskRow) -> Result<()> {
    let Some(issue_id) = &task.cwom_issue_id else { return Ok(()) };
    let worker = task.worker_id.clone().unwrap_or_default();
    let packet = packets::latest(db, issue_id).await?;
    let inputs = pb::RunInputs {
        context_packets: packet.iter().map(|p| object_ref(ObjectKind::ContextPacket, &p.id)).collect(),
        doctrine_refs: vec![],
        constraint_snapshot: packet
            .as_ref()
            .and_then(|p| p.constraint_snapshot_id.as_deref())
            .map(|id| object_ref(ObjectKind::ConstraintSnapshot, id)),
    };
    runs::insert(
        db,
        change,
        pb::Run {
            for_issue: Some(object_ref(ObjectKind::Issue, issue_id)),
            status: WorkStatus::Running.into(),
            mode: pb::RunMode::System.into(),
            executor: Some(pb::Executor {
                actor: Some(pb::Actor {
                    actor_kind: pb::ActorKind::System.into(),
                    actor_id: worker.clone(),
                    display: String::new(),
                }),
                runtime: "control-tower-worker".into(),
                toolchain: vec![],
            }),
            inputs: Some(inputs),
            telemetry: Some(pb::Telemetry { started_at: task.started_at.map(timestamp), ..Default::default() }),
            artifact_root_uri: task.trace_path.clone().unwrap_or_default(),
            task_id: task.id.clone(),
            task_attempt: task.attempt,
            ..Default::default()
        },
    )
    .await?;
    advance_issue(db, change, issue_id, WorkStatus::Running, &format!("task {} leased to {worker}", task.id)).await
}

/// How a task attempt ended, for its run and issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    Completed,
    /// The task failed for good.
    Failed,
    /// The attempt failed or lost its lease and the task goes back to the queue.
    Requeued,
    Cancelled,
}

/// A task attempt ended: its run ends (with telemetry, a result summary or the failure) and the issue follows the
/// task when the task itself has ended.
pub async fn on_attempt_end(db: &impl ConnectionTrait, change: &Change, task: &TaskRow, end: AttemptEnd) -> Result<()> {
    let Some(issue_id) = &task.cwom_issue_id else { return Ok(()) };
    if let Some(run) = runs::for_task(db, &task.id, task.attempt).await? {
        let started = task.started_at.unwrap_or(change.now);
        let telemetry = pb::Telemetry {
            started_at: Some(timestamp(started)),
            ended_at: Some(timestamp(change.now)),
            duration_s: Some((change.now - started).max(0) as f64 / 1e6),
        };
        let error = task.error.clone().unwrap_or_default();
        let failure = || {
            Some(pb::Failure {
                category: pb::FailureCategory::Runtime.into(),
                message: if error.is_empty() {
                    "the attempt failed".into()
                } else {
                    error.chars().take(4000).collect()
                },
            })
        };
        let mut update = RunUpdate { telemetry: Some(telemetry), ..Default::default() };
        match end {
            AttemptEnd::Completed => {
                update.status = Some(WorkStatus::Done);
                let summary = task.result.as_ref().map(|r| r.to_string()).unwrap_or_default();
                update.outputs =
                    Some(pb::RunOutputs { result_summary: summary.chars().take(4000).collect(), ..Default::default() });
            }
            AttemptEnd::Failed => {
                update.status = Some(WorkStatus::Failed);
                update.failure = failure();
            }
            AttemptEnd::Requeued => {
                update.status = Some(WorkStatus::Failed);
                update.failure = failure();
                // The attempt's files move there when the task is leased again.
                let root = task.trace_path.clone().unwrap_or_default();
                update.artifact_root_uri = Some(format!("{root}/attempts/{}", task.attempt));
            }
            AttemptEnd::Cancelled => update.status = Some(WorkStatus::Canceled),
        }
        let current = WorkStatus::from_db(&run.status).unwrap_or(WorkStatus::Unspecified);
        if update.status.is_some_and(|to| !super::status::run_allows(current, to)) {
            update.status = None;
        }
        runs::apply(db, change, &run.id, update).await?;
    }
    let (to, why) = match end {
        AttemptEnd::Completed => (WorkStatus::Done, "task completed"),
        AttemptEnd::Failed => (WorkStatus::Failed, "task failed"),
        AttemptEnd::Cancelled => (WorkStatus::Canceled, "task cancelled"),
        AttemptEnd::Requeued => return Ok(()),
    };
    advance_issue(db, change, issue_id, to, why).await
}

/// One trace file of a finished task, to become an Artifact.
#[derive(Debug, Clone)]
pub struct TraceFile {
    pub name: String,
    pub uri: String,
    pub sha256: String,
    pub size: u64,
}

fn artifact_type(name: &str) -> pb::ArtifactType {
    match name {
        "log.txt" => pb::ArtifactType::Log,
        "input.json" | "output.json" => pb::ArtifactType::Trace,
        n if n.ends_with(".log") || n.ends_with(".txt") => pb::ArtifactType::Log,
        _ => pb::ArtifactType::Report,
    }
}

fn media_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("json") => "application/json",
        Some("txt" | "log") => "text/plain",
        Some("md") => "text/markdown",
        Some("html") => "text/html",
        _ => "application/octet-stream",
    }
}

/// Records each trace file of the task's last attempt as an Artifact of its run.
pub async fn record_trace_files(
    db: &impl ConnectionTrait,
    change: &Change,
    task: &TaskRow,
    files: &[TraceFile],
) -> Result<usize> {
    if task.cwom_issue_id.is_none() {
        return Ok(0);
    }
    let Some(run) = runs::for_task(db, &task.id, task.attempt).await? else { return Ok(0) };
    for file in files {
        super::artifacts::insert(
            db,
            change,
            pb::Artifact {
                produced_by: Some(object_ref(ObjectKind::Run, &run.id)),
                for_issue: Some(object_ref(ObjectKind::Issue, &run.issue_id)),
                r#type: artifact_type(&file.name).into(),
                title: file.name.clone(),
                uri: file.uri.clone(),
                digest: format!("sha256:{}", file.sha256),
                media_type: media_type(&file.name).into(),
                size_bytes: Some(file.size as i64),
                ..Default::default()
            },
        )
        .await?;
    }
    Ok(files.len())
}
