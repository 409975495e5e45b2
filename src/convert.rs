//! Conversions between stored rows and protobuf messages, and the JSON document of a task that workers and trace
//! folders see (`input.json`, the stdin of `--exec` commands).

use pbjson_types::Timestamp;
use serde_json::{Value as Json, json};

use crate::{
    clock::Micros,
    json::{json_to_struct, struct_to_json},
    pb,
    store::entity::task::{Model as TaskRow, TaskStatus},
};

pub fn timestamp(micros: Micros) -> Timestamp {
    Timestamp { seconds: micros.div_euclid(1_000_000), nanos: (micros.rem_euclid(1_000_000) * 1000) as i32 }
}

pub fn timestamp_opt(micros: Option<Micros>) -> Option<Timestamp> {
    micros.map(timestamp)
}

impl From<TaskStatus> for pb::TaskStatus {
    fn from(status: TaskStatus) -> Self {
        match status {
            TaskStatus::Queued => Self::Queued,
            TaskStatus::Running => Self::Running,
            TaskStatus::Completed => Self::Completed,
            TaskStatus::Failed => Self::Failed,
            TaskStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// The stored status for a protobuf one; `None` for UNSPECIFIED.
pub fn status_from_pb(status: pb::TaskStatus) -> Option<TaskStatus> {
    match status {
        pb::TaskStatus::Unspecified => None,
        pb::TaskStatus::Queued => Some(TaskStatus::Queued),
        pb::TaskStatus::Running => Some(TaskStatus::Running),
        pb::TaskStatus::Completed => Some(TaskStatus::Completed),
        pb::TaskStatus::Failed => Some(TaskStatus::Failed),
        pb::TaskStatus::Cancelled => Some(TaskStatus::Cancelled),
    }
}

fn strings(list: &Json) -> Vec<String> {
    list.as_array()
        .map(|items| items.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

impl From<&TaskRow> for pb::Task {
    fn from(row: &TaskRow) -> Self {
        let spec = pb::TaskSpec {
            version: row.version.clone(),
            idempotency_key: row.idempotency_key.clone().unwrap_or_default(),
            requested_by: Some(pb::Requester {
                kind: row.requested_by_kind.clone(),
                id: row.requested_by_id.clone(),
                label: row.requested_by_label.clone().unwrap_or_default(),
            }),
            objective: row.objective.clone(),
            operation: row.operation.clone(),
            target: Some(pb::Target {
                repo: row.target_repo.clone(),
                r#ref: row.target_ref.clone(),
                path: row.target_path.clone(),
                ..Default::default()
            }),
            constraints: Some(pb::Constraints {
                time_budget_seconds: Some(row.time_budget_seconds),
                allow_network: row.allow_network,
                allow_secrets: row.allow_secrets,
            }),
            inputs: Some(json_to_struct(&row.inputs)),
            acceptance_criteria: strings(&row.acceptance_criteria),
            evidence_requirements: strings(&row.evidence_requirements),
            metadata: Some(json_to_struct(&row.metadata)),
            priority: row.priority,
            run_after: Some(timestamp(row.run_after)),
            max_attempts: row.max_attempts,
            concurrency_key: row.concurrency_key.clone().unwrap_or_default(),
            ..Default::default()
        };
        pb::Task {
            id: row.id.clone(),
            spec: Some(spec),
            status: pb::TaskStatus::from(row.status) as i32,
            attempt: row.attempt,
            worker_id: row.worker_id.clone().unwrap_or_default(),
            result: row.result.as_ref().map(json_to_struct),
            error: row.error.clone().unwrap_or_default(),
            trace_path: row.trace_path.clone().unwrap_or_default(),
            cwom_issue_id: row.cwom_issue_id.clone().unwrap_or_default(),
            trace_id: row.trace_id.clone(),
            created_at: Some(timestamp(row.created_at)),
            queued_at: Some(timestamp(row.queued_at)),
            started_at: timestamp_opt(row.started_at),
            completed_at: timestamp_opt(row.completed_at),
            lease_expires_at: if row.status == TaskStatus::Running {
                timestamp_opt(row.lease_expires_at)
            } else {
                None
            },
        }
    }
}

impl From<TaskRow> for pb::Task {
    fn from(row: TaskRow) -> Self {
        Self::from(&row)
    }
}

fn time_json(ts: &Option<Timestamp>) -> Json {
    ts.as_ref().and_then(|t| serde_json::to_value(t).ok()).unwrap_or(Json::Null)
}

fn struct_json(s: &Option<pbjson_types::Struct>) -> Json {
    s.clone().map_or_else(|| json!({}), struct_to_json)
}

/// The task as a plain JSON document with snake_case fields and RFC 3339 times.
pub fn task_document(task: &pb::Task) -> Json {
    let spec = task.spec.clone().unwrap_or_default();
    let requested_by = spec.requested_by.unwrap_or_default();
    let target = spec.target.unwrap_or_default();
    let constraints = spec.constraints.unwrap_or_default();
    json!({
        "id": task.id,
        "trace_id": task.trace_id,
        "status": task.status().as_str_name(),
        "attempt": task.attempt,
        "worker_id": task.worker_id,
        "spec": {
            "version": spec.version,
            "idempotency_key": spec.idempotency_key,
            "requested_by": { "kind": requested_by.kind, "id": requested_by.id, "label": requested_by.label },
            "objective": spec.objective,
            "operation": spec.operation,
            "target": { "repo": target.repo, "ref": target.r#ref, "path": target.path },
            "constraints": {
                "time_budget_seconds": constraints.time_budget_seconds,
                "allow_network": constraints.allow_network,
                "allow_secrets": constraints.allow_secrets,
            },
            "inputs": struct_json(&spec.inputs),
            "acceptance_criteria": spec.acceptance_criteria,
            "evidence_requirements": spec.evidence_requirements,
            "metadata": struct_json(&spec.metadata),
            "priority": spec.priority,
            "max_attempts": spec.max_attempts,
            "concurrency_key": spec.concurrency_key,
            "run_after": time_json(&spec.run_after),
        },
        "created_at": time_json(&task.created_at),
        "queued_at": time_json(&task.queued_at),
        "started_at": time_json(&task.started_at),
        "lease_expires_at": time_json(&task.lease_expires_at),
        "trace_path": task.trace_path,
    })
}

/// `output.json`: how the task ended.
pub fn output_document(row: &TaskRow) -> Json {
    json!({
        "task_id": row.id,
        "trace_id": row.trace_id,
        "status": row.status.as_str(),
        "attempt": row.attempt,
        "worker_id": row.worker_id,
        "result": row.result,
        "error": row.error,
        "started_at": time_json(&timestamp_opt(row.started_at)),
        "completed_at": time_json(&timestamp_opt(row.completed_at)),
    })
}
