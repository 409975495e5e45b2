//! Auth: every RPC refuses callers without a valid token or the right role; handlers record the authenticated
//! identity and keep agents and workers to what is theirs; the token file reloads without a restart.

mod common;

use std::time::Duration;

use common::{TestServer, json_struct, spec};
use control_tower::{
    auth::tokens::hash_token,
    client::{BearerToken, ControlTower},
    pb::{self, cwom_service_client::CwomServiceClient, task_service_client::TaskServiceClient},
};
use prost::Message;
use tonic::{
    Code, Request, codegen::http::uri::PathAndQuery, metadata::MetadataValue, service::interceptor::InterceptedService,
    transport::Channel,
};

const ROLES: [&str; 4] = ["operator", "agent", "worker", "viewer"];

/// One identity per role (named after it) plus a second agent and a second worker.
fn token_table() -> String {
    let mut lines: Vec<String> =
        ROLES.iter().map(|role| format!("{role} {role} sha256:{}", hash_token(&token(role)))).collect();
    lines.push(format!("agent agent-2 sha256:{}", hash_token(&token("agent-2"))));
    lines.push(format!("worker worker-2 sha256:{}", hash_token(&token("worker-2"))));
    lines.join("\n")
}

fn token(identity: &str) -> String {
    format!("token-of-{identity}")
}

async fn server() -> TestServer {
    TestServer::configured(|config| config.tokens.inline = Some(token_table())).await
}

/// Every RPC the server offers, from its compiled protos.
fn all_rpcs() -> Vec<String> {
    let mut paths = Vec::new();
    for set in [control_tower::pb::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
        for file in prost_types::FileDescriptorSet::decode(set).unwrap().file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
    }
    paths
}

/// Who may call an RPC, as the API promises it (written out here, independently of the server's rule table).
fn promised_roles(path: &str) -> Option<&'static [&'static str]> {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap();
    let reads = ["Get", "List", "Watch"].iter().any(|verb| method.starts_with(verb));
    Some(match service {
        "grpc.health.v1.Health" => return None,
        "controltower.v1.TaskService" if method.starts_with("Enqueue") => &["operator", "agent"],
        "controltower.v1.TaskService" if reads => &["operator", "agent", "viewer"],
        "controltower.v1.TaskService" => &["operator"],
        "controltower.v1.WorkerService" => &["operator", "worker"],
        "controltower.v1.CwomService" if reads => &["operator", "agent", "viewer"],
        "controltower.v1.CwomService" => &["operator", "agent"],
        "controltower.v1.AuditService" => &["operator", "viewer"],
        other => panic!("no promise for {other}"),
    })
}

/// Calls any RPC with an empty request message and returns the status code it ends with (OK when it streams).
async fn call(channel: Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = Request::new(());
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {token}")).unwrap());
    }
    // Every shape of RPC accepts one request message and answers with headers, messages and a status; reading it
    // as a server stream covers unary, client- and server-streaming methods alike.
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.server_streaming(request, PathAndQuery::try_from(path).unwrap(), codec).await {
        Ok(mut stream) => match tokio::time::timeout(Duration::from_millis(200), stream.get_mut().message()).await {
            Ok(Err(status)) => status.code(),
            _ => Code::Ok,
        },
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn every_rpc_refuses_callers_without_a_valid_token_or_the_right_role() {
    let server = server().await;
    let channel = server.channel().await;
    let rpcs = all_rpcs();
    assert!(rpcs.len() > 45, "{rpcs:?}");
    for path in &rpcs {
        let Some(allowed) = promised_roles(path) else {
            assert_ne!(call(channel.clone(), path, None).await, Code::Unauthenticated, "{path} is public");
            continue;
        };
        assert_eq!(call(channel.clone(), path, None).await, Code::Unauthenticated, "{path} without a token");
        assert_eq!(call(channel.clone(), path, Some("forged")).await, Code::Unauthenticated, "{path} with a bad token");
        for role in ROLES {
            let code = call(channel.clone(), path, Some(&token(role))).await;
            if allowed.contains(&role) {
                assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{role} may call {path} but got {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{role} may not call {path}");
            }
        }
    }
    server.stop().await;
}

type Authed = InterceptedService<Channel, BearerToken>;

async fn tasks_as(server: &TestServer, identity: &str) -> TaskServiceClient<Authed> {
    let tower = ControlTower::connect(server.url()).await.unwrap().with_token(&token(identity)).unwrap();
    tower.tasks()
}

fn requested_by(kind: &str, id: &str) -> Option<pb::Requester> {
    Some(pb::Requester { kind: kind.into(), id: id.into(), label: String::new() })
}

#[tokio::test]
async fn the_caller_is_the_requester_and_the_actor_and_agents_see_only_their_own_tasks() {
    let server = server().await;
    let mut agent = tasks_as(&server, "agent").await;
    let mut other_agent = tasks_as(&server, "agent-2").await;
    let mut operator = tasks_as(&server, "operator").await;

    // No requester given: the caller is filled in.
    let mut anonymous_spec = spec("Summarise the open incidents");
    anonymous_spec.requested_by = None;
    let mine = agent.enqueue_task(common::request(anonymous_spec)).await.unwrap().into_inner().task.unwrap();
    assert_eq!(mine.spec.as_ref().unwrap().requested_by, requested_by("agent", "agent"));

    // Claiming to be someone else is refused, and nothing is written.
    let mut forged = spec("Pretend to be the operator");
    forged.requested_by = requested_by("human", "operator");
    let refused = agent.enqueue_task(common::request(forged)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("requested_by"), "{}", refused.message());
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, 1);

    let theirs = other_agent
        .enqueue_task(common::request(pb::TaskSpec { requested_by: None, ..spec("Another agent's task") }))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let denied = agent.get_task(pb::GetTaskRequest { id: theirs.id.clone() }).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let listed = agent.list_tasks(pb::ListTasksRequest::default()).await.unwrap().into_inner().tasks;
    assert_eq!(listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [mine.id.as_str()]);
    let everything = operator.list_tasks(pb::ListTasksRequest::default()).await.unwrap().into_inner().tasks;
    assert_eq!(everything.len(), 2, "the operator sees every task");

    operator.cancel_task(pb::CancelTaskRequest { id: theirs.id.clone(), reason: "not now".into() }).await.unwrap();
    let actors: Vec<(String, String, String)> = audit_rows(&server, &theirs.id).await;
    assert_eq!(
        actors,
        [
            ("created".into(), "agent".into(), "agent-2".into()),
            ("status_changed".into(), "human".into(), "operator".into()),
        ]
    );
    server.stop().await;
}

async fn audit_rows(server: &TestServer, entity_id: &str) -> Vec<(String, String, String)> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &server.state.db;
    let sql = format!(
        "SELECT action, actor_kind, actor_id FROM audit_log WHERE entity_id = '{entity_id}' AND action <> 'status_changed' \
         OR (entity_id = '{entity_id}' AND note LIKE '%cancelled%') ORDER BY id"
    );
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get("", "action").unwrap(),
                row.try_get("", "actor_kind").unwrap(),
                row.try_get("", "actor_id").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn workers_act_only_as_themselves_and_on_their_own_leases() {
    let server = server().await;
    let mut agent = tasks_as(&server, "agent").await;
    let task = agent
        .enqueue_task(common::request(pb::TaskSpec { requested_by: None, ..spec("Run me") }))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let worker = ControlTower::connect(server.url()).await.unwrap().with_token(&token("worker")).unwrap();
    let other = ControlTower::connect(server.url()).await.unwrap().with_token(&token("worker-2")).unwrap();

    let impostor = other
        .workers()
        .pull_tasks(pb::PullTasksRequest { worker_id: "worker".into(), operations: vec![], max_in_flight: 1 })
        .await
        .unwrap_err();
    assert_eq!(impostor.code(), Code::PermissionDenied);

    let mut stream = worker
        .workers()
        .pull_tasks(pb::PullTasksRequest { worker_id: "worker".into(), operations: vec![], max_in_flight: 1 })
        .await
        .unwrap()
        .into_inner();
    let assignment = common::next_assignment(&mut stream).await;
    assert_eq!(assignment.task.unwrap().id, task.id);

    let stolen = other
        .workers()
        .complete_task(pb::CompleteTaskRequest { lease_id: assignment.lease_id.clone(), result: None })
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), Code::PermissionDenied);
    let chunk = pb::TraceChunk {
        lease_id: assignment.lease_id.clone(),
        file: "log.txt".into(),
        offset: 0,
        data: b"x".to_vec(),
        eof: true,
    };
    let upload = other.workers().push_trace(tokio_stream::iter(vec![chunk])).await.unwrap_err();
    assert_eq!(upload.code(), Code::PermissionDenied);
    let beat = other
        .workers()
        .heartbeat(pb::HeartbeatRequest {
            worker_id: "worker".into(),
            lease_ids: vec![assignment.lease_id.clone()],
            draining: false,
        })
        .await
        .unwrap_err();
    assert_eq!(beat.code(), Code::PermissionDenied);
    // CompleteTasks checks every item as CompleteTask does (its holders are looked up once for the whole call).
    let batch = |lease_ids: Vec<String>| pb::CompleteTasksRequest {
        requests: lease_ids.into_iter().map(|lease_id| pb::CompleteTaskRequest { lease_id, result: None }).collect(),
        view: pb::TaskView::Basic.into(),
    };
    let codes = |response: pb::CompleteTasksResponse| -> Vec<i32> {
        let outcomes = response.results.into_iter().map(|r| r.outcome.unwrap());
        outcomes
            .map(|outcome| match outcome {
                pb::complete_task_result::Outcome::Error(err) => err.code,
                pb::complete_task_result::Outcome::Task(task) => task.status,
            })
            .collect()
    };
    let unknown = "f".repeat(32);
    let stolen = other.workers().complete_tasks(batch(vec![assignment.lease_id.clone(), unknown.clone()])).await;
    let refused = vec![Code::PermissionDenied as i32, Code::FailedPrecondition as i32];
    assert_eq!(codes(stolen.unwrap().into_inner()), refused);
    let own = worker.workers().complete_tasks(batch(vec![assignment.lease_id.clone(), unknown])).await;
    let completed = vec![pb::TaskStatus::Completed as i32, Code::FailedPrecondition as i32];
    assert_eq!(codes(own.unwrap().into_inner()), completed);

    // Completing again under the same lease answers with the completion recorded.
    let done = worker
        .workers()
        .complete_task(pb::CompleteTaskRequest {
            lease_id: assignment.lease_id,
            result: Some(json_struct(serde_json::json!({"ok": true}))),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status(), pb::TaskStatus::Completed);
    assert_eq!(done.worker_id, "worker");
    server.stop().await;
}

#[tokio::test]
async fn agents_change_only_the_work_model_objects_they_created() {
    let server = server().await;
    let cwom_as = |identity: &str| {
        let token = token(identity);
        let url = server.url();
        async move { ControlTower::connect(url).await.unwrap().with_token(&token).unwrap().cwom() }
    };
    let mut agent: CwomServiceClient<Authed> = cwom_as("agent").await;
    let mut other = cwom_as("agent-2").await;
    let repo = pb::Repo { name: "widgets".into(), slug: "acme/widgets".into(), ..Default::default() };
    let repo = agent.create_repo(pb::CreateRepoRequest { repo: Some(repo) }).await.unwrap().into_inner();
    let renamed = pb::Repo { name: "Widgets".into(), ..repo.clone() };
    agent.update_repo(pb::UpdateRepoRequest { repo: Some(renamed.clone()) }).await.unwrap();
    let denied = other.update_repo(pb::UpdateRepoRequest { repo: Some(renamed) }).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mut operator = cwom_as("operator").await;
    operator.update_repo(pb::UpdateRepoRequest { repo: Some(pb::Repo { name: "W".into(), ..repo }) }).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn the_token_file_is_reloaded_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("agent first sha256:{}\n", hash_token("first-token"))).unwrap();
    let path = file.clone();
    let server = TestServer::configured(move |config| {
        config.tokens.file = Some(path);
        config.token_reload_interval = Duration::from_millis(50);
    })
    .await;
    let list = |token: &'static str| {
        let url = server.url();
        async move {
            let tower = ControlTower::connect(url).await.unwrap().with_token(token).unwrap();
            tower.tasks().list_tasks(pb::ListTasksRequest::default()).await.map(|_| ()).map_err(|s| s.code())
        }
    };
    assert_eq!(list("first-token").await, Ok(()));
    assert_eq!(list("second-token").await, Err(Code::Unauthenticated));

    // Revoke the first token and add a second; a table that does not parse is ignored meanwhile.
    std::fs::write(&file, "agent broken sha256:nothex\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(list("first-token").await, Ok(()), "a broken file leaves the previous table in force");
    std::fs::write(&file, format!("# rotated\nagent second sha256:{}\n", hash_token("second-token"))).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while list("second-token").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the new token was never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(list("first-token").await, Err(Code::Unauthenticated));
    server.stop().await;
}

#[tokio::test]
async fn serving_a_public_address_without_auth_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/ct.db?mode=rwc", dir.path().display());
    let traces = dir.path().join("traces");
    let envs = [("DATABASE_URL", database.as_str()), ("JCT_TRACE_ROOT", traces.to_str().unwrap())];
    let mut refused =
        common::Process::spawn(&["serve", "--listen-addr", "0.0.0.0:0"], &envs, dir.path().join("refused.log"));
    assert!(!refused.wait().await.success());
    let said = refused.output();
    assert!(said.contains("refusing to serve 0.0.0.0:0 without auth") && said.contains("--insecure"), "{said}");

    let mut insecure = common::Process::spawn(
        &["serve", "--listen-addr", "0.0.0.0:0", "--insecure"],
        &envs,
        dir.path().join("insecure.log"),
    );
    common::eventually("the server to serve", || insecure.output().contains("serving")).await;
    insecure.signal(libc::SIGTERM);
    assert!(insecure.wait().await.success());

    let tokens = format!("operator ops sha256:{}", hash_token("t"));
    let mut with_auth = common::Process::spawn(
        &["serve", "--listen-addr", "0.0.0.0:0"],
        &[envs[0], envs[1], ("JCT_AUTH_TOKENS", tokens.as_str())],
        dir.path().join("auth.log"),
    );
    common::eventually("the server to serve", || with_auth.output().contains("serving")).await;
    with_auth.signal(libc::SIGTERM);
    assert!(with_auth.wait().await.success());
}
