//! Random well-formed and hostile TaskSpecs against a real server, alone (EnqueueTask) and in batches
//! (EnqueueTasks). Every spec starts valid (unicode, control characters, long strings, big and nested inputs) and
//! gets a few flaws, each of which names the field it breaks or the policy code it trips. The server must answer
//! everything, refuse only with INVALID_ARGUMENT naming exactly the broken fields (or the first failing policy
//! rule), and write a task and its one `created` audit entry for each accepted spec and nothing for a refused one.
//!
//! Two fixed cases go with it: what the transport refuses before any handler runs (oversized, undecodably deep
//! messages), and inputs at the deepest nesting allowed, which every response carrying them must still decode.

mod common;

use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicU64, Ordering},
};

use common::*;
use control_tower::{
    pb,
    spec::{MAX_JSON_DEPTH, normalise_repo},
};
use pbjson_types::Timestamp;
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::{Map, Value as Json};
use tonic::Code;
use tonic_types::StatusExt;

const CASES: u32 = 96;

/// Any character PostgreSQL can store, control characters and astral planes included.
fn storable_char() -> impl Strategy<Value = char> {
    any::<char>().prop_filter("NUL", |c| *c != '\0')
}

fn text(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(storable_char(), len).prop_map(String::from_iter)
}

fn non_space() -> impl Strategy<Value = char> {
    storable_char().prop_filter("whitespace", |c| !c.is_whitespace())
}

/// 5-4000 characters once trimmed, surrounded by whitespace that trimming removes.
fn objective() -> impl Strategy<Value = String> {
    let core = prop_oneof![4 => 3..=59usize, 1 => 3990..=3998usize];
    (non_space(), core.prop_flat_map(|n| text(n..=n)), non_space(), "[ \t\n]{0,3}", "[ \t\n]{0,3}")
        .prop_map(|(first, middle, last, before, after)| format!("{before}{first}{middle}{last}{after}"))
}

/// Free-form JSON as clients send it: unicode keys, odd numbers (NaN and infinities become null), nesting.
fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| Json::from(n as f64)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
        text(0..=40).prop_map(Json::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::btree_map(text(0..=12), inner, 0..6).prop_map(|m| Json::Object(Map::from_iter(m))),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Json> {
    prop_oneof![
        4 => prop::collection::btree_map(text(0..=12), json(), 0..8).prop_map(|m| Json::Object(Map::from_iter(m))),
        // Deep rather than wide, up to the limit.
        1 => (1..=MAX_JSON_DEPTH, text(0..=8)).prop_map(|(depth, key)| nested(depth, &key)),
    ]
}

/// Objects `depth` levels deep, each holding the next under `key`.
fn nested(depth: usize, key: &str) -> Json {
    (0..depth).fold(Json::from(depth), |inner, _| Json::Object(Map::from_iter([(key.to_owned(), inner)])))
}

/// A valid spec for the `acme/` namespace the test server allows, in one of its many accepted spellings.
fn valid_spec() -> impl Strategy<Value = pb::TaskSpec> {
    let requester = (
        prop::sample::select(vec!["human", "agent", "system"]),
        text(1..=128),
        prop_oneof![Just(String::new()), text(1..=256)],
    );
    let target = (
        prop::sample::select(vec!["acme/", "ACME/", "Acme/", "  acme/"]),
        text(1..=60),
        prop::sample::select(vec!["", ".git", " "]),
        text(0..=256),
        text(0..=512),
        any::<bool>(),
    );
    let dispatch = (
        -1000..=1000i32,
        0..=100i32,
        prop::option::of((-62_135_596_800..=253_402_300_799i64, 0..1_000_000_000i32)),
        prop_oneof![Just(String::new()), "[!-~]{1,128}"],
        prop_oneof![Just(String::new()), text(1..=200)],
    );
    let work = (
        prop::sample::select(vec!["analysis", "code_change", "docs", "ops"]),
        any::<bool>(),
        prop::option::of(30..=86_400i32),
        prop::option::of(json_object()),
        prop::option::of(json_object()),
        prop::collection::vec(text(0..=80), 0..4),
        prop::collection::vec(text(0..=80), 0..4),
    );
    (requester, objective(), target, dispatch, work).prop_map(
        |(
            (kind, id, label),
            objective,
            (namespace, name, suffix, r#ref, path, legacy_repo),
            (priority, max_attempts, run_after, concurrency_key, idempotency_key),
            (operation, legacy_operation, budget, inputs, metadata, acceptance, evidence),
        )| {
            let repo = format!("{namespace}{name}{suffix}");
            #[allow(deprecated)]
            pb::TaskSpec {
                version: String::new(),
                idempotency_key,
                requested_by: Some(pb::Requester { kind: kind.into(), id, label }),
                objective,
                operation: if legacy_operation { String::new() } else { operation.into() },
                r#type: if legacy_operation { operation.into() } else { String::new() },
                target: Some(if legacy_repo {
                    pb::Target { repository: repo, r#ref, path, ..Default::default() }
                } else {
                    pb::Target { repo, r#ref, path, ..Default::default() }
                }),
                constraints: Some(pb::Constraints { time_budget_seconds: budget, ..Default::default() }),
                inputs: inputs.as_ref().map(json_struct_of),
                metadata: metadata.as_ref().map(json_struct_of),
                acceptance_criteria: acceptance,
                evidence_requirements: evidence,
                priority,
                run_after: run_after.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
                max_attempts,
                concurrency_key,
                payload: None,
            }
        },
    )
}

fn json_struct_of(value: &Json) -> pbjson_types::Struct {
    control_tower::json::json_to_struct(value)
}

/// One way to break a spec.
#[derive(Debug, Clone)]
enum Flaw {
    /// Validation refuses it, naming these fields.
    Invalid(&'static [&'static str], Edit),
    /// Validation passes; the policy gate refuses it with this code.
    Denied(&'static str, Edit),
}

#[derive(Debug, Clone)]
enum Edit {
    Version(String),
    NoRequester,
    RequesterKind(String),
    RequesterId(String),
    Objective(String),
    NoOperation,
    Operation(String),
    NoTarget,
    Repo(String),
    Ref(String),
    Path(String),
    Priority(i32),
    MaxAttempts(i32),
    RunAfter(Timestamp),
    ConcurrencyKey(String),
    IdempotencyKey(String),
    Inputs(Json),
    Metadata(Json),
    Criterion(String),
    Evidence(String),
    Budget(i32),
    Network,
    Secrets,
}

/// Policy codes in the order the gate applies its rules.
const POLICY_ORDER: [&str; 6] = [
    "INVALID_OPERATION",
    "REPO_NOT_ALLOWED",
    "TIME_BUDGET_TOO_LOW",
    "TIME_BUDGET_TOO_HIGH",
    "NETWORK_ACCESS_DENIED",
    "SECRETS_ACCESS_DENIED",
];

impl Edit {
    #[allow(deprecated)] // clears the legacy aliases too, so that they cannot stand in
    fn apply(self, s: &mut pb::TaskSpec) {
        let requester = |s: &mut pb::TaskSpec| s.requested_by.get_or_insert_with(Default::default).clone();
        match self {
            Edit::Version(v) => s.version = v,
            Edit::NoRequester => s.requested_by = None,
            Edit::RequesterKind(kind) => s.requested_by = Some(pb::Requester { kind, ..requester(s) }),
            Edit::RequesterId(id) => s.requested_by = Some(pb::Requester { id, ..requester(s) }),
            Edit::Objective(o) => s.objective = o,
            Edit::NoOperation | Edit::Operation(_) => {
                s.r#type.clear();
                s.operation = if let Edit::Operation(op) = self { op } else { String::new() };
            }
            Edit::NoTarget => s.target = None,
            Edit::Repo(repo) => {
                let target = s.target.get_or_insert_with(Default::default);
                target.repository.clear();
                target.repo = repo;
            }
            Edit::Ref(r) => s.target.get_or_insert_with(Default::default).r#ref = r,
            Edit::Path(p) => s.target.get_or_insert_with(Default::default).path = p,
            Edit::Priority(p) => s.priority = p,
            Edit::MaxAttempts(n) => s.max_attempts = n,
            Edit::RunAfter(ts) => s.run_after = Some(ts),
            Edit::ConcurrencyKey(k) => s.concurrency_key = k,
            Edit::IdempotencyKey(k) => s.idempotency_key = k,
            Edit::Inputs(json) => s.inputs = Some(json_struct_of(&json)),
            Edit::Metadata(json) => s.metadata = Some(json_struct_of(&json)),
            Edit::Criterion(c) => s.acceptance_criteria.push(c),
            Edit::Evidence(e) => s.evidence_requirements.push(e),
            Edit::Budget(b) => s.constraints.get_or_insert_with(Default::default).time_budget_seconds = Some(b),
            Edit::Network => s.constraints.get_or_insert_with(Default::default).allow_network = true,
            Edit::Secrets => s.constraints.get_or_insert_with(Default::default).allow_secrets = true,
        }
    }
}

/// A string holding U+0000 somewhere, which PostgreSQL can store neither in text nor in jsonb.
fn with_nul(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    (text(len), any::<prop::sample::Index>()).prop_map(|(s, at)| {
        let mut chars: Vec<char> = s.chars().collect();
        chars.insert(at.index(chars.len() + 1), '\0');
        String::from_iter(chars)
    })
}

/// An object with U+0000 in a key or a string, or nested deeper than allowed (yet not so deep that the request
/// itself cannot be decoded).
fn hostile_json() -> impl Strategy<Value = Json> {
    prop_oneof![
        with_nul(0..=10).prop_map(|key| Json::Object(Map::from_iter([(key, Json::Null)]))),
        with_nul(0..=10).prop_map(|value| Json::Object(Map::from_iter([("list".into(), Json::from(vec![value]))]))),
        (MAX_JSON_DEPTH + 1..=MAX_JSON_DEPTH + 10, text(0..=8)).prop_map(|(depth, key)| nested(depth, &key)),
    ]
}

fn outside(range: std::ops::RangeInclusive<i32>) -> impl Strategy<Value = i32> {
    prop_oneof![i32::MIN..*range.start(), (*range.end() + 1)..=i32::MAX]
}

/// Every flaw, grouped so that one spec gets at most one flaw per group (two flaws of one field would hide each
/// other). Each group is drawn with a small probability.
fn flaw_groups() -> Vec<BoxedStrategy<Flaw>> {
    use Edit::*;
    use Flaw::{Denied, Invalid};
    let requester_fields: &'static [&'static str] = &["requested_by.kind", "requested_by.id"];
    vec![
        "[^1].{0,8}".prop_map(|v| Invalid(&["version"], Version(v))).boxed(),
        prop_oneof![
            Just(Invalid(requester_fields, NoRequester)),
            "[a-z]{1,20}"
                .prop_filter("a real kind", |k| !["human", "agent", "system"].contains(&k.as_str()))
                .prop_map(|k| Invalid(&["requested_by.kind"], RequesterKind(k))),
            prop_oneof![Just(String::new()), text(129..=200), with_nul(1..=20)]
                .prop_map(|id| Invalid(&["requested_by.id"], RequesterId(id))),
        ]
        .boxed(),
        prop_oneof![
            "[ \t\n]{0,10}",
            "[ \t]{0,3}[a-z]{1,4}[ \t]{0,3}",
            text(4001..=4100).prop_filter("long once trimmed", |o| o.trim().chars().count() > 4000),
            with_nul(10..=50),
        ]
        .prop_map(|o| Invalid(&["objective"], Objective(o)))
        .boxed(),
        prop_oneof![
            Just(Invalid(&["operation"], NoOperation)),
            prop_oneof![Just("deploy".to_owned()), text(1..=40)]
                .prop_filter("a real operation", |op| !["analysis", "code_change", "docs", "ops"]
                    .contains(&op.as_str()))
                .prop_map(|op| Denied("INVALID_OPERATION", Operation(op))),
        ]
        .boxed(),
        prop_oneof![
            Just(Invalid(&["target.repo"], NoTarget)),
            prop_oneof![
                Just(" .git ".to_owned()),
                Just(".git".to_owned()),
                "acme/[a-z]{252,300}",
                // Short enough as sent, but lower-casing doubles it ('İ' becomes "i̇") past the 256 the column holds.
                (126..=200usize).prop_map(|n| format!("acme/{}", "İ".repeat(n))),
                with_nul(1..=20).prop_map(|s| format!("acme/{s}")),
            ]
            .prop_map(|r| Invalid(&["target.repo"], Repo(r))),
            prop_oneof![
                Just("../acme/x".to_owned()),
                Just("evil/widgets".to_owned()),
                Just("acme".to_owned()),
                Just("/acme/x".to_owned()),
                Just("acme\\x".to_owned()),
                text(1..=30).prop_map(|s| format!("x/acme/{s}")),
            ]
            .prop_map(|r| Denied("REPO_NOT_ALLOWED", Repo(r))),
        ]
        .boxed(),
        prop_oneof![text(257..=300), with_nul(0..=20)].prop_map(|r| Invalid(&["target.ref"], Ref(r))).boxed(),
        prop_oneof![text(513..=600), with_nul(0..=20)].prop_map(|p| Invalid(&["target.path"], Path(p))).boxed(),
        outside(-1000..=1000).prop_map(|p| Invalid(&["priority"], Priority(p))).boxed(),
        outside(0..=100).prop_map(|n| Invalid(&["max_attempts"], MaxAttempts(n))).boxed(),
        prop_oneof![
            (any::<i64>(), 1_000_000_000..=i32::MAX),
            (any::<i64>(), i32::MIN..0),
            (253_402_300_800..=i64::MAX, 0..1_000_000_000),
            (i64::MIN..-62_135_596_800, 0..1_000_000_000),
        ]
        .prop_map(|(seconds, nanos)| Invalid(&["run_after"], RunAfter(Timestamp { seconds, nanos })))
        .boxed(),
        prop_oneof![
            "[!-~]{129,140}",
            "[!-~]{0,5} [!-~]{0,5}",
            text(1..=20).prop_filter("not ASCII", |k| !k.is_ascii())
        ]
        .prop_map(|k| Invalid(&["concurrency_key"], ConcurrencyKey(k)))
        .boxed(),
        prop_oneof![text(257..=300), with_nul(0..=20)]
            .prop_map(|k| Invalid(&["idempotency_key"], IdempotencyKey(k)))
            .boxed(),
        hostile_json().prop_map(|j| Invalid(&["inputs"], Inputs(j))).boxed(),
        hostile_json().prop_map(|j| Invalid(&["metadata"], Metadata(j))).boxed(),
        prop_oneof![
            with_nul(0..=30).prop_map(|c| Invalid(&["acceptance_criteria"], Criterion(c))),
            with_nul(0..=30).prop_map(|e| Invalid(&["evidence_requirements"], Evidence(e))),
        ]
        .boxed(),
        prop_oneof![i32::MIN..30, 86_401..=i32::MAX]
            .prop_map(|b| Denied(if b < 30 { "TIME_BUDGET_TOO_LOW" } else { "TIME_BUDGET_TOO_HIGH" }, Budget(b)))
            .boxed(),
        Just(Denied("NETWORK_ACCESS_DENIED", Network)).boxed(),
        Just(Denied("SECRETS_ACCESS_DENIED", Secrets)).boxed(),
    ]
}

/// What the server must answer for an item.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Created,
    Invalid(BTreeSet<&'static str>),
    Denied(&'static str),
}

#[derive(Debug, Clone)]
struct Item {
    spec: Option<pb::TaskSpec>,
    expected: Expected,
}

fn item() -> impl Strategy<Value = Item> {
    let flaws: Vec<_> = flaw_groups().into_iter().map(|group| prop::option::weighted(0.05, group)).collect();
    let missing = Just(Item { spec: None, expected: Expected::Invalid(BTreeSet::from(["spec"])) });
    prop_oneof![
        1 => missing,
        30 => (valid_spec(), flaws).prop_map(|(mut spec, flaws)| {
            let mut invalid = BTreeSet::new();
            let mut denied = Vec::new();
            for flaw in flaws.into_iter().flatten() {
                match flaw {
                    Flaw::Invalid(fields, edit) => {
                        invalid.extend(fields.iter().copied());
                        edit.apply(&mut spec);
                    }
                    Flaw::Denied(code, edit) => {
                        denied.push(code);
                        edit.apply(&mut spec);
                    }
                }
            }
            let expected = if !invalid.is_empty() {
                Expected::Invalid(invalid)
            } else if let Some(first) = POLICY_ORDER.iter().find(|code| denied.contains(code)) {
                Expected::Denied(first)
            } else {
                Expected::Created
            };
            Item { spec: Some(spec), expected }
        }),
    ]
}

/// A case: a few items, sent one by one or as one batch.
fn case() -> impl Strategy<Value = (Vec<Item>, bool)> {
    (prop::collection::vec(item(), 1..=6), any::<bool>())
}

/// Keys must not repeat across items, or a later item would return an earlier task instead of being created.
fn unique_keys(items: &mut [Item]) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    for item in items {
        if let Some(spec) = &mut item.spec
            && !spec.idempotency_key.is_empty()
            && spec.idempotency_key.chars().count() <= 200
        {
            spec.idempotency_key.push_str(&format!("#{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        }
    }
}

/// The answer for one item, as either API reports it.
#[derive(Debug)]
enum Answer {
    Created(Box<pb::Task>),
    Refused { code: Code, fields: BTreeSet<String>, reason: String, message: String },
}

fn answer_of_status(status: tonic::Status) -> Answer {
    let fields = status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    let reason = status.get_details_error_info().map(|i| i.reason).unwrap_or_default();
    Answer::Refused { code: status.code(), fields, reason, message: status.message().to_owned() }
}

async fn send(tasks: &mut Tasks, items: &[Item], batch: bool) -> Vec<Answer> {
    if !batch {
        let mut answers = Vec::new();
        for item in items {
            let request = pb::EnqueueTaskRequest { spec: item.spec.clone(), create_cwom: false };
            answers.push(match tasks.enqueue_task(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    assert!(response.created, "a fresh spec creates its task");
                    Answer::Created(Box::new(response.task.expect("task")))
                }
                Err(status) => answer_of_status(status),
            });
        }
        return answers;
    }
    let requests = items.iter().map(|i| pb::EnqueueTaskRequest { spec: i.spec.clone(), create_cwom: false }).collect();
    let results = tasks
        .enqueue_tasks(pb::EnqueueTasksRequest { requests })
        .await
        .unwrap_or_else(|status| panic!("the batch as a whole fails: {status:?}"))
        .into_inner()
        .results;
    assert_eq!(results.len(), items.len());
    results
        .into_iter()
        .map(|r| match r.outcome.expect("outcome") {
            pb::enqueue_task_result::Outcome::Enqueued(e) => {
                assert!(e.created, "a fresh spec creates its task");
                Answer::Created(Box::new(e.task.expect("task")))
            }
            pb::enqueue_task_result::Outcome::Error(e) => Answer::Refused {
                code: Code::from(e.code),
                fields: e.field_violations.into_iter().map(|v| v.field).collect(),
                reason: e.reason,
                message: e.message,
            },
        })
        .collect()
}

fn check_answer(item: &Item, answer: &Answer) {
    match (&item.expected, answer) {
        (Expected::Created, Answer::Created(task)) => {
            let (sent, stored) = (item.spec.as_ref().expect("spec"), task.spec.as_ref().expect("stored spec"));
            assert_eq!(task.status(), pb::TaskStatus::Queued);
            assert_eq!(stored.objective, sent.objective.trim());
            #[allow(deprecated)]
            let repo = sent.target.as_ref().map(|t| if t.repo.is_empty() { &t.repository } else { &t.repo });
            assert_eq!(stored.target.as_ref().map(|t| &t.repo), repo.map(|r| normalise_repo(r)).as_ref());
        }
        (Expected::Invalid(want), Answer::Refused { code, fields, message, .. }) => {
            assert_eq!(*code, Code::InvalidArgument, "{message}");
            let got: BTreeSet<&str> = fields.iter().map(String::as_str).collect();
            assert_eq!(&got, want, "{message}");
        }
        (Expected::Denied(want), Answer::Refused { code, reason, message, .. }) => {
            assert_eq!(*code, Code::InvalidArgument, "{message}");
            assert_eq!(reason, want, "{message}");
            assert!(message.starts_with(&format!("{want}: ")), "{message}");
        }
        (expected, answer) => panic!("expected {expected:?}, got {answer:?} for {:?}", item.spec),
    }
}

/// Sends a case and checks the answers and the database: one task row, stored as it was answered, and one
/// `created` entry per created task, nothing else.
async fn run_case(server: &TestServer, tasks: &mut Tasks, sentinel: &str, mut items: Vec<Item>, batch: bool) {
    unique_keys(&mut items);
    let tasks_before = server.count("SELECT COUNT(*) FROM tasks").await;
    let audit_before = server.count("SELECT COUNT(*) FROM audit_log").await;
    let answers = send(tasks, &items, batch).await;
    for (item, answer) in items.iter().zip(&answers) {
        check_answer(item, answer);
    }
    let created: Vec<&pb::Task> =
        answers.iter().filter_map(|a| if let Answer::Created(t) = a { Some(t.as_ref()) } else { None }).collect();
    let n = created.len() as i64;
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, tasks_before + n, "task rows");
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_log").await, audit_before + n, "audit entries");
    for task in created {
        let sql = format!("SELECT COUNT(*) FROM audit_log WHERE entity_id = '{}' AND action = 'created'", task.id);
        assert_eq!(server.count(&sql).await, 1, "the created entry of {}", task.id);
        // Read back from the database: every character and JSON value as it was sent.
        let stored = serde_json::to_value(get(tasks, &task.id).await).expect("stored task as JSON");
        assert_eq!(stored, serde_json::to_value(task).expect("task as JSON"), "task {} as stored", task.id);
    }
    // Still serving.
    assert_eq!(get(tasks, sentinel).await.id, sentinel);
}

#[test]
fn hostile_specs_are_refused_cleanly_and_never_half_written() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let server = runtime.block_on(TestServer::start());
    let mut tasks = runtime.block_on(server.tasks());
    let sentinel = runtime.block_on(enqueue(&mut tasks, spec("Answers between hostile requests"))).id;

    let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |(items, batch)| {
        runtime.block_on(run_case(&server, &mut tasks.clone(), &sentinel, items, batch));
        Ok(())
    });
    runtime.block_on(server.stop());
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// Transport limits apply before any handler runs, with the codes gRPC gives them; the server stays up and nothing
/// is written.
#[tokio::test]
async fn oversized_and_overdeep_messages_are_refused_by_the_transport() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;

    // Over the 4 MiB a server decodes by default.
    let huge = spec(&"x".repeat(5 << 20));
    assert_eq!(code_of(tasks.enqueue_task(request(huge)).await), Code::OutOfRange);

    // Nested past the protobuf decoder's recursion limit (each level is a Struct, a map entry and a Value).
    let deep = (0..200).fold(Json::from(1), |inner, _| Json::Object(Map::from_iter([("k".to_owned(), inner)])));
    let mut nested = spec("Nested too deep to decode");
    nested.inputs = Some(json_struct_of(&deep));
    let status = tasks.enqueue_task(request(nested)).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "gRPC reports undecodable messages as INTERNAL: {status:?}");

    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, 0);
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_log").await, 0);
    let alive = enqueue(&mut tasks, spec("Still accepting work")).await;
    assert_eq!(get(&mut tasks, &alive.id).await.id, alive.id);
    server.stop().await;
}

/// A task nested as deep as validation allows is readable in every response that carries it, including the audit
/// entries of its work model; one level more is refused up front. Deeper tasks used to be stored and then fail
/// their own EnqueueTask answer and every ListTasks page holding them, as INTERNAL.
#[tokio::test]
async fn the_deepest_inputs_allowed_stay_readable_everywhere() {
    use pb::{audit_service_client::AuditServiceClient, cwom_service_client::CwomServiceClient};
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let deep = |depth| {
        let mut s = spec("Nested as deep as allowed");
        s.inputs = Some(json_struct_of(&nested(depth, "k")));
        s.metadata = Some(json_struct_of(&nested(depth, "m")));
        pb::EnqueueTaskRequest { spec: Some(s), create_cwom: true }
    };

    let task = tasks.enqueue_task(deep(MAX_JSON_DEPTH)).await.expect("enqueue").into_inner().task.expect("task");
    let batch = tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests: vec![deep(MAX_JSON_DEPTH)] }).await;
    assert!(batch.expect("batch").into_inner().results[0].outcome.is_some());
    assert_eq!(get(&mut tasks, &task.id).await.id, task.id);
    assert_eq!(tasks.list_tasks(pb::ListTasksRequest::default()).await.expect("list").into_inner().tasks.len(), 2);
    let events = AuditServiceClient::new(server.channel().await)
        .list_audit_events(pb::ListAuditEventsRequest { page_size: 1000, ..Default::default() })
        .await
        .expect("audit events")
        .into_inner()
        .events;
    assert!(events.iter().any(|e| e.entity_kind == "ContextPacket"), "the work model was built");
    let mut cwom = CwomServiceClient::new(server.channel().await);
    cwom.list_issues(pb::ListIssuesRequest::default()).await.expect("issues");
    cwom.list_context_packets(pb::ListContextPacketsRequest::default()).await.expect("context packets");

    let status = tasks.enqueue_task(deep(MAX_JSON_DEPTH + 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<_> = status.get_details_bad_request().expect("BadRequest").field_violations;
    assert_eq!(fields.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(), ["inputs", "metadata"]);
    server.stop().await;
}
