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

mod rfc3339;

use rfc3339::Rfc3339;

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
        pb::Task { spec: Some(task_spec(row)), result: row.result.as_ref().map(json_to_struct), ..task_basic(row) }
    }
}

/// The task as `TASK_VIEW_BASIC` shows it: its identity and state, without `spec` and `result`, whose conversion
/// (JSON into protobuf `Struct`s) is most of the cost of the whole message.
pub fn task_basic(row: &TaskRow) -> pb::Task {
    pb::Task {
        id: row.id.clone(),
        spec: None,
        status: pb::TaskStatus::from(row.status) as i32,
        attempt: row.attempt,
        worker_id: row.worker_id.clone().unwrap_or_default(),
        result: None,
        error: row.error.clone().unwrap_or_default(),
        trace_path: row.trace_path.clone().unwrap_or_default(),
        cwom_issue_id: row.cwom_issue_id.clone().unwrap_or_default(),
        trace_id: row.trace_id.clone(),
        created_at: Some(timestamp(row.created_at)),
        queued_at: Some(timestamp(row.queued_at)),
        started_at: timestamp_opt(row.started_at),
        completed_at: timestamp_opt(row.completed_at),
        lease_expires_at: if row.status == TaskStatus::Running { timestamp_opt(row.lease_expires_at) } else { None },
    }
}

/// The task in `view`; UNSPECIFIED is FULL.
pub fn task_in_view(row: &TaskRow, view: pb::TaskView) -> pb::Task {
    match view {
        pb::TaskView::Basic => task_basic(row),
        pb::TaskView::Unspecified | pb::TaskView::Full => row.into(),
    }
}

fn task_spec(row: &TaskRow) -> pb::TaskSpec {
    pb::TaskSpec {
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

/// `input.json` of a leased attempt, written straight from its row: the bytes of `task_document` of the row's
/// `pb::Task`, pretty-printed, without building the message or a JSON tree on the way (the dispatch path writes one
/// per lease). Field names are in sorted order, as `serde_json` writes a `Value`'s objects.
pub fn input_json(row: &TaskRow) -> serde_json::Result<Vec<u8>> {
    let running = row.status == TaskStatus::Running;
    let document = documents::Input {
        attempt: row.attempt,
        created_at: Rfc3339(row.created_at),
        id: &row.id,
        lease_expires_at: if running { row.lease_expires_at.map(Rfc3339) } else { None },
        queued_at: Rfc3339(row.queued_at),
        spec: documents::Spec {
            acceptance_criteria: documents::Strings(&row.acceptance_criteria),
            concurrency_key: row.concurrency_key.as_deref().unwrap_or_default(),
            constraints: documents::Constraints {
                allow_network: row.allow_network,
                allow_secrets: row.allow_secrets,
                time_budget_seconds: row.time_budget_seconds,
            },
            evidence_requirements: documents::Strings(&row.evidence_requirements),
            idempotency_key: row.idempotency_key.as_deref().unwrap_or_default(),
            inputs: documents::AsStruct(&row.inputs),
            max_attempts: row.max_attempts,
            metadata: documents::AsStruct(&row.metadata),
            objective: &row.objective,
            operation: &row.operation,
            priority: row.priority,
            requested_by: documents::Requester {
                id: &row.requested_by_id,
                kind: &row.requested_by_kind,
                label: row.requested_by_label.as_deref().unwrap_or_default(),
            },
            run_after: Rfc3339(row.run_after),
            target: documents::Target { path: &row.target_path, r#ref: &row.target_ref, repo: &row.target_repo },
            version: &row.version,
        },
        started_at: row.started_at.map(Rfc3339),
        status: pb::TaskStatus::from(row.status).as_str_name(),
        trace_id: &row.trace_id,
        trace_path: row.trace_path.as_deref().unwrap_or_default(),
        worker_id: row.worker_id.as_deref().unwrap_or_default(),
    };
    pretty(&document, INPUT_JSON_BYTES)
}

/// `output.json`: how the task ended, pretty-printed, written straight from the row.
pub fn output_json(row: &TaskRow) -> serde_json::Result<Vec<u8>> {
    let document = documents::Output {
        attempt: row.attempt,
        completed_at: row.completed_at.map(Rfc3339),
        error: row.error.as_deref(),
        result: row.result.as_ref(),
        started_at: row.started_at.map(Rfc3339),
        status: row.status.as_str(),
        task_id: &row.id,
        trace_id: &row.trace_id,
        worker_id: row.worker_id.as_deref(),
    };
    pretty(&document, OUTPUT_JSON_BYTES)
}

/// About the size of a task's `input.json` and `output.json` without large inputs or results: their buffers start
/// that large rather than grow (and copy) step by step from a few bytes.
const INPUT_JSON_BYTES: usize = 2048;
const OUTPUT_JSON_BYTES: usize = 512;

fn pretty(document: &impl serde::Serialize, capacity: usize) -> serde_json::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(capacity);
    serde_json::to_writer_pretty(&mut bytes, document)?;
    Ok(bytes)
}

/// The shapes of `input.json` and `output.json`, borrowing from a task row; fields in sorted order.
mod documents {
    use serde::{Serialize, Serializer, ser::SerializeMap, ser::SerializeSeq};
    use serde_json::Value as Json;

    use super::Rfc3339;

    #[derive(Serialize)]
    pub struct Input<'a> {
        pub attempt: i32,
        pub created_at: Rfc3339,
        pub id: &'a str,
        pub lease_expires_at: Option<Rfc3339>,
        pub queued_at: Rfc3339,
        pub spec: Spec<'a>,
        pub started_at: Option<Rfc3339>,
        pub status: &'a str,
        pub trace_id: &'a str,
        pub trace_path: &'a str,
        pub worker_id: &'a str,
    }

    #[derive(Serialize)]
    pub struct Spec<'a> {
        pub acceptance_criteria: Strings<'a>,
        pub concurrency_key: &'a str,
        pub constraints: Constraints,
        pub evidence_requirements: Strings<'a>,
        pub idempotency_key: &'a str,
        pub inputs: AsStruct<'a>,
        pub max_attempts: i32,
        pub metadata: AsStruct<'a>,
        pub objective: &'a str,
        pub operation: &'a str,
        pub priority: i32,
        pub requested_by: Requester<'a>,
        pub run_after: Rfc3339,
        pub target: Target<'a>,
        pub version: &'a str,
    }

    #[derive(Serialize)]
    pub struct Constraints {
        pub allow_network: bool,
        pub allow_secrets: bool,
        pub time_budget_seconds: i32,
    }

    #[derive(Serialize)]
    pub struct Requester<'a> {
        pub id: &'a str,
        pub kind: &'a str,
        pub label: &'a str,
    }

    #[derive(Serialize)]
    pub struct Target<'a> {
        pub path: &'a str,
        pub r#ref: &'a str,
        pub repo: &'a str,
    }

    #[derive(Serialize)]
    pub struct Output<'a> {
        pub attempt: i32,
        pub completed_at: Option<Rfc3339>,
        pub error: Option<&'a str>,
        pub result: Option<&'a Json>,
        pub started_at: Option<Rfc3339>,
        pub status: &'a str,
        pub task_id: &'a str,
        pub trace_id: &'a str,
        pub worker_id: Option<&'a str>,
    }

    /// The string items of a JSON list, as the row's lists become `repeated string` in a `pb::Task`.
    pub struct Strings<'a>(pub &'a Json);

    impl Serialize for Strings<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let items: Vec<&str> =
                self.0.as_array().map(|items| items.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
            let mut seq = serializer.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(item)?;
            }
            seq.end()
        }
    }

    /// A JSON document as it comes back from a round trip through `google.protobuf.Struct` (see `crate::json`):
    /// a non-object is wrapped under `"value"`, and every number is carried as an f64.
    pub struct AsStruct<'a>(pub &'a Json);

    impl Serialize for AsStruct<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                Json::Object(_) => AsValue(self.0).serialize(serializer),
                other => {
                    let mut map = serializer.serialize_map(Some(1))?;
                    map.serialize_entry("value", &AsValue(other))?;
                    map.end()
                }
            }
        }
    }

    struct AsValue<'a>(&'a Json);

    impl Serialize for AsValue<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                Json::Number(n) => {
                    let n = n.as_f64().unwrap_or_default();
                    if n.fract() == 0.0 && n.abs() <= super::super::json::MAX_EXACT_INT {
                        serializer.serialize_i64(n as i64)
                    } else if n.is_finite() {
                        serializer.serialize_f64(n)
                    } else {
                        serializer.serialize_unit()
                    }
                }
                Json::Array(items) => {
                    let mut seq = serializer.serialize_seq(Some(items.len()))?;
                    for item in items {
                        seq.serialize_element(&AsValue(item))?;
                    }
                    seq.end()
                }
                Json::Object(fields) => {
                    let mut map = serializer.serialize_map(Some(fields.len()))?;
                    for (key, value) in fields {
                        map.serialize_entry(key, &AsValue(value))?;
                    }
                    map.end()
                }
                other => other.serialize(serializer),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn row(status: TaskStatus, inputs: Json, metadata: Json, lists: Json, result: Option<Json>) -> TaskRow {
        let ended = status.is_terminal();
        TaskRow {
            id: "01a23505-1567-7377-8448-6dacde61da7f".into(),
            version: "1.0".into(),
            idempotency_key: ended.then(|| "key-1".into()),
            requested_by_kind: "agent".into(),
            requested_by_id: "agent-7".into(),
            requested_by_label: ended.then(|| "Agent \"seven\"".into()),
            objective: "Fix the build\nand say why ✓".into(),
            operation: "code_change".into(),
            target_repo: "org/repo".into(),
            target_ref: "main".into(),
            target_path: "src/".into(),
            time_budget_seconds: 900,
            allow_network: true,
            allow_secrets: false,
            inputs,
            metadata,
            acceptance_criteria: lists.clone(),
            evidence_requirements: lists,
            priority: -3,
            max_attempts: 5,
            status,
            attempt: 2,
            run_after: 1_796_185_855_335_518,
            lease_id: Some("a".repeat(32)),
            lease_expires_at: Some(1_796_185_885_000_001),
            worker_id: (status != TaskStatus::Queued).then(|| "worker-1".into()),
            result,
            error: ended.then(|| "it broke".into()),
            trace_path: Some("file:///traces/01a23505".into()),
            cwom_issue_id: None,
            trace_id: "trace-1".into(),
            created_at: -1,
            queued_at: 1_796_185_855_335_518,
            started_at: ended.then_some(1_796_185_863_192_596),
            completed_at: ended.then_some(1_796_185_863_203_175),
            concurrency_key: ended.then(|| "k".into()),
        }
    }

    /// `output.json` built as a JSON tree, the shape `output_json` writes.
    fn output_document(row: &TaskRow) -> Json {
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

    fn by_tree(row: &TaskRow) -> (Vec<u8>, Vec<u8>) {
        let input = serde_json::to_vec_pretty(&task_document(&pb::Task::from(row))).unwrap();
        let output = serde_json::to_vec_pretty(&output_document(row)).unwrap();
        (input, output)
    }

    fn assert_same_bytes(row: &TaskRow) {
        let (input, output) = by_tree(row);
        assert_eq!(String::from_utf8(input_json(row).unwrap()).unwrap(), String::from_utf8(input).unwrap());
        assert_eq!(String::from_utf8(output_json(row).unwrap()).unwrap(), String::from_utf8(output).unwrap());
    }

    #[test]
    fn documents_written_from_the_row_match_those_built_from_the_message() {
        let inputs = json!({"n": 1, "x": 1.5, "big": 1e300, "neg": -0.0, "s": "a\u{1}\"", "nil": null,
                            "list": [1, 2.25, {"k": [true]}], "z": {"nested": {"deep": 3}}});
        for status in [TaskStatus::Queued, TaskStatus::Running, TaskStatus::Completed, TaskStatus::Failed] {
            assert_same_bytes(&row(status, inputs.clone(), json!({}), json!(["a", "b"]), Some(json!({"ok": 1}))));
        }
        // Inputs that are not an object are wrapped; list items that are not strings are dropped.
        assert_same_bytes(&row(TaskStatus::Running, json!([1, 2]), json!("m"), json!(["a", 1, null]), None));
        assert_same_bytes(&row(TaskStatus::Running, json!({}), json!({}), json!("not a list"), None));
    }

    fn any_value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            (-(1i64 << 53)..(1i64 << 53)).prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            any::<String>().prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
                prop::collection::vec(("[a-cé\"\\\\]{0,3}", inner), 0..8)
                    .prop_map(|members| Json::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_inputs_and_result_write_the_same_documents(inputs in any_value(), result in any_value()) {
            let row = row(TaskStatus::Completed, inputs.clone(), inputs, json!(["a"]), Some(result));
            let (input, output) = by_tree(&row);
            prop_assert_eq!(input_json(&row).unwrap(), input);
            prop_assert_eq!(output_json(&row).unwrap(), output);
        }
    }
}
