//! CwomService against a real server and database: a round trip of each of the seven objects with their defaults,
//! every list filter and pagination, the six join tables, immutability (through the API and around it), the unique
//! rules, both status machines with their audit entries, validation and references, and updates.

mod common;

use std::{collections::HashSet, future::Future};

use common::*;
use control_tower::{
    json::struct_to_json,
    pb::{
        self, ObjectKind,
        WorkStatus::{self, *},
        audit_service_client::AuditServiceClient,
        cwom_service_client::CwomServiceClient,
    },
};
use serde_json::json;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

type Cwom = CwomServiceClient<Channel>;
type Audit = AuditServiceClient<Channel>;

// ---------------------------------------------------------------------------------------------------------------
// Helpers: clients, fixtures, error and audit assertions.
// ---------------------------------------------------------------------------------------------------------------

async fn clients(server: &TestServer) -> (Cwom, Audit) {
    let channel = server.channel().await;
    (CwomServiceClient::new(channel.clone()), AuditServiceClient::new(channel))
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

fn unknown_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn human(id: &str) -> pb::Actor {
    pb::Actor { actor_kind: pb::ActorKind::Human.into(), actor_id: id.into(), display: format!("{id} (human)") }
}

fn agent(id: &str) -> pb::Actor {
    pb::Actor { actor_kind: pb::ActorKind::Agent.into(), actor_id: id.into(), display: String::new() }
}

fn to(kind: ObjectKind, id: &str) -> pb::Ref {
    pb::Ref { kind: kind.into(), id: id.into(), role: String::new() }
}

fn ts(seconds: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds, nanos: 0 }
}

fn get(id: &str) -> pb::GetObjectRequest {
    pb::GetObjectRequest { id: id.into() }
}

/// Free-form metadata with an integer, a string and a nested object.
fn meta_json() -> serde_json::Value {
    json!({"attempts": 3, "owner": "platform", "limits": {"cpu": 2, "label": "small"}})
}

fn meta() -> pbjson_types::Struct {
    json_struct(meta_json())
}

/// Minimal valid objects; tests fill in what they look at.
fn repo(slug: &str) -> pb::Repo {
    pb::Repo { name: format!("Repo {slug}"), slug: slug.into(), ..Default::default() }
}

fn issue(repo_id: &str, title: &str) -> pb::Issue {
    pb::Issue {
        repo: Some(to(ObjectKind::Repo, repo_id)),
        title: title.into(),
        r#type: pb::IssueType::Feature.into(),
        ..Default::default()
    }
}

fn packet(issue_id: &str, version: &str) -> pb::ContextPacket {
    pb::ContextPacket {
        for_issue: Some(to(ObjectKind::Issue, issue_id)),
        version: version.into(),
        summary: format!("Context {version}"),
        ..Default::default()
    }
}

fn snapshot(scope: pb::ConstraintScope, owner: &str) -> pb::ConstraintSnapshot {
    pb::ConstraintSnapshot { scope: scope.into(), owner: Some(human(owner)), ..Default::default() }
}

fn doctrine(namespace: &str, name: &str, version: &str) -> pb::DoctrineRef {
    pb::DoctrineRef {
        namespace: namespace.into(),
        name: name.into(),
        version: version.into(),
        r#type: pb::DoctrineType::Principle.into(),
        statement: format!("Follow {name}"),
        ..Default::default()
    }
}

fn run(issue_id: &str) -> pb::Run {
    pb::Run {
        for_issue: Some(to(ObjectKind::Issue, issue_id)),
        mode: pb::RunMode::Agent.into(),
        executor: Some(pb::Executor { actor: Some(agent("agent-7")), runtime: "codex".into(), toolchain: vec![] }),
        ..Default::default()
    }
}

fn artifact(run_id: &str) -> pb::Artifact {
    pb::Artifact {
        produced_by: Some(to(ObjectKind::Run, run_id)),
        r#type: pb::ArtifactType::Log.into(),
        title: "Run log".into(),
        uri: "file:///runs/log.txt".into(),
        ..Default::default()
    }
}

async fn new_repo(c: &mut Cwom, repo: pb::Repo) -> pb::Repo {
    c.create_repo(pb::CreateRepoRequest { repo: Some(repo) }).await.expect("create repo").into_inner()
}

async fn new_issue(c: &mut Cwom, issue: pb::Issue) -> pb::Issue {
    c.create_issue(pb::CreateIssueRequest { issue: Some(issue) }).await.expect("create issue").into_inner()
}

async fn new_packet(c: &mut Cwom, packet: pb::ContextPacket) -> pb::ContextPacket {
    let request = pb::CreateContextPacketRequest { context_packet: Some(packet) };
    c.create_context_packet(request).await.expect("create context packet").into_inner()
}

async fn new_snapshot(c: &mut Cwom, snapshot: pb::ConstraintSnapshot) -> pb::ConstraintSnapshot {
    let request = pb::CreateConstraintSnapshotRequest { constraint_snapshot: Some(snapshot) };
    c.create_constraint_snapshot(request).await.expect("create constraint snapshot").into_inner()
}

async fn new_doctrine(c: &mut Cwom, doctrine: pb::DoctrineRef) -> pb::DoctrineRef {
    let request = pb::CreateDoctrineRefRequest { doctrine_ref: Some(doctrine) };
    c.create_doctrine_ref(request).await.expect("create doctrine ref").into_inner()
}

async fn new_run(c: &mut Cwom, run: pb::Run) -> pb::Run {
    c.create_run(pb::CreateRunRequest { run: Some(run) }).await.expect("create run").into_inner()
}

async fn new_artifact(c: &mut Cwom, artifact: pb::Artifact) -> pb::Artifact {
    c.create_artifact(pb::CreateArtifactRequest { artifact: Some(artifact) })
        .await
        .expect("create artifact")
        .into_inner()
}

/// A repo with one issue in it.
async fn repo_and_issue(c: &mut Cwom, slug: &str) -> (pb::Repo, pb::Issue) {
    let repo = new_repo(c, repo(slug)).await;
    let issue = new_issue(c, issue(&repo.id, &format!("Work in {slug}"))).await;
    (repo, issue)
}

async fn set_issue_status(c: &mut Cwom, id: &str, status: WorkStatus) -> Result<pb::Issue, Status> {
    let request = pb::UpdateIssueStatusRequest { id: id.into(), status: status.into(), note: "test".into() };
    c.update_issue_status(request).await.map(|r| r.into_inner())
}

async fn set_run_status(c: &mut Cwom, id: &str, status: WorkStatus) -> Result<pb::Run, Status> {
    let request = pb::UpdateRunRequest { id: id.into(), status: status.into(), ..Default::default() };
    c.update_run(request).await.map(|r| r.into_inner())
}

fn link(issue_id: &str, target_id: &str) -> pb::IssueLinkRequest {
    pb::IssueLinkRequest { issue_id: issue_id.into(), target_id: target_id.into() }
}

/// The stored name of a status ("under_review"), as the audit log and error messages spell it.
fn name(status: WorkStatus) -> String {
    status.as_str_name().trim_start_matches("WORK_STATUS_").to_lowercase()
}

trait HasId {
    fn id(&self) -> &str;
}

macro_rules! has_id {
    ($($ty:ty),+) => { $(impl HasId for $ty { fn id(&self) -> &str { &self.id } })+ };
}
has_id!(pb::Repo, pb::Issue, pb::ContextPacket, pb::ConstraintSnapshot, pb::DoctrineRef, pb::Run, pb::Artifact);

fn ids<T: HasId>(items: &[T]) -> Vec<String> {
    items.iter().map(|i| i.id().to_owned()).collect()
}

fn ref_ids(refs: &[pb::Ref]) -> Vec<String> {
    refs.iter().map(|r| r.id.clone()).collect()
}

fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Walks a list with page_size 1 from the first page to the last, returning the keys in order; no repeats allowed.
async fn walk<R, Fut>(mut fetch: impl FnMut(String) -> Fut, split: impl Fn(R) -> (Vec<String>, String)) -> Vec<String>
where
    Fut: Future<Output = Result<R, Status>>,
{
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (keys, next) = split(fetch(token).await.expect("a page"));
        assert!(keys.len() <= 1, "page_size 1 returned {keys:?}");
        seen.extend(keys);
        if next.is_empty() {
            break;
        }
        token = next;
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no repeats: {seen:?}");
    seen
}

#[track_caller]
fn assert_invalid(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    assert!(status.message().contains(&format!("{field}: ")), "{field}: {}", status.message());
    let bad_request = status.get_details_bad_request().expect("BadRequest details");
    assert!(bad_request.field_violations.iter().any(|v| v.field == field), "{field}: {bad_request:?}");
}

#[track_caller]
fn assert_precondition(status: &Status, reason: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(status.get_details_error_info().expect("ErrorInfo").reason, reason, "{status:?}");
}

#[track_caller]
fn assert_not_found(status: &Status, mentions: &str) {
    assert_eq!(status.code(), Code::NotFound, "{mentions}: {status:?}");
    assert!(status.message().contains(mentions), "{mentions}: {}", status.message());
}

/// The audit entries of one object, oldest first (the service lists newest first).
async fn audit_of(audit: &mut Audit, entity_id: &str) -> Vec<pb::AuditEvent> {
    let filter = pb::AuditFilter { entity_id: entity_id.into(), ..Default::default() };
    let request = pb::ListAuditEventsRequest { filter: Some(filter), page_size: 1000, page_token: String::new() };
    let mut events = audit.list_audit_events(request).await.expect("list audit events").into_inner().events;
    events.reverse();
    events
}

fn actions(events: &[pb::AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.action.as_str()).collect()
}

fn json_of(s: Option<&pbjson_types::Struct>) -> serde_json::Value {
    s.cloned().map_or(serde_json::Value::Null, struct_to_json)
}

/// An audit `before`/`after` read back as the object it snapshots.
fn object_of<T: serde::de::DeserializeOwned>(s: Option<&pbjson_types::Struct>) -> T {
    serde_json::from_value(json_of(s)).expect("the audit snapshot parses as the object")
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Round trips, with defaults.
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_repo_round_trips_with_main_and_private_by_default() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let input = pb::Repo {
        name: "Widgets".into(),
        slug: "acme-widgets".into(),
        source: Some(pb::Source {
            system: "github".into(),
            external_id: "1234".into(),
            url: "https://github.com/acme/widgets".into(),
        }),
        owners: vec![human("alice"), agent("agent-7")],
        policy: Some(pb::RepoPolicy {
            allowed_tools: vec!["cargo".into(), "git".into()],
            secrets_profile: "ci".into(),
        }),
        links: vec!["https://docs.acme.dev/widgets".into()],
        tags: vec!["core".into(), "rust".into()],
        meta: Some(meta()),
        ..Default::default()
    };
    let created = new_repo(&mut cwom, input.clone()).await;
    assert!(uuid::Uuid::parse_str(&created.id).is_ok(), "{}", created.id);
    assert!(created.created_at.is_some() && created.updated_at == created.created_at);
    let got = cwom.get_repo(get(&created.id)).await.unwrap().into_inner();
    assert_eq!(got, created);
    assert_eq!(got.default_branch, "main");
    assert_eq!(got.visibility(), pb::Visibility::Private);
    assert_eq!(json_of(got.meta.as_ref()), meta_json());
    let expected = pb::Repo {
        id: got.id.clone(),
        default_branch: "main".into(),
        visibility: pb::Visibility::Private.into(),
        trace_id: got.trace_id.clone(),
        created_at: got.created_at,
        updated_at: got.updated_at,
        ..input
    };
    assert_eq!(got, expected);

    let explicit =
        pb::Repo { default_branch: "trunk".into(), visibility: pb::Visibility::Public.into(), ..repo("acme-explicit") };
    let explicit = new_repo(&mut cwom, explicit).await;
    let got = cwom.get_repo(get(&explicit.id)).await.unwrap().into_inner();
    assert_eq!((got.default_branch.as_str(), got.visibility()), ("trunk", pb::Visibility::Public));
    server.stop().await;
}

#[tokio::test]
async fn an_issue_round_trips_planned_at_p2_by_default() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let repo = new_repo(&mut cwom, repo("acme-widgets")).await;
    let mut related = Vec::new();
    for title in ["Parent epic", "Blocked by the new issue", "Blocks the new issue", "Duplicate"] {
        related.push(new_issue(&mut cwom, issue(&repo.id, title)).await.id);
    }
    let input = pb::Issue {
        repo: Some(to(ObjectKind::Repo, &repo.id)),
        title: "Widgets crash on empty input".into(),
        description: "Steps: send an empty body.\nExpected: 400.".into(),
        r#type: pb::IssueType::Bug.into(),
        assignees: vec![human("alice")],
        watchers: vec![agent("agent-7"), human("bob")],
        acceptance: Some(pb::Acceptance {
            criteria: vec!["Empty input is rejected".into()],
            tests_expected: vec!["tests/empty.rs".into(), "tests/fuzz.rs".into()],
        }),
        relationships: Some(pb::Relationships {
            parent: Some(pb::Ref { role: "epic".into(), ..to(ObjectKind::Issue, &related[0]) }),
            blocks: vec![to(ObjectKind::Issue, &related[1])],
            blocked_by: vec![to(ObjectKind::Issue, &related[2])],
            duplicates: vec![to(ObjectKind::Issue, &related[3])],
        }),
        tags: vec!["crash".into()],
        meta: Some(meta()),
        ..Default::default()
    };
    let created = new_issue(&mut cwom, input.clone()).await;
    let got = cwom.get_issue(get(&created.id)).await.unwrap().into_inner();
    assert_eq!(got, created);
    assert_eq!((got.priority(), got.status()), (pb::Priority::P2, Planned));
    let expected = pb::Issue {
        id: got.id.clone(),
        priority: pb::Priority::P2.into(),
        status: Planned.into(),
        trace_id: got.trace_id.clone(),
        created_at: got.created_at,
        updated_at: got.updated_at,
        ..input
    };
    assert_eq!(got, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_context_packet_round_trips_as_sequence_one() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let rule = new_doctrine(&mut cwom, doctrine("eng", "testing", "1")).await;
    let limits = new_snapshot(&mut cwom, snapshot(pb::ConstraintScope::Personal, "alice")).await;
    let input = pb::ContextPacket {
        for_issue: Some(to(ObjectKind::Issue, &issue.id)),
        version: "v1".into(),
        summary: "Empty bodies crash the parser".into(),
        inputs: Some(pb::ContextInputs {
            documents: vec![pb::Document {
                title: "Parser design".into(),
                uri: "https://docs.acme.dev/parser".into(),
                digest: "sha256:aaaa".into(),
                excerpt: "The parser assumes a body".into(),
            }],
            data_blobs: vec![pb::DataBlob {
                name: "crash.json".into(),
                media_type: "application/json".into(),
                uri: "s3://acme/crash.json".into(),
                inline: "{\"body\": \"\"}".into(),
                digest: "sha256:bbbb".into(),
            }],
            links: vec!["https://github.com/acme/widgets/issues/1".into()],
        }),
        assumptions: vec!["Only HTTP input".into()],
        open_questions: vec!["Is an empty JSON object empty?".into()],
        instructions: "Add a guard and a test.".into(),
        doctrine_refs: vec![to(ObjectKind::DoctrineRef, &rule.id)],
        constraint_snapshot: Some(to(ObjectKind::ConstraintSnapshot, &limits.id)),
        tags: vec!["parser".into()],
        meta: Some(meta()),
        ..Default::default()
    };
    let created = new_packet(&mut cwom, input.clone()).await;
    let got = cwom.get_context_packet(get(&created.id)).await.unwrap().into_inner();
    assert_eq!(got, created);
    assert_eq!(got.sequence, 1);
    let expected = pb::ContextPacket {
        id: got.id.clone(),
        sequence: 1,
        trace_id: got.trace_id.clone(),
        created_at: got.created_at,
        ..input
    };
    assert_eq!(got, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_constraint_snapshot_round_trips_with_ok_connectivity_and_medium_risk() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let full = pb::ConstraintSet {
        time: Some(pb::TimeConstraints { available_minutes: Some(90), deadline: Some(ts(1_767_225_600)) }),
        energy: Some(pb::EnergyConstraints { score_0_5: Some(3.5), notes: "after lunch".into() }),
        health: Some(pb::HealthConstraints { flags: vec!["rsi".into()], notes: "short sessions".into() }),
        budget: Some(pb::BudgetConstraints { usd_available: Some(12.5), burn_limit_usd: Some(2.25) }),
        tools: Some(pb::ToolConstraints { allowed: vec!["cargo".into()], blocked: vec!["docker".into()] }),
        environment: Some(pb::EnvironmentConstraints {
            location: "train".into(),
            connectivity: 0,
            device: "laptop".into(),
        }),
        risk: Some(pb::RiskConstraints { tolerance: 0, notes: "no prod".into() }),
    };
    let input = pb::ConstraintSnapshot {
        scope: pb::ConstraintScope::Personal.into(),
        captured_at: Some(ts(1_750_000_000)),
        owner: Some(human("alice")),
        constraints: Some(full.clone()),
        tags: vec!["commute".into()],
        meta: Some(meta()),
        ..Default::default()
    };
    let created = new_snapshot(&mut cwom, input.clone()).await;
    let got = cwom.get_constraint_snapshot(get(&created.id)).await.unwrap().into_inner();
    assert_eq!(got, created);
    let mut defaults = full;
    defaults.environment.as_mut().unwrap().connectivity = pb::Connectivity::Ok.into();
    defaults.risk.as_mut().unwrap().tolerance = pb::RiskTolerance::Medium.into();
    let expected = pb::ConstraintSnapshot {
        id: got.id.clone(),
        constraints: Some(defaults),
        trace_id: got.trace_id.clone(),
        ..input
    };
    assert_eq!(got, expected);

    // With no constraints at all the defaults still show, and captured_at is the time of creation.
    let bare = new_snapshot(&mut cwom, snapshot(pb::ConstraintScope::Org, "bob")).await;
    let got = cwom.get_constraint_snapshot(get(&bare.id)).await.unwrap().into_inner();
    assert!(got.captured_at.is_some());
    let constraints = got.constraints.expect("constraints with defaults");
    assert_eq!(constraints.environment.unwrap().connectivity(), pb::Connectivity::Ok);
    assert_eq!(constraints.risk.unwrap().tolerance(), pb::RiskTolerance::Medium);
    server.stop().await;
}

#[tokio::test]
async fn a_doctrine_ref_round_trips_as_should_by_default() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let repo = new_repo(&mut cwom, repo("acme-widgets")).await;
    let input = pb::DoctrineRef {
        namespace: "eng".into(),
        name: "testing".into(),
        version: "1.2.0".into(),
        r#type: pb::DoctrineType::Policy.into(),
        statement: "Every bug fix comes with a regression test.".into(),
        rationale: "Bugs come back.".into(),
        links: vec!["https://handbook.acme.dev/testing".into()],
        applicability: Some(pb::Applicability {
            repo_refs: vec![to(ObjectKind::Repo, &repo.id)],
            issue_types: vec!["bug".into()],
            tags: vec!["quality".into()],
        }),
        tags: vec!["handbook".into()],
        meta: Some(meta()),
        ..Default::default()
    };
    let created = new_doctrine(&mut cwom, input.clone()).await;
    let got = cwom.get_doctrine_ref(get(&created.id)).await.unwrap().into_inner();
    assert_eq!(got, created);
    assert_eq!(got.priority(), pb::DoctrinePriority::Should);
    let expected = pb::DoctrineRef {
        id: got.id.clone(),
        priority: pb::DoctrinePriority::Should.into(),
        trace_id: got.trace_id.clone(),
        created_at: got.created_at,
        updated_at: got.updated_at,
        ..input
    };
    assert_eq!(got, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_run_round_trips_planned_in_its_issues_repo() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (repo, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let context = new_packet(&mut cwom, packet(&issue.id, "v1")).await;
    let rule = new_doctrine(&mut cwom, doctrine("eng", "testing", "1")).await;
    let limits = new_snapshot(&mut cwom, snapshot(pb::ConstraintScope::Run, "agent-7")).await;
    let input = pb::Run {
        for_issue: Some(to(ObjectKind::Issue, &issue.id)),
        mode: pb::RunMode::Hybrid.into(),
        executor: Some(pb::Executor {
            actor: Some(agent("agent-7")),
            runtime: "codex".into(),
            toolchain: vec!["rustc 1.88".into(), "cargo".into()],
        }),
        inputs: Some(pb::RunInputs {
            context_packets: vec![to(ObjectKind::ContextPacket, &context.id)],
            doctrine_refs: vec![to(ObjectKind::DoctrineRef, &rule.id)],
            constraint_snapshot: Some(to(ObjectKind::ConstraintSnapshot, &limits.id)),
        }),
        plan: Some(pb::Plan {
            steps: vec!["reproduce".into(), "fix".into(), "test".into()],
            risk_notes: vec!["parser is hot code".into()],
        }),
        telemetry: Some(pb::Telemetry {
            started_at: Some(ts(1_750_000_000)),
            ended_at: Some(ts(1_750_000_600)),
            duration_s: Some(600.5),
        }),
        cost: Some(pb::Cost { usd: Some(0.75), tokens: Some(12_345), compute_s: Some(42.0) }),
        outputs: Some(pb::RunOutputs {
            artifacts: vec![],
            result_summary: "Guard added".into(),
            decision_log: vec!["kept the public API".into()],
        }),
        failure: Some(pb::Failure { category: pb::FailureCategory::Test.into(), message: "flaky test".into() }),
        artifact_root_uri: "s3://acme/runs/1".into(),
        tags: vec!["nightly".into()],
        meta: Some(meta()),
        ..Default::default()
    };
    let created = new_run(&mut cwom, input.clone()).await;
    let got = cwom.get_run(get(&created.id)).await.unwrap().into_inner();
    assert_eq!(got, created);
    assert_eq!(got.status(), Planned);
    let expected = pb::Run {
        id: got.id.clone(),
        repo: Some(to(ObjectKind::Repo, &repo.id)),
        status: Planned.into(),
        trace_id: got.trace_id.clone(),
        created_at: got.created_at,
        updated_at: got.updated_at,
        ..input
    };
    assert_eq!(got, expected);
    server.stop().await;
}

#[tokio::test]
async fn an_artifact_round_trips_unverified_for_its_runs_issue() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let producer = new_run(&mut cwom, run(&issue.id)).await;
    let input = pb::Artifact {
        produced_by: Some(to(ObjectKind::Run, &producer.id)),
        r#type: pb::ArtifactType::Report.into(),
        title: "Test report".into(),
        uri: "s3://acme/runs/1/report.md".into(),
        digest: "sha256:cccc".into(),
        media_type: "text/markdown".into(),
        size_bytes: Some(2048),
        preview: "# 42 passed".into(),
        verification: Some(pb::Verification {
            status: 0,
            checks: vec![
                pb::VerificationCheck {
                    name: "lint".into(),
                    status: pb::VerificationStatus::Passed.into(),
                    evidence_uri: "s3://acme/lint.txt".into(),
                },
                pb::VerificationCheck {
                    name: "tests".into(),
                    status: pb::VerificationStatus::Failed.into(),
                    evidence_uri: String::new(),
                },
            ],
        }),
        tags: vec!["ci".into()],
        meta: Some(meta()),
        ..Default::default()
    };
    let created = new_artifact(&mut cwom, input.clone()).await;
    let got = cwom.get_artifact(get(&created.id)).await.unwrap().into_inner();
    assert_eq!(got, created);
    let mut verification = input.verification.clone().unwrap();
    verification.status = pb::VerificationStatus::Unverified.into();
    let expected = pb::Artifact {
        id: got.id.clone(),
        for_issue: Some(to(ObjectKind::Issue, &issue.id)),
        verification: Some(verification),
        trace_id: got.trace_id.clone(),
        created_at: got.created_at,
        updated_at: got.updated_at,
        ..input
    };
    assert_eq!(got, expected);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// 2. List filters and pagination.
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_repos_filters_by_visibility_and_pages() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let visible = |v: pb::Visibility, slug: &str| pb::Repo { visibility: v.into(), ..repo(slug) };
    let public = new_repo(&mut cwom, visible(pb::Visibility::Public, "public")).await.id;
    let private = new_repo(&mut cwom, repo("private")).await.id;
    let internal = new_repo(&mut cwom, visible(pb::Visibility::Internal, "internal")).await.id;
    let private2 = new_repo(&mut cwom, visible(pb::Visibility::Private, "private-2")).await.id;
    let list = |request: pb::ListReposRequest| {
        let mut cwom = cwom.clone();
        async move { cwom.list_repos(request).await.map(|r| r.into_inner()) }
    };
    let by = |v: pb::Visibility| pb::ListReposRequest { visibility: v.into(), ..Default::default() };

    let all = ids(&list(pb::ListReposRequest::default()).await.unwrap().repos);
    assert_eq!(all, vec![private2.clone(), internal.clone(), private.clone(), public.clone()], "newest first");
    assert_eq!(ids(&list(by(pb::Visibility::Public)).await.unwrap().repos), vec![public]);
    assert_eq!(ids(&list(by(pb::Visibility::Private)).await.unwrap().repos), vec![private2, private]);
    assert_eq!(ids(&list(by(pb::Visibility::Internal)).await.unwrap().repos), vec![internal]);

    let walked = walk(
        |token| list(pb::ListReposRequest { page_size: 1, page_token: token, ..Default::default() }),
        |r| (ids(&r.repos), r.next_page_token),
    )
    .await;
    assert_eq!(walked, all);

    let first = list(pb::ListReposRequest { page_size: 1, ..by(pb::Visibility::Private) }).await.unwrap();
    assert!(!first.next_page_token.is_empty());
    let reused = list(pb::ListReposRequest { page_token: first.next_page_token, ..by(pb::Visibility::Public) }).await;
    assert_invalid(&reused.unwrap_err(), "page_token");
    assert_invalid(
        &list(pb::ListReposRequest { visibility: 99, ..Default::default() }).await.unwrap_err(),
        "visibility",
    );
    server.stop().await;
}

#[tokio::test]
async fn list_issues_filters_by_repo_status_type_and_priority_and_pages() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let a = new_repo(&mut cwom, repo("repo-a")).await.id;
    let b = new_repo(&mut cwom, repo("repo-b")).await.id;
    let shaped = |repo: &str, t: pb::IssueType, p: pb::Priority| pb::Issue {
        r#type: t.into(),
        priority: p.into(),
        ..issue(repo, "Listed issue")
    };
    use pb::{IssueType as T, Priority as P};
    let i0 = new_issue(&mut cwom, shaped(&a, T::Feature, P::Unspecified)).await.id;
    let i1 = new_issue(&mut cwom, shaped(&a, T::Bug, P::P0)).await.id;
    let i2 = new_issue(&mut cwom, shaped(&b, T::Bug, P::P2)).await.id;
    let i3 = new_issue(&mut cwom, shaped(&b, T::Chore, P::P3)).await.id;
    for (id, status) in [(&i1, Ready), (&i2, Running), (&i3, Ready)] {
        set_issue_status(&mut cwom, id, status).await.unwrap();
    }

    let list = |request: pb::ListIssuesRequest| {
        let mut cwom = cwom.clone();
        async move { cwom.list_issues(request).await.map(|r| r.into_inner()) }
    };
    let found = |request: pb::ListIssuesRequest| async move { ids(&list(request).await.unwrap().issues) };
    let repo_is = |id: &str| pb::ListIssuesRequest { repo_id: id.into(), ..Default::default() };
    let status_is = |s: WorkStatus| pb::ListIssuesRequest { status: s.into(), ..Default::default() };
    let type_is = |t: T| pb::ListIssuesRequest { r#type: t.into(), ..Default::default() };
    let priority_is = |p: P| pb::ListIssuesRequest { priority: p.into(), ..Default::default() };

    let all = found(pb::ListIssuesRequest::default()).await;
    assert_eq!(all, owned(&[&i3, &i2, &i1, &i0]), "newest first");
    assert_eq!(found(repo_is(&a)).await, owned(&[&i1, &i0]));
    assert_eq!(found(repo_is(&b)).await, owned(&[&i3, &i2]));
    assert_eq!(found(status_is(Planned)).await, owned(&[&i0]));
    assert_eq!(found(status_is(Ready)).await, owned(&[&i3, &i1]));
    assert_eq!(found(status_is(Running)).await, owned(&[&i2]));
    assert_eq!(found(status_is(Done)).await, Vec::<String>::new());
    assert_eq!(found(type_is(T::Bug)).await, owned(&[&i2, &i1]));
    assert_eq!(found(type_is(T::Feature)).await, owned(&[&i0]));
    assert_eq!(found(type_is(T::Chore)).await, owned(&[&i3]));
    assert_eq!(found(priority_is(P::P2)).await, owned(&[&i2, &i0]), "P2 is the default");
    assert_eq!(found(priority_is(P::P0)).await, owned(&[&i1]));
    assert_eq!(found(priority_is(P::P3)).await, owned(&[&i3]));
    let combined = pb::ListIssuesRequest { r#type: T::Bug.into(), ..repo_is(&b) };
    assert_eq!(found(combined).await, owned(&[&i2]));

    let walked = walk(
        |token| list(pb::ListIssuesRequest { page_size: 1, page_token: token, ..Default::default() }),
        |r| (ids(&r.issues), r.next_page_token),
    )
    .await;
    assert_eq!(walked, all);
    let bugs = walk(
        |token| list(pb::ListIssuesRequest { page_size: 1, page_token: token, ..type_is(T::Bug) }),
        |r| (ids(&r.issues), r.next_page_token),
    )
    .await;
    assert_eq!(bugs, owned(&[&i2, &i1]));

    let first = list(pb::ListIssuesRequest { page_size: 1, ..type_is(T::Bug) }).await.unwrap();
    let reused = list(pb::ListIssuesRequest { page_token: first.next_page_token, ..type_is(T::Chore) }).await;
    assert_invalid(&reused.unwrap_err(), "page_token");
    assert_invalid(&list(repo_is("not-a-uuid")).await.unwrap_err(), "repo_id");
    server.stop().await;
}

#[tokio::test]
async fn list_context_packets_filters_by_issue_latest_first_and_pages() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (repo, first_issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let other_issue = new_issue(&mut cwom, issue(&repo.id, "Other")).await;
    let mut mine = Vec::new();
    for version in ["v1", "v2", "v3"] {
        mine.push(new_packet(&mut cwom, packet(&first_issue.id, version)).await);
    }
    let theirs = new_packet(&mut cwom, packet(&other_issue.id, "v1")).await;
    assert_eq!(mine.iter().map(|p| p.sequence).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(theirs.sequence, 1, "sequences count per issue");

    let list = |request: pb::ListContextPacketsRequest| {
        let mut cwom = cwom.clone();
        async move { cwom.list_context_packets(request).await.map(|r| r.into_inner()) }
    };
    let of = |issue_id: &str| pb::ListContextPacketsRequest { issue_id: issue_id.into(), ..Default::default() };

    let listed = list(of(&first_issue.id)).await.unwrap().context_packets;
    let shape: Vec<(&str, i32)> = listed.iter().map(|p| (p.version.as_str(), p.sequence)).collect();
    assert_eq!(shape, vec![("v3", 3), ("v2", 2), ("v1", 1)], "newest first: the first is the latest");
    assert_eq!(listed[0], mine[2]);
    assert_eq!(ids(&list(of(&other_issue.id)).await.unwrap().context_packets), vec![theirs.id.clone()]);

    let all = ids(&list(pb::ListContextPacketsRequest::default()).await.unwrap().context_packets);
    assert_eq!(all, owned(&[&theirs.id, &mine[2].id, &mine[1].id, &mine[0].id]));
    let walked = walk(
        |token| list(pb::ListContextPacketsRequest { page_size: 1, page_token: token, ..Default::default() }),
        |r| (ids(&r.context_packets), r.next_page_token),
    )
    .await;
    assert_eq!(walked, all);

    let page = list(pb::ListContextPacketsRequest { page_size: 1, ..of(&first_issue.id) }).await.unwrap();
    let reused = list(pb::ListContextPacketsRequest { page_token: page.next_page_token, ..of(&other_issue.id) }).await;
    assert_invalid(&reused.unwrap_err(), "page_token");
    server.stop().await;
}

#[tokio::test]
async fn list_constraint_snapshots_filters_by_scope_and_owner_and_pages() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    use pb::ConstraintScope as Scope;
    let s0 = new_snapshot(&mut cwom, snapshot(Scope::Personal, "alice")).await.id;
    let s1 = new_snapshot(&mut cwom, snapshot(Scope::Repo, "alice")).await.id;
    let s2 = new_snapshot(&mut cwom, snapshot(Scope::Personal, "bob")).await.id;
    let s3 = new_snapshot(&mut cwom, snapshot(Scope::Org, "carol")).await.id;
    let list = |request: pb::ListConstraintSnapshotsRequest| {
        let mut cwom = cwom.clone();
        async move { cwom.list_constraint_snapshots(request).await.map(|r| r.into_inner()) }
    };
    let found = |request: pb::ListConstraintSnapshotsRequest| async move {
        ids(&list(request).await.unwrap().constraint_snapshots)
    };
    let scope = |s: Scope| pb::ListConstraintSnapshotsRequest { scope: s.into(), ..Default::default() };
    let owner = |o: &str| pb::ListConstraintSnapshotsRequest { owner_id: o.into(), ..Default::default() };

    let all = found(pb::ListConstraintSnapshotsRequest::default()).await;
    assert_eq!(all, owned(&[&s3, &s2, &s1, &s0]), "newest first");
    assert_eq!(found(scope(Scope::Personal)).await, owned(&[&s2, &s0]));
    assert_eq!(found(scope(Scope::Repo)).await, owned(&[&s1]));
    assert_eq!(found(scope(Scope::Org)).await, owned(&[&s3]));
    assert_eq!(found(scope(Scope::System)).await, Vec::<String>::new());
    assert_eq!(found(owner("alice")).await, owned(&[&s1, &s0]));
    assert_eq!(found(owner("carol")).await, owned(&[&s3]));
    assert_eq!(found(owner("nobody")).await, Vec::<String>::new());
    assert_eq!(
        found(pb::ListConstraintSnapshotsRequest { owner_id: "alice".into(), ..scope(Scope::Personal) }).await,
        owned(&[&s0])
    );

    let walked = walk(
        |token| list(pb::ListConstraintSnapshotsRequest { page_size: 1, page_token: token, ..Default::default() }),
        |r| (ids(&r.constraint_snapshots), r.next_page_token),
    )
    .await;
    assert_eq!(walked, all);

    let page = list(pb::ListConstraintSnapshotsRequest { page_size: 1, ..owner("alice") }).await.unwrap();
    let reused = list(pb::ListConstraintSnapshotsRequest { page_token: page.next_page_token, ..owner("bob") }).await;
    assert_invalid(&reused.unwrap_err(), "page_token");
    server.stop().await;
}

#[tokio::test]
async fn list_doctrine_refs_filters_by_namespace_type_and_priority_in_identity_order() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    use pb::{DoctrinePriority as Pri, DoctrineType as Ty};
    let shaped = |ns: &str, name: &str, version: &str, t: Ty, p: Pri| pb::DoctrineRef {
        r#type: t.into(),
        priority: p.into(),
        ..doctrine(ns, name, version)
    };
    // Created out of order on purpose.
    for d in [
        shaped("ops", "deploy", "2", Ty::Policy, Pri::Must),
        shaped("eng", "testing", "1", Ty::Principle, Pri::Unspecified),
        shaped("eng", "review", "1.1", Ty::Procedure, Pri::May),
        shaped("eng", "review", "1.0", Ty::Procedure, Pri::Must),
        shaped("ops", "backup", "1", Ty::Heuristic, Pri::Should),
    ] {
        new_doctrine(&mut cwom, d).await;
    }
    let list = |request: pb::ListDoctrineRefsRequest| {
        let mut cwom = cwom.clone();
        async move { cwom.list_doctrine_refs(request).await.map(|r| r.into_inner()) }
    };
    let triples = |refs: &[pb::DoctrineRef]| -> Vec<String> {
        refs.iter().map(|d| format!("{}/{}@{}", d.namespace, d.name, d.version)).collect()
    };
    let found =
        |request: pb::ListDoctrineRefsRequest| async move { triples(&list(request).await.unwrap().doctrine_refs) };
    let namespace = |ns: &str| pb::ListDoctrineRefsRequest { namespace: ns.into(), ..Default::default() };
    let of_type = |t: Ty| pb::ListDoctrineRefsRequest { r#type: t.into(), ..Default::default() };
    let priority = |p: Pri| pb::ListDoctrineRefsRequest { priority: p.into(), ..Default::default() };

    let all = found(pb::ListDoctrineRefsRequest::default()).await;
    assert_eq!(all, ["eng/review@1.0", "eng/review@1.1", "eng/testing@1", "ops/backup@1", "ops/deploy@2"]);
    assert_eq!(found(namespace("eng")).await, ["eng/review@1.0", "eng/review@1.1", "eng/testing@1"]);
    assert_eq!(found(namespace("ops")).await, ["ops/backup@1", "ops/deploy@2"]);
    assert_eq!(found(namespace("legal")).await, Vec::<String>::new());
    assert_eq!(found(of_type(Ty::Procedure)).await, ["eng/review@1.0", "eng/review@1.1"]);
    assert_eq!(found(of_type(Ty::Principle)).await, ["eng/testing@1"]);
    assert_eq!(found(of_type(Ty::Pattern)).await, Vec::<String>::new());
    assert_eq!(found(priority(Pri::Must)).await, ["eng/review@1.0", "ops/deploy@2"]);
    assert_eq!(found(priority(Pri::Should)).await, ["eng/testing@1", "ops/backup@1"], "SHOULD is the default");
    assert_eq!(found(priority(Pri::May)).await, ["eng/review@1.1"]);
    assert_eq!(
        found(pb::ListDoctrineRefsRequest { priority: Pri::Must.into(), ..namespace("ops") }).await,
        ["ops/deploy@2"]
    );

    let walked = walk(
        |token| list(pb::ListDoctrineRefsRequest { page_size: 1, page_token: token, ..Default::default() }),
        |r| (triples(&r.doctrine_refs), r.next_page_token),
    )
    .await;
    assert_eq!(walked, all);
    let eng = walk(
        |token| list(pb::ListDoctrineRefsRequest { page_size: 1, page_token: token, ..namespace("eng") }),
        |r| (triples(&r.doctrine_refs), r.next_page_token),
    )
    .await;
    assert_eq!(eng, ["eng/review@1.0", "eng/review@1.1", "eng/testing@1"]);

    let page = list(pb::ListDoctrineRefsRequest { page_size: 1, ..namespace("eng") }).await.unwrap();
    let reused = list(pb::ListDoctrineRefsRequest { page_token: page.next_page_token, ..namespace("ops") }).await;
    assert_invalid(&reused.unwrap_err(), "page_token");
    server.stop().await;
}

#[tokio::test]
async fn list_runs_filters_by_issue_repo_status_and_mode_and_pages() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (repo_a, a1) = repo_and_issue(&mut cwom, "repo-a").await;
    let a2 = new_issue(&mut cwom, issue(&repo_a.id, "Second in A")).await;
    let (repo_b, b1) = repo_and_issue(&mut cwom, "repo-b").await;
    use pb::RunMode as M;
    let shaped = |issue_id: &str, mode: M, status: WorkStatus| pb::Run {
        mode: mode.into(),
        status: status.into(),
        ..run(issue_id)
    };
    let r0 = new_run(&mut cwom, shaped(&a1.id, M::Agent, Unspecified)).await.id;
    let r1 = new_run(&mut cwom, shaped(&a1.id, M::Human, Running)).await.id;
    let r2 = new_run(&mut cwom, shaped(&a2.id, M::Agent, Running)).await.id;
    let r3 = new_run(&mut cwom, shaped(&b1.id, M::System, Planned)).await.id;
    set_run_status(&mut cwom, &r3, Canceled).await.unwrap();

    let list = |request: pb::ListRunsRequest| {
        let mut cwom = cwom.clone();
        async move { cwom.list_runs(request).await.map(|r| r.into_inner()) }
    };
    let found = |request: pb::ListRunsRequest| async move { ids(&list(request).await.unwrap().runs) };
    let issue_is = |id: &str| pb::ListRunsRequest { issue_id: id.into(), ..Default::default() };
    let repo_is = |id: &str| pb::ListRunsRequest { repo_id: id.into(), ..Default::default() };
    let status_is = |s: WorkStatus| pb::ListRunsRequest { status: s.into(), ..Default::default() };
    let mode_is = |m: M| pb::ListRunsRequest { mode: m.into(), ..Default::default() };

    let all = found(pb::ListRunsRequest::default()).await;
    assert_eq!(all, owned(&[&r3, &r2, &r1, &r0]), "newest first");
    assert_eq!(found(issue_is(&a1.id)).await, owned(&[&r1, &r0]));
    assert_eq!(found(issue_is(&a2.id)).await, owned(&[&r2]));
    assert_eq!(found(repo_is(&repo_a.id)).await, owned(&[&r2, &r1, &r0]));
    assert_eq!(found(repo_is(&repo_b.id)).await, owned(&[&r3]));
    assert_eq!(found(status_is(Planned)).await, owned(&[&r0]));
    assert_eq!(found(status_is(Running)).await, owned(&[&r2, &r1]));
    assert_eq!(found(status_is(Canceled)).await, owned(&[&r3]));
    assert_eq!(found(mode_is(M::Agent)).await, owned(&[&r2, &r0]));
    assert_eq!(found(mode_is(M::Human)).await, owned(&[&r1]));
    assert_eq!(found(mode_is(M::System)).await, owned(&[&r3]));
    assert_eq!(found(mode_is(M::Hybrid)).await, Vec::<String>::new());
    assert_eq!(found(pb::ListRunsRequest { mode: M::Agent.into(), ..issue_is(&a1.id) }).await, owned(&[&r0]));

    let walked = walk(
        |token| list(pb::ListRunsRequest { page_size: 1, page_token: token, ..Default::default() }),
        |r| (ids(&r.runs), r.next_page_token),
    )
    .await;
    assert_eq!(walked, all);

    let page = list(pb::ListRunsRequest { page_size: 1, ..repo_is(&repo_a.id) }).await.unwrap();
    let reused = list(pb::ListRunsRequest { page_token: page.next_page_token, ..repo_is(&repo_b.id) }).await;
    assert_invalid(&reused.unwrap_err(), "page_token");
    assert_invalid(&list(issue_is("nope")).await.unwrap_err(), "issue_id");
    server.stop().await;
}

#[tokio::test]
async fn list_artifacts_filters_by_run_issue_and_type_and_pages() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (repo, first_issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let second_issue = new_issue(&mut cwom, issue(&repo.id, "Second")).await;
    let run1 = new_run(&mut cwom, run(&first_issue.id)).await.id;
    let run2 = new_run(&mut cwom, run(&second_issue.id)).await.id;
    use pb::ArtifactType as A;
    let typed = |run_id: &str, t: A| pb::Artifact { r#type: t.into(), ..artifact(run_id) };
    let x0 = new_artifact(&mut cwom, typed(&run1, A::Log)).await.id;
    let x1 = new_artifact(&mut cwom, typed(&run1, A::Report)).await.id;
    let x2 = new_artifact(&mut cwom, typed(&run2, A::Log)).await.id;
    let explicit = pb::Artifact { for_issue: Some(to(ObjectKind::Issue, &second_issue.id)), ..typed(&run2, A::Pr) };
    let x3 = new_artifact(&mut cwom, explicit).await.id;

    let list = |request: pb::ListArtifactsRequest| {
        let mut cwom = cwom.clone();
        async move { cwom.list_artifacts(request).await.map(|r| r.into_inner()) }
    };
    let found = |request: pb::ListArtifactsRequest| async move { ids(&list(request).await.unwrap().artifacts) };
    let run_is = |id: &str| pb::ListArtifactsRequest { run_id: id.into(), ..Default::default() };
    let issue_is = |id: &str| pb::ListArtifactsRequest { issue_id: id.into(), ..Default::default() };
    let type_is = |t: A| pb::ListArtifactsRequest { r#type: t.into(), ..Default::default() };

    let all = found(pb::ListArtifactsRequest::default()).await;
    assert_eq!(all, owned(&[&x3, &x2, &x1, &x0]), "newest first");
    assert_eq!(found(run_is(&run1)).await, owned(&[&x1, &x0]));
    assert_eq!(found(run_is(&run2)).await, owned(&[&x3, &x2]));
    assert_eq!(found(issue_is(&first_issue.id)).await, owned(&[&x1, &x0]));
    assert_eq!(found(issue_is(&second_issue.id)).await, owned(&[&x3, &x2]));
    assert_eq!(found(type_is(A::Log)).await, owned(&[&x2, &x0]));
    assert_eq!(found(type_is(A::Report)).await, owned(&[&x1]));
    assert_eq!(found(type_is(A::Pr)).await, owned(&[&x3]));
    assert_eq!(found(type_is(A::Binary)).await, Vec::<String>::new());
    assert_eq!(found(pb::ListArtifactsRequest { r#type: A::Log.into(), ..run_is(&run1) }).await, owned(&[&x0]));

    let walked = walk(
        |token| list(pb::ListArtifactsRequest { page_size: 1, page_token: token, ..Default::default() }),
        |r| (ids(&r.artifacts), r.next_page_token),
    )
    .await;
    assert_eq!(walked, all);

    let page = list(pb::ListArtifactsRequest { page_size: 1, ..run_is(&run1) }).await.unwrap();
    let reused = list(pb::ListArtifactsRequest { page_token: page.next_page_token, ..run_is(&run2) }).await;
    assert_invalid(&reused.unwrap_err(), "page_token");
    assert_invalid(&list(pb::ListArtifactsRequest { r#type: 99, ..Default::default() }).await.unwrap_err(), "type");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Join tables.
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_context_packet_links_it_to_its_issue() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let p1 = new_packet(&mut cwom, packet(&issue.id, "v1")).await;
    let p2 = new_packet(&mut cwom, packet(&issue.id, "v2")).await;
    let got = cwom.get_issue(get(&issue.id)).await.unwrap().into_inner();
    assert_eq!(got.context_packets, vec![to(ObjectKind::ContextPacket, &p1.id), to(ObjectKind::ContextPacket, &p2.id)]);
    let rows = format!("SELECT COUNT(*) FROM cwom_issue_context_packets WHERE issue_id = '{}'", issue.id);
    assert_eq!(server.count(&rows).await, 2);
    let linked: Vec<_> = audit_of(&mut audit, &issue.id).await.into_iter().filter(|e| e.action == "linked").collect();
    assert_eq!(linked.len(), 2);
    assert_eq!(json_of(linked[0].after.as_ref()), json!({"linked_kind": "ContextPacket", "linked_id": p1.id}));
    server.stop().await;
}

#[tokio::test]
async fn issue_doctrine_refs_are_linked_and_unlinked() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let d1 = new_doctrine(&mut cwom, doctrine("eng", "testing", "1")).await.id;
    let d2 = new_doctrine(&mut cwom, doctrine("eng", "review", "1")).await.id;
    let rows = format!("SELECT COUNT(*) FROM cwom_issue_doctrine_refs WHERE issue_id = '{}'", issue.id);

    let linked = cwom.link_issue_doctrine_ref(link(&issue.id, &d1)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&linked.doctrine_refs), vec![d1.clone()]);
    let linked = cwom.link_issue_doctrine_ref(link(&issue.id, &d2)).await.unwrap().into_inner();
    assert_eq!(linked.doctrine_refs, vec![to(ObjectKind::DoctrineRef, &d1), to(ObjectKind::DoctrineRef, &d2)]);
    let again = cwom.link_issue_doctrine_ref(link(&issue.id, &d1)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&again.doctrine_refs), vec![d1.clone(), d2.clone()], "linking twice is harmless");
    assert_eq!(server.count(&rows).await, 2);
    let got = cwom.get_issue(get(&issue.id)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&got.doctrine_refs), vec![d1.clone(), d2.clone()]);

    let unlinked = cwom.unlink_issue_doctrine_ref(link(&issue.id, &d1)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&unlinked.doctrine_refs), vec![d2.clone()]);
    assert_eq!(server.count(&rows).await, 1);
    let got = cwom.get_issue(get(&issue.id)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&got.doctrine_refs), vec![d2.clone()]);
    assert_eq!(actions(&audit_of(&mut audit, &issue.id).await), ["created", "linked", "linked", "unlinked"]);

    let missing = cwom.link_issue_doctrine_ref(link(&issue.id, &unknown_id())).await.unwrap_err();
    assert_not_found(&missing, "target_id");
    let no_issue = cwom.link_issue_doctrine_ref(link(&unknown_id(), &d1)).await.unwrap_err();
    assert_eq!(no_issue.code(), Code::NotFound);
    assert_invalid(&cwom.link_issue_doctrine_ref(link(&issue.id, "nope")).await.unwrap_err(), "target_id");
    server.stop().await;
}

#[tokio::test]
async fn issue_constraint_snapshots_are_linked_and_unlinked() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let s1 = new_snapshot(&mut cwom, snapshot(pb::ConstraintScope::Personal, "alice")).await.id;
    let s2 = new_snapshot(&mut cwom, snapshot(pb::ConstraintScope::Repo, "alice")).await.id;
    let rows = format!("SELECT COUNT(*) FROM cwom_issue_constraint_snapshots WHERE issue_id = '{}'", issue.id);

    cwom.link_issue_constraint_snapshot(link(&issue.id, &s1)).await.unwrap();
    let linked = cwom.link_issue_constraint_snapshot(link(&issue.id, &s2)).await.unwrap().into_inner();
    assert_eq!(
        linked.constraints,
        vec![to(ObjectKind::ConstraintSnapshot, &s1), to(ObjectKind::ConstraintSnapshot, &s2)]
    );
    assert_eq!(server.count(&rows).await, 2);
    let got = cwom.get_issue(get(&issue.id)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&got.constraints), vec![s1.clone(), s2.clone()]);

    let unlinked = cwom.unlink_issue_constraint_snapshot(link(&issue.id, &s2)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&unlinked.constraints), vec![s1.clone()]);
    assert_eq!(server.count(&rows).await, 1);
    let got = cwom.get_issue(get(&issue.id)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&got.constraints), vec![s1.clone()]);
    let events = audit_of(&mut audit, &issue.id).await;
    assert_eq!(actions(&events), ["created", "linked", "linked", "unlinked"]);
    assert_eq!(json_of(events[3].before.as_ref()), json!({"linked_kind": "ConstraintSnapshot", "linked_id": s2}));

    let missing = cwom.link_issue_constraint_snapshot(link(&issue.id, &unknown_id())).await.unwrap_err();
    assert_not_found(&missing, "target_id");
    server.stop().await;
}

#[tokio::test]
async fn run_inputs_are_written_to_the_run_join_tables() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let p1 = new_packet(&mut cwom, packet(&issue.id, "v1")).await.id;
    let p2 = new_packet(&mut cwom, packet(&issue.id, "v2")).await.id;
    let d1 = new_doctrine(&mut cwom, doctrine("eng", "testing", "1")).await.id;
    let s1 = new_snapshot(&mut cwom, snapshot(pb::ConstraintScope::Run, "agent-7")).await.id;
    let inputs = pb::RunInputs {
        context_packets: vec![to(ObjectKind::ContextPacket, &p1), to(ObjectKind::ContextPacket, &p2)],
        doctrine_refs: vec![to(ObjectKind::DoctrineRef, &d1)],
        constraint_snapshot: Some(to(ObjectKind::ConstraintSnapshot, &s1)),
    };
    let created = new_run(&mut cwom, pb::Run { inputs: Some(inputs.clone()), ..run(&issue.id) }).await;
    let got = cwom.get_run(get(&created.id)).await.unwrap().into_inner();
    assert_eq!(got.inputs, Some(inputs));

    let packets = format!("SELECT COUNT(*) FROM cwom_run_context_packets WHERE run_id = '{}'", created.id);
    assert_eq!(server.count(&packets).await, 2);
    let packet_p2 = format!("{packets} AND context_packet_id = '{p2}'");
    assert_eq!(server.count(&packet_p2).await, 1);
    let doctrine = format!("SELECT COUNT(*) FROM cwom_run_doctrine_refs WHERE run_id = '{}'", created.id);
    assert_eq!(server.count(&doctrine).await, 1);
    assert_eq!(server.count(&format!("{doctrine} AND doctrine_ref_id = '{d1}'")).await, 1);
    assert_eq!(actions(&audit_of(&mut audit, &created.id).await), ["created", "linked", "linked", "linked"]);
    server.stop().await;
}

#[tokio::test]
async fn context_packet_doctrine_refs_are_written_to_their_join_table() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let d1 = new_doctrine(&mut cwom, doctrine("eng", "testing", "1")).await.id;
    let d2 = new_doctrine(&mut cwom, doctrine("eng", "review", "1")).await.id;
    let refs = vec![to(ObjectKind::DoctrineRef, &d1), to(ObjectKind::DoctrineRef, &d2)];
    let created =
        new_packet(&mut cwom, pb::ContextPacket { doctrine_refs: refs.clone(), ..packet(&issue.id, "v1") }).await;
    let got = cwom.get_context_packet(get(&created.id)).await.unwrap().into_inner();
    assert_eq!(got.doctrine_refs, refs);
    let rows =
        format!("SELECT COUNT(*) FROM cwom_context_packet_doctrine_refs WHERE context_packet_id = '{}'", created.id);
    assert_eq!(server.count(&rows).await, 2);

    // A ref named twice is linked once.
    let twice = vec![to(ObjectKind::DoctrineRef, &d2), to(ObjectKind::DoctrineRef, &d2)];
    let second = new_packet(&mut cwom, pb::ContextPacket { doctrine_refs: twice, ..packet(&issue.id, "v2") }).await;
    let got = cwom.get_context_packet(get(&second.id)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&got.doctrine_refs), vec![d2.clone()]);
    assert_eq!(server.count("SELECT COUNT(*) FROM cwom_context_packet_doctrine_refs").await, 3);
    server.stop().await;
}

#[tokio::test]
async fn issues_list_their_runs_and_runs_list_their_artifacts() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (repo, mine) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let other = new_issue(&mut cwom, issue(&repo.id, "Other")).await;
    let r1 = new_run(&mut cwom, run(&mine.id)).await.id;
    let elsewhere = new_run(&mut cwom, run(&other.id)).await.id;
    let r2 = new_run(&mut cwom, run(&mine.id)).await.id;
    let got = cwom.get_issue(get(&mine.id)).await.unwrap().into_inner();
    assert_eq!(got.runs, vec![to(ObjectKind::Run, &r1), to(ObjectKind::Run, &r2)], "oldest first");
    let got = cwom.get_issue(get(&other.id)).await.unwrap().into_inner();
    assert_eq!(ref_ids(&got.runs), vec![elsewhere.clone()]);
    let listed = cwom.list_issues(pb::ListIssuesRequest::default()).await.unwrap().into_inner().issues;
    let listed_mine = listed.iter().find(|i| i.id == mine.id).unwrap();
    assert_eq!(ref_ids(&listed_mine.runs), vec![r1.clone(), r2.clone()]);

    let a1 = new_artifact(&mut cwom, artifact(&r1)).await.id;
    let a2 = new_artifact(&mut cwom, pb::Artifact { r#type: pb::ArtifactType::Trace.into(), ..artifact(&r1) }).await.id;
    let outputs = cwom.get_run(get(&r1)).await.unwrap().into_inner().outputs.unwrap();
    assert_eq!(outputs.artifacts, vec![to(ObjectKind::Artifact, &a1), to(ObjectKind::Artifact, &a2)]);
    let outputs = cwom.get_run(get(&r2)).await.unwrap().into_inner().outputs.unwrap();
    assert!(outputs.artifacts.is_empty());
    let listed = cwom.list_runs(pb::ListRunsRequest { issue_id: mine.id.clone(), ..Default::default() }).await;
    let listed = listed.unwrap().into_inner().runs;
    let listed_r1 = listed.iter().find(|r| r.id == r1).unwrap();
    assert_eq!(ref_ids(&listed_r1.outputs.as_ref().unwrap().artifacts), vec![a1, a2]);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Immutability.
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn context_packets_are_immutable_through_the_api_and_around_it() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let original = new_packet(&mut cwom, packet(&issue.id, "v1")).await;
    let changed = pb::ContextPacket { summary: "rewritten history".into(), ..original.clone() };
    let refused = cwom.update_context_packet(pb::UpdateContextPacketRequest { context_packet: Some(changed) }).await;
    assert_precondition(&refused.unwrap_err(), "IMMUTABILITY_VIOLATION");

    for sql in [
        "UPDATE cwom_context_packets SET summary = 'x'".to_owned(),
        format!("UPDATE cwom_context_packets SET version = 'v9' WHERE id = '{}'", original.id),
        "DELETE FROM cwom_context_packets".to_owned(),
        format!("DELETE FROM cwom_context_packets WHERE id = '{}'", original.id),
    ] {
        let err = server.sql(&sql).await.expect_err(&sql);
        assert!(err.to_string().contains("IMMUTABILITY_VIOLATION"), "{sql}: {err}");
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM cwom_context_packets").await, 1);
    assert_eq!(cwom.get_context_packet(get(&original.id)).await.unwrap().into_inner(), original);
    server.stop().await;
}

#[tokio::test]
async fn constraint_snapshots_are_immutable_through_the_api_and_around_it() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let original = new_snapshot(&mut cwom, snapshot(pb::ConstraintScope::Personal, "alice")).await;
    let changed = pb::ConstraintSnapshot { owner: Some(human("mallory")), ..original.clone() };
    let request = pb::UpdateConstraintSnapshotRequest { constraint_snapshot: Some(changed) };
    assert_precondition(&cwom.update_constraint_snapshot(request).await.unwrap_err(), "IMMUTABILITY_VIOLATION");

    for sql in [
        "UPDATE cwom_constraint_snapshots SET owner_id = 'mallory'".to_owned(),
        format!("UPDATE cwom_constraint_snapshots SET scope = 'org' WHERE id = '{}'", original.id),
        "DELETE FROM cwom_constraint_snapshots".to_owned(),
        format!("DELETE FROM cwom_constraint_snapshots WHERE id = '{}'", original.id),
    ] {
        let err = server.sql(&sql).await.expect_err(&sql);
        assert!(err.to_string().contains("IMMUTABILITY_VIOLATION"), "{sql}: {err}");
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM cwom_constraint_snapshots").await, 1);
    assert_eq!(cwom.get_constraint_snapshot(get(&original.id)).await.unwrap().into_inner(), original);
    server.stop().await;
}

/// Immutability must hold for every statement that rewrites a row, not only a plain UPDATE or DELETE: an upsert
/// updates the row, and SQLite's `INSERT OR REPLACE` deletes it and inserts the new one (its DELETE triggers fire
/// only with `PRAGMA recursive_triggers`).
#[tokio::test]
async fn rewriting_an_immutable_row_by_replace_or_upsert_is_refused() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let context = new_packet(&mut cwom, packet(&issue.id, "v1")).await;
    let limits = new_snapshot(&mut cwom, snapshot(pb::ConstraintScope::Personal, "alice")).await;
    let packet_columns = "id, issue_id, version, sequence, summary, inputs, assumptions, open_questions, instructions, \
                          constraint_snapshot_id, tags, meta, trace_id, created_at";
    let snapshot_columns = "id, scope, captured_at, owner, owner_id, constraints, tags, meta, trace_id";
    let mut statements = vec![
        format!(
            "INSERT INTO cwom_context_packets ({packet_columns}) SELECT {packet_columns} FROM cwom_context_packets \
             WHERE id = '{}' ON CONFLICT (id) DO UPDATE SET summary = 'rewritten'",
            context.id
        ),
        format!(
            "INSERT INTO cwom_constraint_snapshots ({snapshot_columns}) SELECT {snapshot_columns} \
             FROM cwom_constraint_snapshots WHERE id = '{}' ON CONFLICT (id) DO UPDATE SET owner_id = 'mallory'",
            limits.id
        ),
    ];
    if postgres_admin_url().is_none() {
        let rewritten_packet = packet_columns.replace("summary", "'rewritten'");
        let rewritten_snapshot = snapshot_columns.replace("scope", "'org'").replace("owner_id", "'mallory'");
        statements.push(format!(
            "INSERT OR REPLACE INTO cwom_context_packets ({packet_columns}) SELECT {rewritten_packet} \
             FROM cwom_context_packets WHERE id = '{}'",
            context.id
        ));
        statements.push(format!(
            "INSERT OR REPLACE INTO cwom_constraint_snapshots ({snapshot_columns}) SELECT {rewritten_snapshot} \
             FROM cwom_constraint_snapshots WHERE id = '{}'",
            limits.id
        ));
    }
    let mut problems = Vec::new();
    for sql in &statements {
        match server.sql(sql).await {
            Err(err) if err.to_string().contains("IMMUTABILITY_VIOLATION") => {}
            other => problems.push(format!("{sql}\n  -> {other:?}")),
        }
    }
    let packet_now = cwom.get_context_packet(get(&context.id)).await.unwrap().into_inner();
    if packet_now != context {
        problems.push(format!("the context packet changed: {packet_now:?}"));
    }
    let snapshot_now = cwom.get_constraint_snapshot(get(&limits.id)).await.unwrap().into_inner();
    if snapshot_now != limits {
        problems.push(format!("the constraint snapshot changed: {snapshot_now:?}"));
    }
    assert!(
        problems.is_empty(),
        "immutable rows were rewritten or refused for another reason:\n{}",
        problems.join("\n")
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Unique rules.
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_repo_slug_is_unique() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    new_repo(&mut cwom, repo("acme-widgets")).await;
    let again = pb::Repo { name: "Another name".into(), ..repo("acme-widgets") };
    let status = cwom.create_repo(pb::CreateRepoRequest { repo: Some(again) }).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert!(status.message().contains("acme-widgets"), "{}", status.message());
    assert_eq!(server.count("SELECT COUNT(*) FROM cwom_repos").await, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_log WHERE entity_kind = 'Repo'").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_doctrine_ref_triple_is_unique() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    new_doctrine(&mut cwom, doctrine("eng", "testing", "1.0")).await;
    let again = pb::CreateDoctrineRefRequest { doctrine_ref: Some(doctrine("eng", "testing", "1.0")) };
    let status = cwom.create_doctrine_ref(again).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert_eq!(status.message(), "DoctrineRef 'eng/testing@1.0' already exists");
    new_doctrine(&mut cwom, doctrine("eng", "testing", "1.1")).await;
    new_doctrine(&mut cwom, doctrine("ops", "testing", "1.0")).await;
    new_doctrine(&mut cwom, doctrine("eng", "review", "1.0")).await;
    assert_eq!(server.count("SELECT COUNT(*) FROM cwom_doctrine_refs").await, 4);
    server.stop().await;
}

#[tokio::test]
async fn a_context_packet_version_is_unique_per_issue() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (repo, first) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let second = new_issue(&mut cwom, issue(&repo.id, "Second")).await;
    new_packet(&mut cwom, packet(&first.id, "v1")).await;
    let again = pb::CreateContextPacketRequest { context_packet: Some(packet(&first.id, "v1")) };
    let status = cwom.create_context_packet(again).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert!(status.message().contains("'v1'"), "{}", status.message());
    let reused = new_packet(&mut cwom, packet(&second.id, "v1")).await;
    assert_eq!(reused.sequence, 1, "another issue may reuse the version");
    let next = new_packet(&mut cwom, packet(&first.id, "v2")).await;
    assert_eq!(next.sequence, 2, "the refused packet took no sequence number");
    assert_eq!(server.count("SELECT COUNT(*) FROM cwom_context_packets").await, 3);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// 6. Status machines.
// ---------------------------------------------------------------------------------------------------------------

const ALL_STATUSES: [WorkStatus; 8] = [Planned, Ready, Running, Blocked, Done, Failed, Canceled, UnderReview];

/// The legal issue transitions, as src/store/cwom/status.rs documents them.
const ISSUE_EDGES: &[(WorkStatus, WorkStatus)] = &[
    (Planned, Ready),
    (Planned, Running),
    (Planned, Blocked),
    (Planned, Canceled),
    (Ready, Running),
    (Ready, Blocked),
    (Ready, Canceled),
    (Running, Done),
    (Running, Failed),
    (Running, Blocked),
    (Running, Canceled),
    (Blocked, Ready),
    (Blocked, Running),
    (Blocked, Canceled),
    (Done, UnderReview),
    (UnderReview, Done),
    (UnderReview, Failed),
];

/// Walks from PLANNED that together take every legal issue transition.
const ISSUE_WALKS: &[&[WorkStatus]] = &[
    &[Ready, Running, Blocked, Running, Done, UnderReview, Done, UnderReview, Failed],
    &[Running, Failed],
    &[Blocked, Ready, Blocked, Canceled],
    &[Canceled],
    &[Ready, Canceled],
    &[Running, Canceled],
];

/// The legal run transitions.
const RUN_EDGES: &[(WorkStatus, WorkStatus)] = &[
    (Planned, Running),
    (Planned, Canceled),
    (Running, Done),
    (Running, Failed),
    (Running, Canceled),
    (Done, UnderReview),
    (Failed, UnderReview),
    (UnderReview, Done),
    (UnderReview, Failed),
];

const RUN_WALKS: &[&[WorkStatus]] =
    &[&[Running, Done, UnderReview, Failed, UnderReview, Done], &[Running, Failed], &[Canceled], &[Running, Canceled]];

/// The (from, to) pairs a walk from PLANNED takes.
fn edges_of(walk: &[WorkStatus]) -> Vec<(WorkStatus, WorkStatus)> {
    std::iter::once(Planned).chain(walk.iter().copied()).zip(walk.iter().copied()).collect()
}

#[track_caller]
fn assert_walks_cover(walks: &[&[WorkStatus]], edges: &[(WorkStatus, WorkStatus)]) {
    let walked: HashSet<_> = walks.iter().flat_map(|w| edges_of(w)).collect();
    let legal: HashSet<_> = edges.iter().copied().collect();
    assert_eq!(walked, legal, "the walks take exactly the legal transitions");
}

/// Each status change left one `status_changed` entry {status: from} -> {status: to}, and nothing else was written.
async fn assert_status_audit(audit: &mut Audit, kind: &str, id: &str, walk: &[WorkStatus]) {
    let events = audit_of(audit, id).await;
    let changes: Vec<_> = events.iter().filter(|e| e.action == "status_changed").collect();
    assert_eq!(events.len(), 1 + changes.len(), "only the created entry besides: {:?}", actions(&events));
    let recorded: Vec<_> = changes
        .iter()
        .map(|e| (json_of(e.before.as_ref()), json_of(e.after.as_ref()), e.entity_kind.as_str()))
        .collect();
    let expected: Vec<_> = edges_of(walk)
        .into_iter()
        .map(|(from, to)| (json!({"status": name(from)}), json!({"status": name(to)}), kind))
        .collect();
    assert_eq!(recorded, expected, "{kind} {id}");
}

#[tokio::test]
async fn every_legal_issue_transition_succeeds_with_one_audit_entry() {
    assert_walks_cover(ISSUE_WALKS, ISSUE_EDGES);
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let repo = new_repo(&mut cwom, repo("acme-widgets")).await;
    for walk in ISSUE_WALKS {
        let id = new_issue(&mut cwom, issue(&repo.id, "Walks its status machine")).await.id;
        for &step in *walk {
            let moved =
                set_issue_status(&mut cwom, &id, step).await.unwrap_or_else(|e| panic!("{walk:?} {step:?}: {e:?}"));
            assert_eq!(moved.status(), step);
        }
        let last = *walk.last().unwrap();
        let unchanged = set_issue_status(&mut cwom, &id, last).await.expect("the same status is a no-op");
        assert_eq!(unchanged.status(), last);
        assert_status_audit(&mut audit, "Issue", &id, walk).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn illegal_issue_transitions_are_refused_naming_both_states() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let repo = new_repo(&mut cwom, repo("acme-widgets")).await;
    let path_to = |s: WorkStatus| -> &'static [WorkStatus] {
        match s {
            Planned => &[],
            Ready => &[Ready],
            Running => &[Running],
            Blocked => &[Blocked],
            Done => &[Running, Done],
            Failed => &[Running, Failed],
            Canceled => &[Canceled],
            UnderReview => &[Running, Done, UnderReview],
            Unspecified => unreachable!(),
        }
    };
    for from in ALL_STATUSES {
        let id = new_issue(&mut cwom, issue(&repo.id, "Refuses illegal moves")).await.id;
        for &step in path_to(from) {
            set_issue_status(&mut cwom, &id, step).await.unwrap();
        }
        let entries = audit_of(&mut audit, &id).await.len();
        for to in ALL_STATUSES.into_iter().filter(|&to| to != from && !ISSUE_EDGES.contains(&(from, to))) {
            let status = set_issue_status(&mut cwom, &id, to).await.expect_err("an illegal transition");
            assert_precondition(&status, "INVALID_TRANSITION");
            let message = format!("Issue status cannot change from {} to {}", name(from), name(to));
            assert_eq!(status.message(), message);
        }
        assert_eq!(cwom.get_issue(get(&id)).await.unwrap().into_inner().status(), from);
        assert_eq!(audit_of(&mut audit, &id).await.len(), entries, "a refusal writes nothing");
    }

    // The sample named in the model, spelled out.
    let id = new_issue(&mut cwom, issue(&repo.id, "Sample")).await.id;
    assert_eq!(
        set_issue_status(&mut cwom, &id, Done).await.unwrap_err().message(),
        "Issue status cannot change from planned to done"
    );
    set_issue_status(&mut cwom, &id, Running).await.unwrap();
    set_issue_status(&mut cwom, &id, Done).await.unwrap();
    assert_eq!(
        set_issue_status(&mut cwom, &id, Running).await.unwrap_err().message(),
        "Issue status cannot change from done to running"
    );
    let unspecified = set_issue_status(&mut cwom, &id, Unspecified).await.unwrap_err();
    assert_invalid(&unspecified, "status");
    server.stop().await;
}

#[tokio::test]
async fn every_legal_run_transition_succeeds_with_one_audit_entry() {
    assert_walks_cover(RUN_WALKS, RUN_EDGES);
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    for walk in RUN_WALKS {
        let id = new_run(&mut cwom, run(&issue.id)).await.id;
        for &step in *walk {
            let moved =
                set_run_status(&mut cwom, &id, step).await.unwrap_or_else(|e| panic!("{walk:?} {step:?}: {e:?}"));
            assert_eq!(moved.status(), step);
        }
        let last = *walk.last().unwrap();
        assert_eq!(cwom.get_run(get(&id)).await.unwrap().into_inner().status(), last);
        set_run_status(&mut cwom, &id, last).await.expect("the same status is a no-op");
        assert_status_audit(&mut audit, "Run", &id, walk).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn illegal_run_transitions_are_refused_naming_both_states() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let (_, issue) = repo_and_issue(&mut cwom, "acme-widgets").await;
    // A run never reaches READY or BLOCKED.
    let reachable: [(WorkStatus, &[WorkStatus]); 6] = [
        (Planned, &[]),
        (Running, &[Running]),
        (Done, &[Running, Done]),
        (Failed, &[Running, Failed]),
        (Canceled, &[Canceled]),
        (UnderReview, &[Running, Done, UnderReview]),
    ];
    for (from, path) in reachable {
        let id = new_run(&mut cwom, run(&issue.id)).await.id;
        for &step in path {
            set_run_status(&mut cwom, &id, step).await.unwrap();
        }
        let entries = audit_of(&mut audit, &id).await.len();
        for to in ALL_STATUSES.into_iter().filter(|&to| to != from && !RUN_EDGES.contains(&(from, to))) {
            let status = set_run_status(&mut cwom, &id, to).await.expect_err("an illegal transition");
            assert_precondition(&status, "INVALID_TRANSITION");
            assert_eq!(status.message(), format!("Run status cannot change from {} to {}", name(from), name(to)));
        }
        assert_eq!(cwom.get_run(get(&id)).await.unwrap().into_inner().status(), from);
        assert_eq!(audit_of(&mut audit, &id).await.len(), entries, "a refusal writes nothing");
    }
    let id = new_run(&mut cwom, run(&issue.id)).await.id;
    assert_eq!(
        set_run_status(&mut cwom, &id, Done).await.unwrap_err().message(),
        "Run status cannot change from planned to done"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// 7. Validation and references.
// ---------------------------------------------------------------------------------------------------------------

/// A validation case: the field the error must name, and the change to a valid object that breaks it.
type Case<T> = (&'static str, fn(&mut T));

const REPO_CASES: &[Case<pb::Repo>] = &[
    ("repo.name", |r| r.name = String::new()),
    ("repo.name", |r| r.name = long(257)),
    ("repo.slug", |r| r.slug = String::new()),
    ("repo.slug", |r| r.slug = long(257)),
    ("repo.default_branch", |r| r.default_branch = long(129)),
    ("repo.source.system", |r| r.source = Some(pb::Source::default())),
    ("repo.owners[0].actor_id", |r| r.owners = vec![human("")]),
    ("repo.owners[1].actor_kind", |r| r.owners = vec![human("a"), pb::Actor { actor_kind: 0, ..human("b") }]),
    ("repo.policy.secrets_profile", |r| {
        r.policy = Some(pb::RepoPolicy { secrets_profile: long(65), ..Default::default() })
    }),
    ("repo.visibility", |r| r.visibility = 99),
];

const ISSUE_CASES: &[Case<pb::Issue>] = &[
    ("issue.title", |i| i.title = String::new()),
    ("issue.title", |i| i.title = long(513)),
    ("issue.description", |i| i.description = long(16_001)),
    ("issue.type", |i| i.r#type = 0),
    ("issue.type", |i| i.r#type = 99),
    ("issue.priority", |i| i.priority = 99),
    ("issue.status", |i| i.status = Running.into()),
    ("issue.repo", |i| i.repo = None),
    ("issue.repo.id", |i| i.repo.as_mut().unwrap().id = "not-a-uuid".into()),
    ("issue.repo.kind", |i| i.repo.as_mut().unwrap().kind = ObjectKind::Issue.into()),
    ("issue.assignees[0].actor_id", |i| i.assignees = vec![human(&long(129))]),
    ("issue.relationships.parent.id", |i| {
        i.relationships = Some(pb::Relationships { parent: Some(to(ObjectKind::Issue, "x")), ..Default::default() })
    }),
];

const PACKET_CASES: &[Case<pb::ContextPacket>] = &[
    ("context_packet.summary", |p| p.summary = String::new()),
    ("context_packet.summary", |p| p.summary = long(4001)),
    ("context_packet.version", |p| p.version = String::new()),
    ("context_packet.version", |p| p.version = long(65)),
    ("context_packet.for_issue", |p| p.for_issue = None),
    ("context_packet.instructions", |p| p.instructions = long(8001)),
    ("context_packet.assumptions[0]", |p| p.assumptions = vec![String::new()]),
    ("context_packet.doctrine_refs[0].id", |p| p.doctrine_refs = vec![to(ObjectKind::DoctrineRef, "x")]),
];

const SNAPSHOT_CASES: &[Case<pb::ConstraintSnapshot>] = &[
    ("constraint_snapshot.scope", |s| s.scope = 0),
    ("constraint_snapshot.owner", |s| s.owner = None),
    ("constraint_snapshot.owner.actor_id", |s| s.owner = Some(human(""))),
    ("constraint_snapshot.constraints.energy.score_0_5", |s| {
        let energy = pb::EnergyConstraints { score_0_5: Some(5.5), notes: String::new() };
        s.constraints = Some(pb::ConstraintSet { energy: Some(energy), ..Default::default() });
    }),
    ("constraint_snapshot.constraints.budget.usd_available", |s| {
        let budget = pb::BudgetConstraints { usd_available: Some(-1.0), burn_limit_usd: None };
        s.constraints = Some(pb::ConstraintSet { budget: Some(budget), ..Default::default() });
    }),
    ("constraint_snapshot.constraints.time.available_minutes", |s| {
        let time = pb::TimeConstraints { available_minutes: Some(-5), deadline: None };
        s.constraints = Some(pb::ConstraintSet { time: Some(time), ..Default::default() });
    }),
];

const DOCTRINE_CASES: &[Case<pb::DoctrineRef>] = &[
    ("doctrine_ref.namespace", |d| d.namespace = String::new()),
    ("doctrine_ref.name", |d| d.name = long(257)),
    ("doctrine_ref.version", |d| d.version = String::new()),
    ("doctrine_ref.type", |d| d.r#type = 0),
    ("doctrine_ref.statement", |d| d.statement = String::new()),
    ("doctrine_ref.statement", |d| d.statement = long(4001)),
];

const RUN_CASES: &[Case<pb::Run>] = &[
    ("run.executor", |r| r.executor = None),
    ("run.executor.runtime", |r| r.executor.as_mut().unwrap().runtime = String::new()),
    ("run.executor.actor", |r| r.executor.as_mut().unwrap().actor = None),
    ("run.mode", |r| r.mode = 0),
    ("run.for_issue", |r| r.for_issue = None),
    ("run.status", |r| r.status = Done.into()),
    ("run.cost.usd", |r| r.cost = Some(pb::Cost { usd: Some(-1.0), ..Default::default() })),
    ("run.failure.message", |r| {
        r.failure = Some(pb::Failure { category: pb::FailureCategory::Build.into(), message: String::new() })
    }),
    ("run.outputs.result_summary", |r| {
        r.outputs = Some(pb::RunOutputs { result_summary: long(4001), ..Default::default() })
    }),
];

const ARTIFACT_CASES: &[Case<pb::Artifact>] = &[
    ("artifact.uri", |a| a.uri = String::new()),
    ("artifact.uri", |a| a.uri = long(2001)),
    ("artifact.title", |a| a.title = String::new()),
    ("artifact.type", |a| a.r#type = 0),
    ("artifact.produced_by", |a| a.produced_by = None),
    ("artifact.digest", |a| a.digest = long(129)),
    ("artifact.size_bytes", |a| a.size_bytes = Some(-1)),
];

const OBJECT_TABLES: [&str; 7] = [
    "cwom_repos",
    "cwom_issues",
    "cwom_context_packets",
    "cwom_constraint_snapshots",
    "cwom_doctrine_refs",
    "cwom_runs",
    "cwom_artifacts",
];

async fn row_counts(server: &TestServer) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in OBJECT_TABLES.into_iter().chain(["audit_log"]) {
        counts.push(server.count(&format!("SELECT COUNT(*) FROM {table}")).await);
    }
    counts
}

#[tokio::test]
async fn every_validation_rule_names_its_field() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (home, issue_) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let producer = new_run(&mut cwom, run(&issue_.id)).await;
    let elsewhere = new_repo(&mut cwom, repo("elsewhere")).await;
    let before = row_counts(&server).await;

    for (field, mutate) in REPO_CASES {
        let mut r = repo("valid-slug");
        mutate(&mut r);
        assert_invalid(&cwom.create_repo(pb::CreateRepoRequest { repo: Some(r) }).await.unwrap_err(), field);
    }
    for (field, mutate) in ISSUE_CASES {
        let mut i = issue(&home.id, "Valid title");
        mutate(&mut i);
        assert_invalid(&cwom.create_issue(pb::CreateIssueRequest { issue: Some(i) }).await.unwrap_err(), field);
    }
    for (field, mutate) in PACKET_CASES {
        let mut p = packet(&issue_.id, "v1");
        mutate(&mut p);
        let request = pb::CreateContextPacketRequest { context_packet: Some(p) };
        assert_invalid(&cwom.create_context_packet(request).await.unwrap_err(), field);
    }
    for (field, mutate) in SNAPSHOT_CASES {
        let mut s = snapshot(pb::ConstraintScope::Personal, "alice");
        mutate(&mut s);
        let request = pb::CreateConstraintSnapshotRequest { constraint_snapshot: Some(s) };
        assert_invalid(&cwom.create_constraint_snapshot(request).await.unwrap_err(), field);
    }
    for (field, mutate) in DOCTRINE_CASES {
        let mut d = doctrine("eng", "testing", "1");
        mutate(&mut d);
        let request = pb::CreateDoctrineRefRequest { doctrine_ref: Some(d) };
        assert_invalid(&cwom.create_doctrine_ref(request).await.unwrap_err(), field);
    }
    for (field, mutate) in RUN_CASES {
        let mut r = run(&issue_.id);
        mutate(&mut r);
        assert_invalid(&cwom.create_run(pb::CreateRunRequest { run: Some(r) }).await.unwrap_err(), field);
    }
    for (field, mutate) in ARTIFACT_CASES {
        let mut a = artifact(&producer.id);
        mutate(&mut a);
        assert_invalid(
            &cwom.create_artifact(pb::CreateArtifactRequest { artifact: Some(a) }).await.unwrap_err(),
            field,
        );
    }

    // The object itself missing from the request.
    assert_invalid(&cwom.create_repo(pb::CreateRepoRequest { repo: None }).await.unwrap_err(), "repo");
    assert_invalid(&cwom.create_issue(pb::CreateIssueRequest { issue: None }).await.unwrap_err(), "issue");
    assert_invalid(&cwom.create_run(pb::CreateRunRequest { run: None }).await.unwrap_err(), "run");

    // A run must live in its issue's repo.
    let wrong_repo = pb::Run { repo: Some(to(ObjectKind::Repo, &elsewhere.id)), ..run(&issue_.id) };
    assert_invalid(&cwom.create_run(pb::CreateRunRequest { run: Some(wrong_repo) }).await.unwrap_err(), "run.repo");

    assert_eq!(row_counts(&server).await, before, "nothing half-written");
    server.stop().await;
}

#[tokio::test]
async fn references_to_missing_objects_are_not_found() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    let (repo, issue_) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let producer = new_run(&mut cwom, run(&issue_.id)).await;
    let before = row_counts(&server).await;
    let missing = unknown_id();

    let status = cwom.create_issue(pb::CreateIssueRequest { issue: Some(issue(&missing, "Orphan")) }).await;
    assert_not_found(&status.unwrap_err(), "issue.repo");
    let parented = pb::Issue {
        relationships: Some(pb::Relationships { parent: Some(to(ObjectKind::Issue, &missing)), ..Default::default() }),
        ..issue(&repo.id, "Child of nothing")
    };
    assert_not_found(
        &cwom.create_issue(pb::CreateIssueRequest { issue: Some(parented) }).await.unwrap_err(),
        "issue.relationships",
    );

    let packet_cases: [(&str, pb::ContextPacket); 3] = [
        ("context_packet.for_issue", packet(&missing, "v1")),
        (
            "context_packet.doctrine_refs",
            pb::ContextPacket {
                doctrine_refs: vec![to(ObjectKind::DoctrineRef, &missing)],
                ..packet(&issue_.id, "v1")
            },
        ),
        (
            "context_packet.constraint_snapshot",
            pb::ContextPacket {
                constraint_snapshot: Some(to(ObjectKind::ConstraintSnapshot, &missing)),
                ..packet(&issue_.id, "v1")
            },
        ),
    ];
    for (field, p) in packet_cases {
        let status = cwom.create_context_packet(pb::CreateContextPacketRequest { context_packet: Some(p) }).await;
        assert_not_found(&status.unwrap_err(), field);
    }

    let inputs = |i: pb::RunInputs| pb::Run { inputs: Some(i), ..run(&issue_.id) };
    let run_cases: [(&str, pb::Run); 4] = [
        ("run.for_issue", run(&missing)),
        (
            "run.inputs.context_packets",
            inputs(pb::RunInputs {
                context_packets: vec![to(ObjectKind::ContextPacket, &missing)],
                ..Default::default()
            }),
        ),
        (
            "run.inputs.doctrine_refs",
            inputs(pb::RunInputs { doctrine_refs: vec![to(ObjectKind::DoctrineRef, &missing)], ..Default::default() }),
        ),
        (
            "run.inputs.constraint_snapshot",
            inputs(pb::RunInputs {
                constraint_snapshot: Some(to(ObjectKind::ConstraintSnapshot, &missing)),
                ..Default::default()
            }),
        ),
    ];
    for (field, r) in run_cases {
        assert_not_found(&cwom.create_run(pb::CreateRunRequest { run: Some(r) }).await.unwrap_err(), field);
    }

    let status = cwom.create_artifact(pb::CreateArtifactRequest { artifact: Some(artifact(&missing)) }).await;
    assert_not_found(&status.unwrap_err(), "artifact.produced_by");
    // An artifact belongs to the issue of the run that produced it.
    let elsewhere = pb::Artifact { for_issue: Some(to(ObjectKind::Issue, &missing)), ..artifact(&producer.id) };
    let status = cwom.create_artifact(pb::CreateArtifactRequest { artifact: Some(elsewhere) }).await;
    assert_invalid(&status.unwrap_err(), "artifact.for_issue");

    assert_not_found(&cwom.link_issue_constraint_snapshot(link(&issue_.id, &missing)).await.unwrap_err(), "target_id");
    let status = set_issue_status(&mut cwom, &missing, Ready).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = set_run_status(&mut cwom, &missing, Running).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(row_counts(&server).await, before, "nothing half-written");
    server.stop().await;
}

/// A malformed id is INVALID_ARGUMENT naming `id`; a well-formed unknown one is NOT_FOUND.
macro_rules! assert_get_rejects {
    ($cwom:expr, $rpc:ident) => {{
        let malformed = $cwom.$rpc(get("not-a-uuid")).await.expect_err(stringify!($rpc));
        assert_invalid(&malformed, "id");
        let unknown = $cwom.$rpc(get(&unknown_id())).await.expect_err(stringify!($rpc));
        assert_eq!(unknown.code(), Code::NotFound, "{}: {unknown:?}", stringify!($rpc));
    }};
}

#[tokio::test]
async fn get_tells_malformed_ids_from_unknown_ones() {
    let server = TestServer::start().await;
    let (mut cwom, _) = clients(&server).await;
    assert_get_rejects!(cwom, get_repo);
    assert_get_rejects!(cwom, get_issue);
    assert_get_rejects!(cwom, get_context_packet);
    assert_get_rejects!(cwom, get_constraint_snapshot);
    assert_get_rejects!(cwom, get_doctrine_ref);
    assert_get_rejects!(cwom, get_run);
    assert_get_rejects!(cwom, get_artifact);
    let repo = new_repo(&mut cwom, repo("acme-widgets")).await;
    let upper = cwom.get_repo(get(&repo.id.to_uppercase())).await.unwrap().into_inner();
    assert_eq!(upper.id, repo.id, "UUIDs are case-insensitive");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// 8. Updates and audit entries.
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn update_repo_changes_the_name_but_never_the_slug() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let created =
        new_repo(&mut cwom, pb::Repo { owners: vec![human("alice")], meta: Some(meta()), ..repo("acme-widgets") })
            .await;
    let renamed = pb::Repo { name: "Widgets (renamed)".into(), ..created.clone() };
    let updated = cwom.update_repo(pb::UpdateRepoRequest { repo: Some(renamed) }).await.unwrap().into_inner();
    assert_eq!(updated.name, "Widgets (renamed)");
    assert_eq!(updated.slug, "acme-widgets");
    assert_eq!(updated.owners, created.owners);
    assert_eq!(cwom.get_repo(get(&created.id)).await.unwrap().into_inner(), updated);

    let events = audit_of(&mut audit, &created.id).await;
    assert_eq!(actions(&events), ["created", "updated"]);
    assert_eq!(events[1].entity_kind, "Repo");
    assert_eq!(object_of::<pb::Repo>(events[1].before.as_ref()), created, "before is the whole repo");
    assert_eq!(object_of::<pb::Repo>(events[1].after.as_ref()), updated, "after is the whole repo");

    let moved = pb::Repo { slug: "acme-gadgets".into(), ..updated.clone() };
    let status = cwom.update_repo(pb::UpdateRepoRequest { repo: Some(moved) }).await.unwrap_err();
    assert_invalid(&status, "repo.slug");
    assert_eq!(cwom.get_repo(get(&created.id)).await.unwrap().into_inner(), updated);
    assert_eq!(audit_of(&mut audit, &created.id).await.len(), 2, "a refused update writes nothing");
    server.stop().await;
}

#[tokio::test]
async fn update_issue_changes_the_title_but_not_the_status() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let (_, created) = repo_and_issue(&mut cwom, "acme-widgets").await;
    let retitled = pb::Issue { title: "A clearer title".into(), ..created.clone() };
    let updated = cwom.update_issue(pb::UpdateIssueRequest { issue: Some(retitled) }).await.unwrap().into_inner();
    assert_eq!(updated.title, "A clearer title");
    assert_eq!(updated.status(), Planned);
    assert_eq!(cwom.get_issue(get(&created.id)).await.unwrap().into_inner(), updated);
    let events = audit_of(&mut audit, &created.id).await;
    assert_eq!(actions(&events), ["created", "updated"]);
    assert_eq!(object_of::<pb::Issue>(events[1].before.as_ref()), created);
    assert_eq!(object_of::<pb::Issue>(events[1].after.as_ref()), updated);

    let started = pb::Issue { status: Running.into(), ..updated.clone() };
    let status = cwom.update_issue(pb::UpdateIssueRequest { issue: Some(started) }).await.unwrap_err();
    assert_invalid(&status, "issue.status");
    assert_eq!(cwom.get_issue(get(&created.id)).await.unwrap().into_inner().status(), Planned);
    assert_eq!(audit_of(&mut audit, &created.id).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn update_doctrine_ref_changes_the_statement_but_not_the_version() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let created = new_doctrine(&mut cwom, doctrine("eng", "testing", "1")).await;
    let restated = pb::DoctrineRef { statement: "Test every change.".into(), ..created.clone() };
    let request = pb::UpdateDoctrineRefRequest { doctrine_ref: Some(restated) };
    let updated = cwom.update_doctrine_ref(request).await.unwrap().into_inner();
    assert_eq!(updated.statement, "Test every change.");
    assert_eq!(updated.version, "1");
    assert_eq!(cwom.get_doctrine_ref(get(&created.id)).await.unwrap().into_inner(), updated);
    let events = audit_of(&mut audit, &created.id).await;
    assert_eq!(actions(&events), ["created", "updated"]);
    assert_eq!(object_of::<pb::DoctrineRef>(events[1].after.as_ref()), updated);

    let bumped = pb::DoctrineRef { version: "2".into(), ..updated.clone() };
    let status = cwom.update_doctrine_ref(pb::UpdateDoctrineRefRequest { doctrine_ref: Some(bumped) }).await;
    assert_invalid(&status.unwrap_err(), "doctrine_ref.version");
    assert_eq!(cwom.get_doctrine_ref(get(&created.id)).await.unwrap().into_inner(), updated);
    assert_eq!(audit_of(&mut audit, &created.id).await.len(), 2);
    server.stop().await;
}

/// The single `created` entry of an object, read back as the object.
async fn created_entry<T: serde::de::DeserializeOwned>(audit: &mut Audit, kind: &str, id: &str, trace_id: &str) -> T {
    let created: Vec<_> = audit_of(audit, id).await.into_iter().filter(|e| e.action == "created").collect();
    assert_eq!(created.len(), 1, "{kind} {id}");
    let entry = &created[0];
    assert_eq!((entry.entity_kind.as_str(), entry.entity_id.as_str()), (kind, id));
    assert_eq!(entry.trace_id, trace_id, "{kind}");
    assert!(entry.before.is_none(), "{kind}: nothing before a creation");
    object_of(entry.after.as_ref())
}

#[tokio::test]
async fn every_create_writes_one_created_audit_entry_holding_the_object() {
    let server = TestServer::start().await;
    let (mut cwom, mut audit) = clients(&server).await;
    let repo = new_repo(&mut cwom, pb::Repo { meta: Some(meta()), ..repo("acme-widgets") }).await;
    let issue = new_issue(&mut cwom, issue(&repo.id, "Audited")).await;
    let rule = new_doctrine(&mut cwom, doctrine("eng", "testing", "1")).await;
    let limits = new_snapshot(&mut cwom, snapshot(pb::ConstraintScope::Personal, "alice")).await;
    let context =
        pb::ContextPacket { doctrine_refs: vec![to(ObjectKind::DoctrineRef, &rule.id)], ..packet(&issue.id, "v1") };
    let context = new_packet(&mut cwom, context).await;
    let cost = pb::Cost { usd: Some(1.5), tokens: Some(99), compute_s: None };
    let work = new_run(&mut cwom, pb::Run { cost: Some(cost), ..run(&issue.id) }).await;
    let output = new_artifact(&mut cwom, pb::Artifact { size_bytes: Some(10), ..artifact(&work.id) }).await;

    assert_eq!(created_entry::<pb::Repo>(&mut audit, "Repo", &repo.id, &repo.trace_id).await, repo);
    assert_eq!(created_entry::<pb::Issue>(&mut audit, "Issue", &issue.id, &issue.trace_id).await, issue);
    assert_eq!(created_entry::<pb::DoctrineRef>(&mut audit, "DoctrineRef", &rule.id, &rule.trace_id).await, rule);
    let kind = "ConstraintSnapshot";
    assert_eq!(created_entry::<pb::ConstraintSnapshot>(&mut audit, kind, &limits.id, &limits.trace_id).await, limits);
    let kind = "ContextPacket";
    assert_eq!(created_entry::<pb::ContextPacket>(&mut audit, kind, &context.id, &context.trace_id).await, context);
    assert_eq!(created_entry::<pb::Run>(&mut audit, "Run", &work.id, &work.trace_id).await, work);
    assert_eq!(created_entry::<pb::Artifact>(&mut audit, "Artifact", &output.id, &output.trace_id).await, output);
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_log WHERE action = 'created'").await, 7);
    server.stop().await;
}
