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

fn violated_fields(spec: TaskSpec) -> Vec<String> {
    match validate(Some(spec)) {
        Err(Error::InvalidArgument(violations)) => violations.into_iter().map(|v| v.field).collect(),
        other => panic!("expected violations, got {other:?}"),
    }
}

/// Found by the task_spec fuzz target: PostgreSQL refused these at insert time, so the request failed as INTERNAL
/// (and took a whole EnqueueTasks batch with it) while SQLite stored them.
#[test]
fn nul_characters_are_refused_in_every_stored_string() {
    fn nul(s: &str) -> String {
        format!("{s}\0{s}")
    }
    let with_json =
        |key: &str, value: &str| Some(crate::json::json_to_struct(&serde_json::json!({ key: { "list": [value] } })));
    type Mutation = fn(&mut TaskSpec);
    let cases: [(&str, Mutation); 11] = [
        ("idempotency_key", |s| s.idempotency_key = nul("key")),
        ("requested_by.id", |s| s.requested_by.as_mut().unwrap().id = nul("a")),
        ("requested_by.label", |s| s.requested_by.as_mut().unwrap().label = nul("Al")),
        ("objective", |s| s.objective = nul("Write the docs")),
        ("operation", |s| s.operation = nul("docs")),
        ("target.repo", |s| s.target.as_mut().unwrap().repo = nul("acme/w")),
        ("target.ref", |s| s.target.as_mut().unwrap().r#ref = nul("main")),
        ("target.path", |s| s.target.as_mut().unwrap().path = nul("src")),
        ("acceptance_criteria", |s| s.acceptance_criteria = vec!["fine".into(), nul("ok")]),
        ("evidence_requirements", |s| s.evidence_requirements = vec![nul("log")]),
        ("concurrency_key", |s| s.concurrency_key = nul("ck")),
    ];
    for (field, mutate) in cases {
        let mut spec = minimal();
        mutate(&mut spec);
        assert!(violated_fields(spec).contains(&field.to_owned()), "{field}");
    }
    let spec = TaskSpec { inputs: with_json("k", "a\0b"), metadata: with_json("k\0", "v"), ..minimal() };
    assert_eq!(violated_fields(spec), ["inputs", "metadata"]);
    #[allow(deprecated)]
    let legacy = TaskSpec { payload: with_json("k", "\0"), ..minimal() };
    assert_eq!(violated_fields(legacy), ["payload"]);
    // Other control characters are stored as they are.
    let controls = TaskSpec { objective: "Tab\tbell\u{7}escape\u{1b}".into(), ..minimal() };
    assert!(validate(Some(controls)).is_ok());
}

/// Lower-casing can lengthen a repo: 131 characters as sent became 257 stored, past what the column holds, and
/// PostgreSQL refused the insert as INTERNAL.
#[test]
fn the_repo_limit_applies_to_the_stored_form() {
    let repo = |name: String| TaskSpec { target: Some(Target { repo: name, ..Default::default() }), ..minimal() };
    let fits = format!("acme/{}", "İ".repeat(125));
    assert_eq!(validate(Some(repo(fits))).unwrap().target_repo.chars().count(), 255);
    let grows = format!("acme/{}", "İ".repeat(126));
    assert_eq!(grows.chars().count(), 131);
    assert_eq!(violated_fields(repo(grows)), ["target.repo"]);
}

/// Found by the task_spec fuzz target: "x.git.git" was stored as "x.git", which a ListTasks filter normalised to
/// "x" and so never matched.
#[test]
fn normalising_a_stored_repo_changes_nothing() {
    for (sent, stored) in [
        ("  Acme/Widgets.git ", "acme/widgets"),
        ("acme/widgets.git.git", "acme/widgets"),
        ("acme/widgets .git", "acme/widgets"),
        ("ACME/WIDGETS.GIT", "acme/widgets"),
        ("acme/.github", "acme/.github"),
        (" .git ", ""),
    ] {
        assert_eq!(normalise_repo(sent), stored, "{sent:?}");
        assert_eq!(normalise_repo(stored), stored, "{stored:?}");
    }
}

#[test]
fn inputs_and_metadata_nest_at_most_twenty_levels() {
    let nested = |depth: usize| {
        let json = (1..depth).fold(serde_json::json!([]), |inner, _| serde_json::json!({ "k": inner }));
        assert_eq!(json_depth(&json), depth);
        Some(crate::json::json_to_struct(&json))
    };
    let spec = TaskSpec { inputs: nested(MAX_JSON_DEPTH), metadata: nested(MAX_JSON_DEPTH), ..minimal() };
    assert!(validate(Some(spec)).is_ok());
    let spec = TaskSpec { inputs: nested(MAX_JSON_DEPTH + 1), metadata: nested(MAX_JSON_DEPTH + 1), ..minimal() };
    assert_eq!(violated_fields(spec), ["inputs", "metadata"]);
}
