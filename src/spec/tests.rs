use super::*;
use crate::pb::{Constraints, Requester, Target, TaskSpec};

fn minimal() -> TaskSpec {
    TaskSpec {
        requested_by: Some(Requester { kind: "agent".into(), id: "a-1".into(), label: String::new() }),
        objective: "  Write the docs  ".into(),
        operation: "docs".into(),
        target: Some(Target { repo: "  Acme/Widgets.git ".into(), ..Default::default() }),
        ..Default::default()
    }
}

#[test]
fn fills_defaults_and_normalises() {
    let task = validate(Some(minimal())).unwrap();
    assert_eq!(task.version, "1.0");
    assert_eq!(task.objective, "Write the docs");
    assert_eq!(task.target_repo, "acme/widgets");
    assert_eq!(task.target_ref, "main");
    assert_eq!(task.target_path, "");
    assert_eq!(task.time_budget_seconds, 900);
    assert_eq!(task.inputs, serde_json::json!({}));
    assert_eq!(task.max_attempts, None);
}

#[test]
#[allow(deprecated)]
fn legacy_aliases_apply_only_when_the_canonical_field_is_absent() {
    let mut spec = minimal();
    spec.operation.clear();
    spec.r#type = "analysis".into();
    spec.target = Some(Target { repository: "acme/legacy".into(), ..Default::default() });
    spec.payload = Some(crate::json::json_to_struct(&serde_json::json!({"from": "payload"})));
    let task = validate(Some(spec.clone())).unwrap();
    assert_eq!((task.operation.as_str(), task.target_repo.as_str()), ("analysis", "acme/legacy"));
    assert_eq!(task.inputs, serde_json::json!({"from": "payload"}));

    spec.operation = "docs".into();
    spec.target =
        Some(Target { repo: "acme/canonical".into(), repository: "acme/legacy".into(), ..Default::default() });
    spec.inputs = Some(crate::json::json_to_struct(&serde_json::json!({"from": "inputs"})));
    let task = validate(Some(spec)).unwrap();
    assert_eq!((task.operation.as_str(), task.target_repo.as_str()), ("docs", "acme/canonical"));
    assert_eq!(task.inputs, serde_json::json!({"from": "inputs"}));
}

#[test]
fn reports_every_violation_at_once() {
    let spec = TaskSpec { objective: "ab".into(), ..Default::default() };
    let Err(Error::InvalidArgument(violations)) = validate(Some(spec)) else { panic!("expected violations") };
    let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["requested_by.kind", "requested_by.id", "objective", "operation", "target.repo"]);
}

#[test]
fn policy_rules_apply_in_order() {
    let policy = Policy::from_comma_separated(" Acme/ , ,other/");
    assert_eq!(policy.allowed_repo_prefixes(), ["acme/", "other/"]);
    let mut task = validate(Some(minimal())).unwrap();
    assert!(policy.check(&task).is_ok());
    task.allow_secrets = true;
    task.allow_network = true;
    let err = policy.check(&task).unwrap_err();
    assert_eq!(err.reason(), Some("NETWORK_ACCESS_DENIED"));
    task.time_budget_seconds = 10;
    assert_eq!(policy.check(&task).unwrap_err().reason(), Some("TIME_BUDGET_TOO_LOW"));
}

#[test]
fn unset_prefixes_deny_everything_and_say_what_to_set() {
    let task = validate(Some(TaskSpec {
        constraints: Some(Constraints { time_budget_seconds: Some(60), ..Default::default() }),
        ..minimal()
    }))
    .unwrap();
    let err = Policy::default().check(&task).unwrap_err();
    assert_eq!(err.reason(), Some("REPO_NOT_ALLOWED"));
    assert!(err.to_string().contains("JCT_ALLOWED_REPO_PREFIXES"), "{err}");
}
