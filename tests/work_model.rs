//! The work model driven by tasks, and the audit log that records every step: enqueue with `create_cwom` builds
//! the objects of the seed mapping atomically; execution creates Runs, moves Issues and records Artifacts; the
//! audit trail of a trace tells the whole story; WatchAuditEvents and WatchTasks tail it without gaps.

mod common;

use std::{collections::HashSet, time::Duration};

use common::*;
use control_tower::pb::{self, audit_service_client::AuditServiceClient, cwom_service_client::CwomServiceClient};
use sea_orm::{ConnectionTrait, DatabaseBackend};
use sha2::Digest;
use tonic::{Code, Request, transport::Channel};

type Audit = AuditServiceClient<Channel>;

fn get(id: &str) -> pb::GetObjectRequest {
    pb::GetObjectRequest { id: id.into() }
}

async fn enqueue_with_cwom(tasks: &mut Tasks, spec: pb::TaskSpec, trace_id: Option<&str>) -> pb::EnqueueTaskResponse {
    let mut request = Request::new(pb::EnqueueTaskRequest { spec: Some(spec), create_cwom: true });
    if let Some(trace_id) = trace_id {
        request.metadata_mut().insert("x-trace-id", trace_id.parse().unwrap());
    }
    tasks.enqueue_task(request).await.expect("enqueue").into_inner()
}

async fn audit_of(audit: &mut Audit, filter: pb::AuditFilter) -> Vec<pb::AuditEvent> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = audit
            .list_audit_events(pb::ListAuditEventsRequest {
                filter: Some(filter.clone()),
                page_size: 50,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        token = page.next_page_token;
    }
}

async fn next<T>(stream: &mut tonic::Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), stream.message()).await.expect("an event in time").unwrap().unwrap()
}

fn meta(value: &Option<pbjson_types::Struct>) -> serde_json::Value {
    control_tower::json::struct_to_json(value.clone().unwrap_or_default())
}

#[tokio::test]
async fn create_cwom_builds_the_seed_mapping() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut cwom = CwomServiceClient::new(server.channel().await);
    let mut s = spec("Map the auth flow\nwith all the details that follow");
    s.target = Some(pb::Target {
        repo: " ACME/Widgets.git ".into(),
        r#ref: "dev".into(),
        path: "src/auth".into(),
        ..Default::default()
    });
    s.idempotency_key = "mapped-1".into();
    s.evidence_requirements = vec!["a diagram".into()];
    let response = enqueue_with_cwom(&mut tasks, s.clone(), None).await;
    let task = response.task.unwrap();
    let ids = response.cwom.expect("the CWOM ids");
    assert_eq!(task.cwom_issue_id, ids.issue_id);

    let repo = cwom.get_repo(get(&ids.repo_id)).await.unwrap().into_inner();
    assert_eq!(
        (repo.slug.as_str(), repo.name.as_str(), repo.default_branch.as_str()),
        ("acme/widgets", "widgets", "dev")
    );
    assert_eq!(repo.visibility(), pb::Visibility::Private);
    let source = repo.source.unwrap();
    assert_eq!((source.system.as_str(), source.external_id.as_str()), ("jct", "acme/widgets"));

    let snapshot = cwom.get_constraint_snapshot(get(&ids.constraint_snapshot_id)).await.unwrap().into_inner();
    assert_eq!(snapshot.scope(), pb::ConstraintScope::Run);
    let owner = snapshot.owner.unwrap();
    assert_eq!((owner.actor_kind(), owner.actor_id.as_str()), (pb::ActorKind::Agent, "agent-7"));
    let constraints = snapshot.constraints.unwrap();
    assert_eq!(constraints.time.unwrap().available_minutes, Some(15));
    assert_eq!(constraints.risk.unwrap().tolerance(), pb::RiskTolerance::Low);
    let snapshot_meta = meta(&snapshot.meta);
    assert_eq!(snapshot_meta["source"], "jct_task");
    assert_eq!(snapshot_meta["idempotency_key"], "mapped-1");
    assert_eq!(snapshot_meta["time_budget_seconds"], 900);

    let issue = cwom.get_issue(get(&ids.issue_id)).await.unwrap().into_inner();
    assert_eq!(issue.title, "Map the auth flow");
    assert_eq!(issue.description, task.spec.as_ref().unwrap().objective);
    assert_eq!(
        (issue.r#type(), issue.priority(), issue.status()),
        (pb::IssueType::Research, pb::Priority::P2, pb::WorkStatus::Planned)
    );
    assert_eq!(issue.repo.unwrap().id, ids.repo_id);
    assert_eq!(issue.assignees[0].actor_id, "agent-7");
    assert_eq!(issue.acceptance.unwrap().criteria, vec![issue.description.clone()], "the objective when none given");
    assert_eq!(meta(&issue.meta)["evidence_requirements"], serde_json::json!(["a diagram"]));
    assert_eq!(
        issue.constraints.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![ids.constraint_snapshot_id.clone()]
    );
    assert_eq!(
        issue.context_packets.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![ids.context_packet_id.clone()]
    );

    let packet = cwom.get_context_packet(get(&ids.context_packet_id)).await.unwrap().into_inner();
    assert_eq!(
        (packet.version.as_str(), packet.summary.as_str(), packet.sequence),
        ("1.0", "Initial context from JCT task", 1)
    );
    assert_eq!(packet.assumptions, vec!["Target branch: dev".to_owned(), "Working path: src/auth".to_owned()]);
    assert_eq!(packet.instructions, issue.description);
    assert_eq!(packet.constraint_snapshot.unwrap().id, ids.constraint_snapshot_id);
    assert_eq!(meta(&packet.meta)["task_path"], "src/auth");

    // The repo is found again by its normalised slug; a repeat writes nothing and answers with the same ids.
    let audit_rows = server.count("SELECT COUNT(*) FROM audit_log").await;
    let again = enqueue_with_cwom(&mut tasks, s, None).await;
    assert!(!again.created);
    assert_eq!(again.cwom.unwrap(), ids);
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_log").await, audit_rows);
    let other = enqueue_with_cwom(&mut tasks, spec("Another task on the same repository"), None).await;
    assert_eq!(other.cwom.unwrap().repo_id, ids.repo_id);
    for (table, rows) in [
        ("cwom_repos", 1),
        ("cwom_issues", 2),
        ("cwom_context_packets", 2),
        ("cwom_constraint_snapshots", 2),
        ("cwom_issue_context_packets", 2),
        ("cwom_issue_constraint_snapshots", 2),
    ] {
        assert_eq!(server.count(&format!("SELECT COUNT(*) FROM {table}")).await, rows, "{table}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_failure_in_the_middle_of_create_cwom_leaves_nothing_behind() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    // Make the context packet insert, the last object of the mapping, fail inside the database.
    let sql = match server.state.db.get_database_backend() {
        DatabaseBackend::Postgres => vec![
            "CREATE FUNCTION forced_failure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'forced failure'; END $$",
            "CREATE TRIGGER forced_failure BEFORE INSERT ON cwom_context_packets FOR EACH ROW EXECUTE FUNCTION forced_failure()",
        ],
        _ => vec![
            "CREATE TRIGGER forced_failure BEFORE INSERT ON cwom_context_packets BEGIN SELECT RAISE(ABORT, 'forced failure'); END",
        ],
    };
    for statement in sql {
        server.state.db.execute_unprepared(statement).await.unwrap();
    }
    let request = pb::EnqueueTaskRequest { spec: Some(spec("Doomed to roll back")), create_cwom: true };
    let status = tasks.enqueue_task(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "internal error", "no internals reach the client");
    for table in [
        "tasks",
        "cwom_repos",
        "cwom_issues",
        "cwom_constraint_snapshots",
        "cwom_context_packets",
        "cwom_issue_constraint_snapshots",
        "cwom_issue_context_packets",
        "audit_log",
    ] {
        assert_eq!(server.count(&format!("SELECT COUNT(*) FROM {table}")).await, 0, "{table}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_task_run_by_a_worker_leaves_runs_issues_and_artifacts_matching_its_trace_folder() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut cwom = CwomServiceClient::new(server.channel().await);
    let url = server.url();
    let _worker = Process::spawn(
        &["worker", "--server", &url, "--worker-id", "model-worker"],
        &[],
        server.dir.path().join("worker.log"),
    );
    let response = enqueue_with_cwom(&mut tasks, spec("Run with a work model"), None).await;
    let (task, ids) = (response.task.unwrap(), response.cwom.unwrap());
    wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Completed).await;

    let list_artifacts = || {
        let mut cwom = cwom.clone();
        let issue_id = ids.issue_id.clone();
        async move {
            cwom.list_artifacts(pb::ListArtifactsRequest { issue_id, ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .artifacts
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let artifacts = loop {
        let artifacts = list_artifacts().await;
        if artifacts.len() == 3 {
            break artifacts;
        }
        assert!(tokio::time::Instant::now() < deadline, "artifacts: {artifacts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let runs = cwom
        .list_runs(pb::ListRunsRequest { issue_id: ids.issue_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!((run.status(), run.mode()), (pb::WorkStatus::Done, pb::RunMode::System));
    assert_eq!(
        (run.task_id.as_str(), run.task_attempt, run.trace_id.as_str()),
        (task.id.as_str(), 1, task.trace_id.as_str())
    );
    assert_eq!(run.executor.as_ref().unwrap().actor.as_ref().unwrap().actor_id, "model-worker");
    let telemetry = run.telemetry.unwrap();
    assert!(telemetry.started_at.is_some() && telemetry.ended_at.is_some() && telemetry.duration_s.is_some());
    assert_eq!(run.inputs.as_ref().unwrap().context_packets[0].id, ids.context_packet_id);
    assert_eq!(run.outputs.as_ref().unwrap().artifacts.len(), 3);
    let issue = cwom.get_issue(get(&ids.issue_id)).await.unwrap().into_inner();
    assert_eq!(issue.status(), pb::WorkStatus::Done);
    assert_eq!(issue.runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec![run.id.clone()]);

    let dir = server.task_dir(&task.id);
    let mut names: Vec<_> = artifacts.iter().map(|a| a.title.clone()).collect();
    names.sort();
    assert_eq!(names, ["input.json", "log.txt", "output.json"]);
    for artifact in &artifacts {
        let bytes = std::fs::read(dir.join(&artifact.title)).unwrap();
        let digest: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(artifact.digest, format!("sha256:{digest}"), "{}", artifact.title);
        assert_eq!(artifact.size_bytes, Some(bytes.len() as i64));
        assert_eq!(artifact.uri, format!("file://{}/{}", dir.display(), artifact.title));
        assert_eq!(artifact.produced_by.as_ref().unwrap().id, run.id);
        let expected = if artifact.title == "log.txt" { pb::ArtifactType::Log } else { pb::ArtifactType::Trace };
        assert_eq!(artifact.r#type(), expected);
    }
    server.stop().await;
}

#[tokio::test]
async fn redelivery_gives_each_attempt_its_own_run() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let mut cwom = CwomServiceClient::new(server.channel().await);
    let response = enqueue_with_cwom(&mut tasks, spec("Survive a lost lease"), None).await;
    let (task, ids) = (response.task.unwrap(), response.cwom.unwrap());

    let mut first = pull(&mut workers, "first", 1).await;
    next_assignment(&mut first).await;
    drop(first);
    wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Queued).await;
    let mut second = pull(&mut workers, "second", 1).await;
    let lease = next_assignment(&mut second).await;

    let runs_client = cwom.clone();
    let runs = |status: pb::WorkStatus| {
        let mut cwom = runs_client.clone();
        let issue_id = ids.issue_id.clone();
        async move {
            cwom.list_runs(pb::ListRunsRequest { issue_id, status: status.into(), ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .runs
        }
    };
    let failed = runs(pb::WorkStatus::Failed).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].task_attempt, 1);
    assert!(failed[0].failure.as_ref().unwrap().message.contains("stream closed"), "{:?}", failed[0].failure);
    assert!(failed[0].artifact_root_uri.ends_with(&format!("{}/attempts/1", task.id)));
    let running = runs(pb::WorkStatus::Running).await;
    assert_eq!((running.len(), running[0].task_attempt), (1, 2));
    assert_eq!(cwom.get_issue(get(&ids.issue_id)).await.unwrap().into_inner().status(), pb::WorkStatus::Running);

    workers
        .complete_task(pb::CompleteTaskRequest {
            lease_id: lease.lease_id,
            result: Some(json_struct(serde_json::json!({"ok": true}))),
        })
        .await
        .unwrap();
    assert_eq!(runs(pb::WorkStatus::Done).await[0].task_attempt, 2);
    assert_eq!(cwom.get_issue(get(&ids.issue_id)).await.unwrap().into_inner().status(), pb::WorkStatus::Done);
    server.stop().await;
}

#[tokio::test]
async fn the_audit_trail_of_a_trace_tells_the_whole_story_in_order() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let mut audit = AuditServiceClient::new(server.channel().await);
    let response = enqueue_with_cwom(&mut tasks, spec("Tell me a story"), Some("story-1")).await;
    let task = response.task.unwrap();
    let mut stream = pull(&mut workers, "storyteller", 1).await;
    let lease = next_assignment(&mut stream).await;
    workers
        .push_trace(tokio_stream::iter([pb::TraceChunk {
            lease_id: lease.lease_id.clone(),
            file: "log.txt".into(),
            offset: 0,
            data: b"once upon a time\n".to_vec(),
            eof: true,
        }]))
        .await
        .unwrap();
    workers.complete_task(pb::CompleteTaskRequest { lease_id: lease.lease_id, result: None }).await.unwrap();

    let mut events = audit_of(&mut audit, pb::AuditFilter { trace_id: "story-1".into(), ..Default::default() }).await;
    assert!(events.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    events.reverse();
    let story: Vec<String> = events
        .iter()
        .map(|e| {
            let status = e.after.as_ref().map(|a| control_tower::json::struct_to_json(a.clone())["status"].clone());
            match e.action.as_str() {
                "status_changed" => {
                    format!("{} {}", e.entity_kind, status.unwrap_or_default().as_str().unwrap_or_default())
                }
                action => format!("{} {action}", e.entity_kind),
            }
        })
        .collect();
    let expected = [
        "Task created",
        "Repo created",
        "ConstraintSnapshot created",
        "Issue created",
        "Issue linked",
        "ContextPacket created",
        "Issue linked",
        "Task running",
        "Run created",
        "Run linked",
        "Issue running",
        "Task completed",
        "Run done",
        "Run updated",
        "Issue done",
        "Artifact created",
        "Artifact created",
        "Artifact created",
    ];
    assert_eq!(story, expected);
    for event in &events {
        assert!(!event.actor_id.is_empty(), "every change names who made it: {event:?}");
        assert_eq!(event.trace_id, "story-1");
    }
    let by_worker: Vec<_> =
        events.iter().filter(|e| e.actor_id == "storyteller").map(|e| e.entity_kind.clone()).collect();
    assert!(by_worker.contains(&"Run".to_owned()) && by_worker.contains(&"Task".to_owned()));
    assert_eq!(events[0].actor_id, "agent-7", "the requester created the task");
    let task_entries = audit_of(&mut audit, pb::AuditFilter { entity_id: task.id.clone(), ..Default::default() }).await;
    assert_eq!(task_entries.len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn list_audit_events_filters_and_pages() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut audit = AuditServiceClient::new(server.channel().await);
    let before =
        control_tower::convert::timestamp(control_tower::clock::Clock::now(&control_tower::clock::SystemClock));
    for i in 0..5 {
        enqueue(&mut tasks, spec(&format!("Audited task {i}"))).await;
    }
    let cancelled = enqueue(&mut tasks, spec("Cancelled one")).await;
    tasks.cancel_task(pb::CancelTaskRequest { id: cancelled.id.clone(), reason: "x".into() }).await.unwrap();

    let all = audit_of(&mut audit, pb::AuditFilter::default()).await;
    assert_eq!(all.len(), 7);
    let created = audit_of(&mut audit, pb::AuditFilter { action: "created".into(), ..Default::default() }).await;
    assert_eq!(created.len(), 6);
    let by_operator = audit_of(&mut audit, pb::AuditFilter { actor_id: "operator".into(), ..Default::default() }).await;
    assert_eq!((by_operator.len(), by_operator[0].entity_id.as_str()), (1, cancelled.id.as_str()));
    let one = audit_of(
        &mut audit,
        pb::AuditFilter { entity_kind: "Task".into(), entity_id: cancelled.id.clone(), ..Default::default() },
    )
    .await;
    assert_eq!(one.len(), 2);
    let since = audit_of(&mut audit, pb::AuditFilter { since: Some(before), ..Default::default() }).await;
    assert_eq!(since.len(), 7);
    let until = audit_of(&mut audit, pb::AuditFilter { until: Some(before), ..Default::default() }).await;
    assert!(until.is_empty());
    let bad = audit.list_audit_events(pb::ListAuditEventsRequest {
        filter: Some(pb::AuditFilter { action: "deleted-ish".into(), ..Default::default() }),
        ..Default::default()
    });
    assert_eq!(code_of(bad.await), Code::InvalidArgument);
    server.stop().await;
}

/// A batch's entries are written in one statement: ids follow the batch's order, each entry holds its own task, and
/// the documents are stored as serialised, escapes and all (the chain hashes the stored text).
#[tokio::test]
async fn a_batchs_entries_keep_its_order_and_their_documents() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut audit = AuditServiceClient::new(server.channel().await);
    let objectives =
        ["Quote \" and backslash \\ kept", "Unicode \u{e9}t\u{e9} \u{1F680} kept", "Tab\tand\nnewline kept", "Plain"];
    let requests = objectives.iter().map(|objective| request(spec(objective))).collect();
    let response = tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap().into_inner();
    let ids: Vec<String> = response
        .results
        .iter()
        .map(|r| match &r.outcome {
            Some(pb::enqueue_task_result::Outcome::Enqueued(ok)) => ok.task.clone().unwrap().id,
            other => panic!("not enqueued: {other:?}"),
        })
        .collect();

    let mut created = audit_of(&mut audit, pb::AuditFilter { action: "created".into(), ..Default::default() }).await;
    created.reverse();
    assert_eq!(created.iter().map(|e| e.entity_id.clone()).collect::<Vec<_>>(), ids, "ids in batch order");
    for (event, objective) in created.iter().zip(objectives) {
        assert_eq!(meta(&event.after)["objective"], objective);
        assert_eq!(meta(&event.after)["id"], event.entity_id.as_str());
    }
    let stored = server
        .count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE entity_id = '{}' AND CAST(after AS TEXT) LIKE '%kept\",%'",
            ids[0]
        ))
        .await;
    assert_eq!(stored, 1, "the document is stored as JSON text, not as a string holding it");
    let verified = audit.verify_audit_chain(pb::VerifyAuditChainRequest::default()).await.unwrap().into_inner();
    assert!(verified.intact, "{verified:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_audit_events_resumes_from_a_cursor_without_gaps_or_repeats() {
    const TASKS: usize = 120;
    let server = TestServer::start().await;
    let mut audit = AuditServiceClient::new(server.channel().await);
    let filter = pb::AuditFilter { entity_kind: "Task".into(), action: "created".into(), ..Default::default() };
    let mut first = audit
        .watch_audit_events(pb::WatchAuditEventsRequest { filter: Some(filter.clone()), cursor: String::new() })
        .await
        .unwrap()
        .into_inner();

    // Four writers at once, so that on PostgreSQL transactions commit out of id order.
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut tasks = server.tasks().await;
        writers.push(tokio::spawn(async move {
            for i in 0..TASKS / 4 {
                enqueue(&mut tasks, spec(&format!("Watched task {w}-{i}"))).await;
            }
        }));
    }
    let mut seen = Vec::new();
    for _ in 0..TASKS / 3 {
        seen.push(next(&mut first).await);
    }
    let cursor = seen.last().unwrap().cursor.clone();
    drop(first);
    let mut second = audit
        .watch_audit_events(pb::WatchAuditEventsRequest { filter: Some(filter), cursor })
        .await
        .unwrap()
        .into_inner();
    while seen.len() < TASKS {
        seen.push(next(&mut second).await);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let ids: HashSet<i64> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), TASKS, "no event repeated");
    let entities: HashSet<String> = seen.iter().map(|e| e.entity_id.clone()).collect();
    assert_eq!(entities.len(), TASKS, "every task's creation seen");
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, TASKS as i64);
    let bad = audit.watch_audit_events(pb::WatchAuditEventsRequest { filter: None, cursor: "nonsense".into() }).await;
    assert_eq!(code_of(bad), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn watch_tasks_streams_transitions_with_filters() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let mut all = tasks.watch_tasks(pb::WatchTasksRequest::default()).await.unwrap().into_inner();
    let mut completed_only = tasks
        .watch_tasks(pb::WatchTasksRequest { status: pb::TaskStatus::Completed.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut docs_only = tasks
        .watch_tasks(pb::WatchTasksRequest { operation: "docs".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();

    let task = enqueue(&mut tasks, spec("Watch me go")).await;
    let mut stream = pull(&mut workers, "watched", 1).await;
    let lease = next_assignment(&mut stream).await;
    workers.complete_task(pb::CompleteTaskRequest { lease_id: lease.lease_id, result: None }).await.unwrap();
    let mut docs = spec("Documentation to watch");
    docs.operation = "docs".into();
    let docs = enqueue(&mut tasks, docs).await;

    let mut transitions = Vec::new();
    for _ in 0..4 {
        let event = next(&mut all).await;
        let (from, to) = (event.from_status(), event.to_status());
        transitions.push((event.task.unwrap().id, event.action, from, to));
    }
    assert_eq!(
        transitions,
        vec![
            (task.id.clone(), "created".to_owned(), pb::TaskStatus::Unspecified, pb::TaskStatus::Queued),
            (task.id.clone(), "status_changed".to_owned(), pb::TaskStatus::Queued, pb::TaskStatus::Running),
            (task.id.clone(), "status_changed".to_owned(), pb::TaskStatus::Running, pb::TaskStatus::Completed),
            (docs.id.clone(), "created".to_owned(), pb::TaskStatus::Unspecified, pb::TaskStatus::Queued),
        ]
    );
    let completion = next(&mut completed_only).await;
    assert_eq!(
        (completion.task.as_ref().unwrap().id.as_str(), completion.actor_id.as_str()),
        (task.id.as_str(), "watched")
    );
    assert!(completion.note.contains("running -> completed"), "{}", completion.note);
    let first_docs = next(&mut docs_only).await;
    assert_eq!(first_docs.task.unwrap().id, docs.id, "other operations are filtered out");
    server.stop().await;
}
