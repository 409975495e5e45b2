//! What the fuzz targets assert about validated specs and the policy gate, shared by `task_spec` and `policy_gate`.
//!
//! The checks restate the documented TaskSpec V1 limits (proto/controltower/v1/tasks.proto) independently of the
//! validation code, so that a rule that drifts from its documentation fails here.

use control_tower::{
    convert::timestamp,
    error::Error,
    json::json_to_struct,
    pb,
    spec::{self, MAX_ATTEMPTS_RANGE, MAX_JSON_DEPTH, NewTask, OPERATIONS, PRIORITY_RANGE, Policy, REQUESTER_KINDS},
};
use serde_json::Value as Json;

/// Characters, as the limits count them.
fn chars(s: &str) -> usize {
    s.chars().count()
}

fn assert_chars(field: &str, value: &str, range: std::ops::RangeInclusive<usize>) {
    assert!(range.contains(&chars(value)), "{field}: {} characters, outside {range:?}: {value:?}", chars(value));
}

/// PostgreSQL stores neither U+0000 in text columns nor `\u0000` in jsonb.
fn assert_storable(field: &str, value: &str) {
    assert!(!value.contains('\0'), "{field} holds U+0000, which PostgreSQL cannot store: {value:?}");
}

fn assert_storable_json(field: &str, value: &Json) {
    match value {
        Json::String(s) => assert_storable(field, s),
        Json::Array(items) => items.iter().for_each(|v| assert_storable_json(field, v)),
        Json::Object(map) => map.iter().for_each(|(k, v)| {
            assert_storable(field, k);
            assert_storable_json(field, v);
        }),
        Json::Null | Json::Bool(_) | Json::Number(_) => {}
    }
}

/// Every promise `spec::validate` makes about a task it accepts.
pub fn assert_valid(task: &NewTask) {
    assert_eq!(task.version, spec::SPEC_VERSION);
    if let Some(key) = &task.idempotency_key {
        assert_chars("idempotency_key", key, 1..=256);
    }
    assert!(REQUESTER_KINDS.contains(&task.requested_by_kind.as_str()), "{:?}", task.requested_by_kind);
    assert_chars("requested_by.id", &task.requested_by_id, 1..=128);
    if let Some(label) = &task.requested_by_label {
        assert_chars("requested_by.label", label, 1..=256);
    }
    assert_eq!(task.objective, task.objective.trim(), "the objective is stored trimmed");
    assert_chars("objective", &task.objective, 5..=4000);
    assert!(!task.operation.is_empty());
    // The stored repo is what ListTasks filters compare with after normalising them, so it must be a fixed point.
    assert_eq!(spec::normalise_repo(&task.target_repo), task.target_repo, "the stored repo is normalised");
    assert_chars("target.repo", &task.target_repo, 1..=256);
    assert_chars("target.ref", &task.target_ref, 1..=256);
    assert_chars("target.path", &task.target_path, 0..=512);
    assert!(PRIORITY_RANGE.contains(&task.priority), "priority {}", task.priority);
    if let Some(n) = task.max_attempts {
        assert!(MAX_ATTEMPTS_RANGE.contains(&n), "max_attempts {n}");
    }
    if let Some(at) = task.run_after {
        // 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999Z
        assert!((-62_135_596_800_000_000..=253_402_300_799_999_999).contains(&at), "run_after {at}");
    }
    if let Some(key) = &task.concurrency_key {
        assert_chars("concurrency_key", key, 1..=128);
        assert!(key.chars().all(|c| c.is_ascii_graphic()), "concurrency_key {key:?}");
    }
    assert!(task.inputs.is_object() && task.metadata.is_object());
    // Deeper documents would be stored but fail to decode in the responses that carry them.
    assert!(spec::json_depth(&task.inputs) <= MAX_JSON_DEPTH && spec::json_depth(&task.metadata) <= MAX_JSON_DEPTH);

    for (field, value) in [
        ("idempotency_key", task.idempotency_key.as_deref().unwrap_or_default()),
        ("requested_by.id", &task.requested_by_id),
        ("requested_by.label", task.requested_by_label.as_deref().unwrap_or_default()),
        ("objective", &task.objective),
        ("operation", &task.operation),
        ("target.repo", &task.target_repo),
        ("target.ref", &task.target_ref),
        ("target.path", &task.target_path),
    ] {
        assert_storable(field, value);
    }
    for item in task.acceptance_criteria.iter().chain(&task.evidence_requirements) {
        assert_storable("acceptance_criteria / evidence_requirements", item);
    }
    assert_storable_json("inputs", &task.inputs);
    assert_storable_json("metadata", &task.metadata);
}

/// The spec as the server returns it for a stored task (defaults filled in, aliases resolved).
pub fn stored_spec(task: &NewTask) -> pb::TaskSpec {
    pb::TaskSpec {
        version: task.version.clone(),
        idempotency_key: task.idempotency_key.clone().unwrap_or_default(),
        requested_by: Some(pb::Requester {
            kind: task.requested_by_kind.clone(),
            id: task.requested_by_id.clone(),
            label: task.requested_by_label.clone().unwrap_or_default(),
        }),
        objective: task.objective.clone(),
        operation: task.operation.clone(),
        target: Some(pb::Target {
            repo: task.target_repo.clone(),
            r#ref: task.target_ref.clone(),
            path: task.target_path.clone(),
            ..Default::default()
        }),
        constraints: Some(pb::Constraints {
            time_budget_seconds: Some(task.time_budget_seconds),
            allow_network: task.allow_network,
            allow_secrets: task.allow_secrets,
        }),
        inputs: Some(json_to_struct(&task.inputs)),
        metadata: Some(json_to_struct(&task.metadata)),
        acceptance_criteria: task.acceptance_criteria.clone(),
        evidence_requirements: task.evidence_requirements.clone(),
        priority: task.priority,
        run_after: task.run_after.map(timestamp),
        max_attempts: task.max_attempts.unwrap_or_default(),
        concurrency_key: task.concurrency_key.clone().unwrap_or_default(),
        ..Default::default()
    }
}

/// Validation is idempotent: a stored spec sent again validates to the same task.
pub fn assert_revalidates(task: &NewTask) {
    match spec::validate(Some(stored_spec(task))) {
        Ok(again) => assert_eq!(&again, task, "revalidating the stored spec changes it"),
        Err(err) => panic!("the stored spec of a valid task is refused: {err}"),
    }
}

/// A validation refusal names at least one field, each with a rule.
pub fn assert_names_fields(err: &Error) {
    let Error::InvalidArgument(violations) = err else { panic!("validation returned {err:?}") };
    assert!(!violations.is_empty());
    for v in violations {
        assert!(!v.field.is_empty() && !v.description.is_empty(), "{v:?}");
    }
}

/// The policy code the gate must return for a valid task, computed from its documented rules in their order.
pub fn expected_policy_code(policy: &Policy, task: &NewTask) -> Option<&'static str> {
    if !OPERATIONS.contains(&task.operation.as_str()) {
        Some("INVALID_OPERATION")
    } else if !policy.allowed_repo_prefixes().iter().any(|p| task.target_repo.starts_with(p.as_str())) {
        Some("REPO_NOT_ALLOWED")
    } else if task.time_budget_seconds < 30 {
        Some("TIME_BUDGET_TOO_LOW")
    } else if task.time_budget_seconds > 86_400 {
        Some("TIME_BUDGET_TOO_HIGH")
    } else if task.allow_network {
        Some("NETWORK_ACCESS_DENIED")
    } else if task.allow_secrets {
        Some("SECRETS_ACCESS_DENIED")
    } else {
        None
    }
}

/// Runs the gate and checks its answer against the rules.
pub fn assert_gate(policy: &Policy, task: &NewTask) {
    let expected = expected_policy_code(policy, task);
    match (policy.check(task), expected) {
        (Ok(()), None) => {}
        (Err(Error::Policy { code, message }), Some(want)) => {
            assert_eq!(code, want, "{message}");
            assert!(!message.is_empty());
        }
        (got, want) => panic!("policy gate returned {got:?}, the rules say {want:?} for {task:?}"),
    }
}
