//! EnqueueTask / EnqueueTasks / GetTask / ListTasks / CancelTask: validation, the policy gate, idempotency,
//! trace ids, pagination, against a real server and database.

mod common;

use common::*;
use control_tower::{pb, spec::Policy};
use tonic::{Code, Request};
use tonic_types::StatusExt;

fn long(n: usize) -> String {
    "x".repeat(n)
}

type Mutation = fn(&mut pb::TaskSpec);

/// Every validation rule of TaskSpec V1: the spec change and the field the error must name.
const VALIDATION_CASES: &[(&str, Mutation)] = &[
    ("version", |s| s.version = "2.0".into()),
    ("idempotency_key", |s| s.idempotency_key = long(257)),
    ("requested_by.kind", |s| s.requested_by = None),
    ("requested_by.kind", |s| s.requested_by.as_mut().unwrap().kind = "robot".into()),
    ("requested_by.id", |s| s.requested_by.as_mut().unwrap().id = String::new()),
    ("requested_by.id", |s| s.requested_by.as_mut().unwrap().id = long(129)),
    ("requested_by.label", |s| s.requested_by.as_mut().unwrap().label = long(257)),
    ("objective", |s| s.objective = "   ab   ".into()),
    ("objective", |s| s.objective = long(4001)),
    ("operation", |s| s.operation = String::new()),
    ("target.repo", |s| s.target = None),
    ("target.repo", |s| s.target.as_mut().unwrap().repo = format!("acme/{}", long(252))),
    ("target.repo", |s| s.target.as_mut().unwrap().repo = " .git ".into()),
    ("target.ref", |s| s.target.as_mut().unwrap().r#ref = long(257)),
    ("target.path", |s| s.target.as_mut().unwrap().path = long(513)),
    ("priority", |s| s.priority = 1001),
    ("priority", |s| s.priority = -1001),
    ("max_attempts", |s| s.max_attempts = 101),
    ("max_attempts", |s| s.max_attempts = -1),
    ("run_after", |s| s.run_after = Some(pbjson_types::Timestamp { seconds: 0, nanos: -1 })),
];

#[tokio::test]
async fn every_validation_rule_names_its_field() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;

    let missing = tasks.enqueue_task(pb::EnqueueTaskRequest { spec: None, create_cwom: false }).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().contains("spec: is required"), "{}", missing.message());

    for (field, mutate) in VALIDATION_CASES {
        let mut s = spec("A valid objective");
        mutate(&mut s);
        let status = tasks.enqueue_task(request(s)).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(&format!("{field}: ")), "{field}: {}", status.message());
        let bad_request = status.get_details_bad_request().expect("BadRequest details");
        assert!(bad_request.field_violations.iter().any(|v| v.field == *field), "{field}: {bad_request:?}");
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, 0, "nothing half-written");
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_log").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn boundaries_are_accepted_and_the_spec_is_normalised() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut s = spec("  12345  ");
    s.target = Some(pb::Target { repo: "  ACME/Widgets.git ".into(), ..Default::default() });
    s.constraints = Some(pb::Constraints { time_budget_seconds: Some(30), ..Default::default() });
    s.requested_by.as_mut().unwrap().label = long(256);
    let task = enqueue(&mut tasks, s).await;
    let stored = task.spec.clone().unwrap();
    assert_eq!(stored.objective, "12345");
    assert_eq!(stored.version, "1.0");
    let target = stored.target.unwrap();
    assert_eq!((target.repo.as_str(), target.r#ref.as_str(), target.path.as_str()), ("acme/widgets", "main", ""));
    assert_eq!(stored.max_attempts, 3, "server default");
    assert_eq!(task.status(), pb::TaskStatus::Queued);
    assert_eq!(task.attempt, 0);

    let mut s = spec("Upper budget bound");
    s.constraints = Some(pb::Constraints { time_budget_seconds: Some(86_400), ..Default::default() });
    let task = enqueue(&mut tasks, s).await;
    assert_eq!(task.spec.unwrap().constraints.unwrap().time_budget_seconds, Some(86_400));

    let default_budget = enqueue(&mut tasks, spec("Default budget")).await;
    assert_eq!(default_budget.spec.unwrap().constraints.unwrap().time_budget_seconds, Some(900));

    let queued = server
        .count(&format!(
            "SELECT COUNT(*) FROM tasks WHERE id = '{}' AND status = 'queued' AND target_repo = 'acme/widgets'",
            default_budget.id
        ))
        .await;
    assert_eq!(queued, 1, "the row is in the database, QUEUED");
    server.stop().await;
}

/// Each policy rule, with its code in the message and in ErrorInfo.
const POLICY_CASES: &[(&str, Mutation)] = &[
    ("INVALID_OPERATION", |s| s.operation = "deploy".into()),
    ("REPO_NOT_ALLOWED", |s| s.target.as_mut().unwrap().repo = "evil/widgets".into()),
    ("TIME_BUDGET_TOO_LOW", |s| {
        s.constraints = Some(pb::Constraints { time_budget_seconds: Some(29), ..Default::default() })
    }),
    ("TIME_BUDGET_TOO_HIGH", |s| {
        s.constraints = Some(pb::Constraints { time_budget_seconds: Some(86_401), ..Default::default() })
    }),
    ("NETWORK_ACCESS_DENIED", |s| s.constraints = Some(pb::Constraints { allow_network: true, ..Default::default() })),
    ("SECRETS_ACCESS_DENIED", |s| s.constraints = Some(pb::Constraints { allow_secrets: true, ..Default::default() })),
    // Rules apply in order: the first failure wins.
    ("INVALID_OPERATION", |s| {
        s.operation = "deploy".into();
        s.target.as_mut().unwrap().repo = "evil/widgets".into();
    }),
    ("TIME_BUDGET_TOO_LOW", |s| {
        s.constraints = Some(pb::Constraints { time_budget_seconds: Some(0), allow_network: true, allow_secrets: true })
    }),
];

#[tokio::test]
async fn every_policy_code_is_returned() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    for (code, mutate) in POLICY_CASES {
        let mut s = spec("A valid objective");
        mutate(&mut s);
        let status = tasks.enqueue_task(request(s)).await.expect_err(code);
        assert_eq!(status.code(), Code::InvalidArgument, "{code}");
        assert!(status.message().starts_with(&format!("{code}: ")), "{code}: {}", status.message());
        assert_eq!(status.get_details_error_info().expect("ErrorInfo").reason, *code);
    }
    let status = tasks.enqueue_task(request(spec("Repo case"))).await;
    assert!(status.is_ok(), "the allowed prefix matches");
    let mut upper = spec("Prefix match ignores case");
    upper.target = Some(pb::Target { repo: "ACME/Tools".into(), ..Default::default() });
    assert!(tasks.enqueue_task(request(upper)).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn unset_prefixes_deny_everything_and_name_the_variable() {
    let server = TestServer::configured(|c| c.policy = Policy::default()).await;
    let mut tasks = server.tasks().await;
    let status = tasks.enqueue_task(request(spec("Any repository"))).await.unwrap_err();
    assert_eq!(status.get_details_error_info().unwrap().reason, "REPO_NOT_ALLOWED");
    assert!(status.message().contains("JCT_ALLOWED_REPO_PREFIXES"), "{}", status.message());
    server.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_task_and_writes_nothing() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut s = spec("Only once please");
    s.idempotency_key = "key-1".into();
    let first = tasks.enqueue_task(request(s.clone())).await.unwrap().into_inner();
    assert!(first.created);
    let audit_rows = server.count("SELECT COUNT(*) FROM audit_log").await;

    let mut again = s.clone();
    again.objective = "A different body is not compared".into();
    let mut req = Request::new(request(again));
    req.metadata_mut().insert("x-trace-id", "another-trace".parse().unwrap());
    let second = tasks.enqueue_task(req).await.unwrap();
    let echoed = second.metadata().get("x-trace-id").unwrap().to_str().unwrap().to_owned();
    let second = second.into_inner();
    assert!(!second.created);
    let (a, b) = (first.task.unwrap(), second.task.unwrap());
    assert_eq!(a.id, b.id);
    assert_eq!(b.trace_id, a.trace_id, "the existing task's trace id");
    assert_eq!(echoed, a.trace_id);
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, 1);
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_log").await, audit_rows, "a repeat writes nothing");

    // A duplicate that fails policy gets the policy error, not the task.
    let mut bad = s;
    bad.constraints = Some(pb::Constraints { allow_network: true, ..Default::default() });
    let status = tasks.enqueue_task(request(bad)).await.unwrap_err();
    assert_eq!(status.get_details_error_info().unwrap().reason, "NETWORK_ACCESS_DENIED");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_enqueues_with_one_key_create_one_task() {
    let server = TestServer::start().await;
    let mut joins = Vec::new();
    // Single enqueues race batches, whose items are written together: a batch that loses the race on its key
    // still writes its other item.
    for i in 0..8 {
        let mut tasks = server.tasks().await;
        joins.push(tokio::spawn(async move {
            let mut s = spec(&format!("Racing enqueue {i}"));
            s.idempotency_key = "race".into();
            if i % 2 == 0 {
                let response = tasks.enqueue_task(request(s)).await.unwrap().into_inner();
                return vec![response];
            }
            let requests = vec![request(s), request(spec(&format!("Batched beside the race {i}")))];
            let results = tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap().into_inner().results;
            results
                .into_iter()
                .map(|r| match r.outcome {
                    Some(pb::enqueue_task_result::Outcome::Enqueued(e)) => e,
                    other => panic!("a batch item failed: {other:?}"),
                })
                .collect()
        }));
    }
    let mut racing_ids = std::collections::HashSet::new();
    let mut created = 0;
    for join in joins {
        let responses = join.await.unwrap();
        let racer = &responses[0];
        created += usize::from(racer.created);
        racing_ids.insert(racer.task.as_ref().unwrap().id.clone());
        assert!(responses[1..].iter().all(|r| r.created), "the other item of a batch is created");
    }
    assert_eq!((racing_ids.len(), created), (1, 1));
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, 1 + 4);
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_log WHERE action = 'created'").await, 1 + 4);
    server.stop().await;
}

#[tokio::test]
async fn trace_ids_are_taken_from_metadata_or_generated() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut req = Request::new(request(spec("Traced from outside")));
    req.metadata_mut().insert("x-trace-id", "trace-abc-123".parse().unwrap());
    let response = tasks.enqueue_task(req).await.unwrap();
    assert_eq!(response.metadata().get("x-trace-id").unwrap(), "trace-abc-123");
    let task = response.into_inner().task.unwrap();
    assert_eq!(task.trace_id, "trace-abc-123");
    let audited = server
        .count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE trace_id = 'trace-abc-123' AND entity_id = '{}'",
            task.id
        ))
        .await;
    assert_eq!(audited, 1);

    let generated = enqueue(&mut tasks, spec("Traced by the server")).await;
    assert!(uuid::Uuid::parse_str(&generated.trace_id).is_ok(), "{}", generated.trace_id);

    let mut req = Request::new(request(spec("Bad trace id")));
    req.metadata_mut().insert("x-trace-id", long(129).parse().unwrap());
    assert_eq!(code_of(tasks.enqueue_task(req).await), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_reports_each_item_on_its_own() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut existing = spec("Existing keyed task");
    existing.idempotency_key = "existing".into();
    let existing = enqueue(&mut tasks, existing).await;

    let mut keyed = spec("Keyed in the batch");
    keyed.idempotency_key = "in-batch".into();
    let mut repeat_existing = spec("Repeats an existing key");
    repeat_existing.idempotency_key = "existing".into();
    let mut bad_policy = spec("Denied repository");
    bad_policy.target = Some(pb::Target { repo: "evil/x".into(), ..Default::default() });
    let items = vec![
        request(spec("First plain item")),
        request(bad_policy),
        request(keyed.clone()),
        request(keyed),
        request(repeat_existing),
        pb::EnqueueTaskRequest { spec: None, create_cwom: false },
    ];
    let results = tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests: items }).await.unwrap().into_inner().results;
    use pb::enqueue_task_result::Outcome;
    let outcome = |i: usize| results[i].outcome.clone().unwrap();
    let Outcome::Enqueued(first) = outcome(0) else { panic!("item 0") };
    assert!(first.created);
    let Outcome::Error(denied) = outcome(1) else { panic!("item 1") };
    assert_eq!((denied.code, denied.reason.as_str()), (Code::InvalidArgument as i32, "REPO_NOT_ALLOWED"));
    let (Outcome::Enqueued(k1), Outcome::Enqueued(k2)) = (outcome(2), outcome(3)) else { panic!("items 2-3") };
    assert!(k1.created && !k2.created);
    assert_eq!(k1.task.unwrap().id, k2.task.unwrap().id);
    let Outcome::Enqueued(rep) = outcome(4) else { panic!("item 4") };
    assert!(!rep.created);
    assert_eq!(rep.task.unwrap().id, existing.id);
    let Outcome::Error(missing) = outcome(5) else { panic!("item 5") };
    assert_eq!(missing.field_violations[0].field, "spec");
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, 3);
    assert_eq!(
        server.count("SELECT COUNT(*) FROM audit_log WHERE action = 'created'").await,
        3,
        "one created entry per new task"
    );

    let too_many = vec![request(spec("One of too many")); 1001];
    let status = tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests: too_many }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

/// Batches of every size the writer splits into statements (on SQLite, fixed sizes of 64 rows and fewer) store
/// each task as answered, with its filter row and its `created` entry.
#[tokio::test]
async fn batches_of_any_size_store_every_task_as_answered() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut answered = Vec::new();
    for size in [1, 3, 64, 65, 130] {
        let requests = (0..size)
            .map(|n| {
                let mut s = spec(&format!("Batch of {size}, item {n}: \"quoted\", accents \u{e9}"));
                s.priority = (n % 7) - 3;
                s.operation = if n % 2 == 0 { "docs".into() } else { "ops".into() };
                s.requested_by.as_mut().unwrap().label = format!("label {n}");
                s.target.as_mut().unwrap().path = format!("src/{n}.rs");
                s.max_attempts = n % 5 + 1;
                request(s)
            })
            .collect();
        let results = tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap().into_inner().results;
        for (n, result) in results.into_iter().enumerate() {
            let Some(pb::enqueue_task_result::Outcome::Enqueued(enqueued)) = result.outcome else {
                panic!("item {n}: {:?}", result.outcome)
            };
            answered.push(enqueued.task.unwrap());
        }
    }
    for task in &answered {
        assert_eq!(&get(&mut tasks, &task.id).await, task);
    }
    let (docs, ops) = answered.iter().partition::<Vec<_>, _>(|t| t.spec.as_ref().unwrap().operation == "docs");
    for (operation, expected) in [("docs", docs), ("ops", ops)] {
        let request = pb::ListTasksRequest { operation: operation.into(), page_size: 1000, ..Default::default() };
        let listed = tasks.list_tasks(request).await.unwrap().into_inner().tasks;
        assert_eq!(listed.len(), expected.len(), "one filter row per {operation} task");
    }
    let created = "SELECT COUNT(*) FROM audit_log WHERE action = 'created'";
    assert_eq!(server.count(created).await, answered.len() as i64);
    server.stop().await;
}

#[tokio::test]
async fn get_task_tells_missing_from_malformed() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let task = enqueue(&mut tasks, spec("Find me later")).await;
    assert_eq!(get(&mut tasks, &task.id).await.id, task.id);
    assert_eq!(get(&mut tasks, &task.id.to_uppercase()).await.id, task.id, "UUIDs are case-insensitive");
    let missing = tasks.get_task(pb::GetTaskRequest { id: uuid::Uuid::now_v7().to_string() }).await;
    assert_eq!(code_of(missing), Code::NotFound);
    let malformed = tasks.get_task(pb::GetTaskRequest { id: "not-a-uuid".into() }).await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(malformed.message().starts_with("id: "), "{}", malformed.message());
    server.stop().await;
}

/// Text compares byte by byte on both backends, whatever the database's own collation: uppercase before lowercase,
/// an accented letter after both. On PostgreSQL every text column of the schema is declared `C`.
#[tokio::test]
async fn text_columns_compare_byte_by_byte() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    for objective in ["Zebra crossing review", "apple orchard survey", "\u{c9}clair recipe check"] {
        enqueue(&mut tasks, spec(objective)).await;
    }
    let before_apple = server.count("SELECT COUNT(*) FROM tasks WHERE objective < 'apple'").await;
    assert_eq!(before_apple, 1, "only 'Zebra ...' sorts before 'apple' in byte order");
    if postgres_admin_url().is_some() {
        let not_bytewise = server
            .count(
                "SELECT COUNT(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' \
                 AND c.relname <> 'seaql_migrations' AND a.attnum > 0 AND NOT a.attisdropped \
                 AND a.attcollation NOT IN (0, 'pg_catalog.\"C\"'::regcollation)",
            )
            .await;
        assert_eq!(not_bytewise, 0, "text columns of another collation than C");
    }
    server.stop().await;
}

#[tokio::test]
async fn list_tasks_filters_and_pages_newest_first() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut s = spec(&format!("Listed task number {i}"));
        if i % 2 == 0 {
            s.operation = "docs".into();
        }
        if i == 3 {
            s.requested_by.as_mut().unwrap().kind = "human".into();
            s.target = Some(pb::Target { repo: "acme/other".into(), ..Default::default() });
        }
        ids.push(enqueue(&mut tasks, s).await.id);
    }
    let list = |req: pb::ListTasksRequest| {
        let mut tasks = tasks.clone();
        async move { tasks.list_tasks(req).await.map(|r| r.into_inner()) }
    };
    let ids_of = |r: &pb::ListTasksResponse| r.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>();

    // Pagination over everything: newest first, no gaps, no repeats.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page =
            list(pb::ListTasksRequest { page_size: 3, page_token: token.clone(), ..Default::default() }).await.unwrap();
        assert!(page.tasks.len() <= 3);
        seen.extend(ids_of(&page));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let docs = list(pb::ListTasksRequest { operation: "docs".into(), ..Default::default() }).await.unwrap();
    assert_eq!(ids_of(&docs), vec![ids[6].clone(), ids[4].clone(), ids[2].clone(), ids[0].clone()]);
    let humans = list(pb::ListTasksRequest { requested_by_kind: "human".into(), ..Default::default() }).await.unwrap();
    assert_eq!(ids_of(&humans), vec![ids[3].clone()]);
    let repo =
        list(pb::ListTasksRequest { target_repo: " ACME/Other.git".into(), ..Default::default() }).await.unwrap();
    assert_eq!(ids_of(&repo), vec![ids[3].clone()]);
    let queued =
        list(pb::ListTasksRequest { status: pb::TaskStatus::Queued as i32, ..Default::default() }).await.unwrap();
    assert_eq!(queued.tasks.len(), 7);
    let running =
        list(pb::ListTasksRequest { status: pb::TaskStatus::Running as i32, ..Default::default() }).await.unwrap();
    assert!(running.tasks.is_empty());
    let nobody = list(pb::ListTasksRequest { worker_id: "w-none".into(), ..Default::default() }).await.unwrap();
    assert!(nobody.tasks.is_empty());

    let first_docs_page =
        list(pb::ListTasksRequest { operation: "docs".into(), page_size: 1, ..Default::default() }).await.unwrap();
    let wrong_filter = list(pb::ListTasksRequest {
        operation: "analysis".into(),
        page_token: first_docs_page.next_page_token,
        ..Default::default()
    })
    .await;
    assert_eq!(code_of(wrong_filter), Code::InvalidArgument);
    let garbage = list(pb::ListTasksRequest { page_token: "garbage!".into(), ..Default::default() }).await;
    assert_eq!(code_of(garbage), Code::InvalidArgument);
    let negative = list(pb::ListTasksRequest { page_size: -1, ..Default::default() }).await;
    assert_eq!(code_of(negative), Code::InvalidArgument);
    let bad_status = list(pb::ListTasksRequest { status: 99, ..Default::default() }).await;
    assert_eq!(code_of(bad_status), Code::InvalidArgument);
    server.stop().await;
}

/// Filters on a task's immutable attributes page newest first and combine with its status, whichever way the task
/// came in: one by one, with a work model, or in a batch.
#[tokio::test]
async fn filtered_lists_page_and_combine_with_status_whichever_way_tasks_came_in() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let docs = |objective: &str| {
        let mut s = spec(objective);
        s.operation = "docs".into();
        s
    };
    let mut expected = vec![enqueue(&mut tasks, docs("Docs one by one")).await.id];
    let with_model = pb::EnqueueTaskRequest { spec: Some(docs("Docs with a work model")), create_cwom: true };
    expected.push(tasks.enqueue_task(with_model).await.unwrap().into_inner().task.unwrap().id);
    let requests =
        (0..6).map(|i| request(if i % 2 == 0 { docs(&format!("Batch {i}")) } else { spec("Other") })).collect();
    let results = tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap().into_inner().results;
    for (i, result) in results.into_iter().enumerate() {
        let Some(pb::enqueue_task_result::Outcome::Enqueued(enqueued)) = result.outcome else { panic!("item {i}") };
        if i % 2 == 0 {
            expected.push(enqueued.task.unwrap().id);
        }
    }
    expected.reverse();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListTasksRequest {
            operation: "docs".into(),
            requested_by_kind: "agent".into(),
            target_repo: "acme/widgets".into(),
            page_size: 2,
            page_token: token,
            ..Default::default()
        };
        let page = tasks.list_tasks(request).await.unwrap().into_inner();
        assert!(page.tasks.len() <= 2);
        seen.extend(page.tasks.iter().map(|t| t.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, expected, "every docs task, newest first, each once");

    // The oldest docs task runs; the status filter splits the docs tasks.
    let mut workers = server.workers().await;
    let mut stream = pull(&mut workers, "docs-worker", 1).await;
    let running = next_assignment(&mut stream).await.task.unwrap().id;
    assert_eq!(&running, expected.last().unwrap());
    let by_status = |status: pb::TaskStatus| pb::ListTasksRequest {
        operation: "docs".into(),
        status: status as i32,
        ..Default::default()
    };
    let listed = tasks.list_tasks(by_status(pb::TaskStatus::Running)).await.unwrap().into_inner().tasks;
    assert_eq!(listed.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), [running]);
    let listed = tasks.list_tasks(by_status(pb::TaskStatus::Queued)).await.unwrap().into_inner().tasks;
    assert_eq!(listed.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), expected[..expected.len() - 1]);
    server.stop().await;
}

#[tokio::test]
async fn cancel_a_queued_task() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let task = enqueue(&mut tasks, spec("Cancel me while queued")).await;
    let cancelled = tasks
        .cancel_task(pb::CancelTaskRequest { id: task.id.clone(), reason: "not needed".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status(), pb::TaskStatus::Cancelled);
    assert!(cancelled.completed_at.is_some());
    assert_eq!(cancelled.error, "cancelled: not needed");
    let again = tasks.cancel_task(pb::CancelTaskRequest { id: task.id.clone(), reason: String::new() }).await;
    assert_eq!(again.unwrap().into_inner().status(), pb::TaskStatus::Cancelled, "cancelling twice is harmless");
    let entries = server
        .count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE entity_id = '{}' AND action = 'status_changed' AND actor_id = 'operator'",
            task.id
        ))
        .await;
    assert_eq!(entries, 1, "one audit entry for the one change");
    let missing =
        tasks.cancel_task(pb::CancelTaskRequest { id: uuid::Uuid::now_v7().to_string(), reason: String::new() });
    assert_eq!(code_of(missing.await), Code::NotFound);
    server.stop().await;
}
