//! The spine end to end with real processes: enqueue -> database -> a `control-tower worker` process over the
//! PullTasks stream -> trace folder on disk, with the echo and the exec handlers; graceful shutdown by signal.

mod common;

use std::time::Duration;

use common::*;
use control_tower::pb;
use tonic::{Request, transport::Channel};

fn read_json(path: std::path::PathBuf) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[tokio::test]
async fn a_task_runs_through_a_worker_process_into_its_trace_folder() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut s = spec("Summarise the repository");
    s.inputs = Some(json_struct(serde_json::json!({"greeting": "hi", "n": 3, "nested": {"list": [1, "two"]}})));
    let mut req = Request::new(request(s));
    req.metadata_mut().insert("x-trace-id", "spine-trace-1".parse().unwrap());
    let task = tasks.enqueue_task(req).await.unwrap().into_inner().task.unwrap();

    let url = server.url();
    let mut worker = Process::spawn(
        &["worker", "--server", &url, "--worker-id", "spine-worker", "--concurrency", "2"],
        &[],
        server.dir.path().join("worker.log"),
    );
    let done = wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Completed).await;
    assert_eq!(done.result, task.spec.as_ref().unwrap().inputs, "echo returns the inputs");
    assert_eq!(done.worker_id, "spine-worker");
    assert_eq!(done.attempt, 1);
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    let dir = server.task_dir(&task.id);
    assert_eq!(done.trace_path, format!("file://{}", dir.display()));
    let row =
        format!("SELECT COUNT(*) FROM tasks WHERE id = '{}' AND status = 'completed' AND result IS NOT NULL", task.id);
    assert_eq!(server.count(&row).await, 1);

    let input = read_json(dir.join("input.json"));
    assert_eq!((input["id"].as_str(), input["trace_id"].as_str()), (Some(task.id.as_str()), Some("spine-trace-1")));
    assert_eq!(input["spec"]["inputs"]["nested"]["list"], serde_json::json!([1, "two"]));
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    assert!(log.contains("echo: objective: Summarise the repository"), "{log}");
    assert!(log.contains("attempt 1 on worker spine-worker"), "{log}");
    // output.json is written just after the completion commits, so a poller can see the status first.
    eventually("output.json", || dir.join("output.json").is_file()).await;
    let output = read_json(dir.join("output.json"));
    assert_eq!(output["trace_id"], "spine-trace-1");
    assert_eq!(output["result"]["greeting"], "hi");

    let story =
        server.count("SELECT COUNT(*) FROM audit_log WHERE trace_id = 'spine-trace-1' AND entity_kind = 'Task'").await;
    assert_eq!(story, 3, "created, leased, completed");

    // The worker stays up for more work, and stops cleanly on SIGTERM.
    let second = enqueue(&mut tasks, spec("And another one")).await;
    wait_for_status(&mut tasks, &second.id, pb::TaskStatus::Completed).await;
    worker.signal(libc::SIGTERM);
    let status = worker.wait().await;
    assert!(status.success(), "worker exit {status:?}; log:\n{}", worker.output());
    server.stop().await;
}

#[tokio::test]
async fn an_exec_worker_streams_its_log_and_takes_its_result() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let go = server.dir.path().join("go");
    // Reads the task from stdin, logs to both streams, waits for the test, then writes its result file.
    let script = format!(
        "grep -o \"$JCT_TASK_ID\" | head -n 1; echo started; echo warming up >&2; \
         while [ ! -f {go} ]; do sleep 0.05; done; \
         echo done; printf '{{\"answer\": 42, \"attempt\": %s}}' \"$JCT_ATTEMPT\" > \"$JCT_RESULT_FILE\"",
        go = go.display()
    );
    let url = server.url();
    let _worker = Process::spawn(
        &["worker", "--server", &url, "--worker-id", "exec-worker", "--exec", &script],
        &[],
        server.dir.path().join("worker.log"),
    );
    let task = enqueue(&mut tasks, spec("Run the agent command")).await;
    let log_path = server.task_dir(&task.id).join("log.txt");
    // The log streams while the command runs: "started" arrives before the command may finish.
    eventually("the first log lines", || {
        std::fs::read_to_string(&log_path).map(|l| l.contains("started")).unwrap_or(false)
    })
    .await;
    assert_eq!(get(&mut tasks, &task.id).await.status(), pb::TaskStatus::Running);
    std::fs::write(&go, b"").unwrap();

    let done = wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Completed).await;
    assert_eq!(
        control_tower::json::struct_to_json(done.result.unwrap()),
        serde_json::json!({"answer": 42, "attempt": 1})
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains(&task.id), "the command read the task from stdin: {log}");
    assert!(log.contains("[stderr] warming up"), "{log}");
    assert!(log.contains("\ndone\n"), "{log}");
    server.stop().await;
}

#[tokio::test]
async fn exec_results_and_exit_codes_map_to_outcomes() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    // The objective picks the behaviour, so one worker covers every case.
    let script = r#"obj=$(grep -o '"objective":"[^"]*"'); case "$obj" in
        *stdout-json*) echo 'noise'; echo '{"from": "stdout"}' ;;
        *plain*) echo 'no json here' ;;
        *exit-three*) echo 'bad input' >&2; exit 3 ;;
        *tempfail*) exit 75 ;;
        *bad-result*) echo 'not json' > "$JCT_RESULT_FILE" ;;
        esac"#;
    let url = server.url();
    let _worker = Process::spawn(
        &["worker", "--server", &url, "--exec", script, "--concurrency", "3"],
        &[],
        server.dir.path().join("worker.log"),
    );
    let submit = |objective: &'static str| {
        let mut tasks = tasks.clone();
        async move {
            let mut s = spec(objective);
            s.max_attempts = 1;
            enqueue(&mut tasks, s).await.id
        }
    };
    let stdout_json = submit("case stdout-json").await;
    let plain = submit("case plain").await;
    let exit_three = submit("case exit-three").await;
    let tempfail = submit("case tempfail").await;
    let bad_result = submit("case bad-result").await;

    let result = |t: pb::Task| control_tower::json::struct_to_json(t.result.unwrap());
    let t = wait_for_status(&mut tasks, &stdout_json, pb::TaskStatus::Completed).await;
    assert_eq!(result(t), serde_json::json!({"from": "stdout"}));
    let t = wait_for_status(&mut tasks, &plain, pb::TaskStatus::Completed).await;
    assert_eq!(result(t), serde_json::json!({"exit_code": 0}));
    let t = wait_for_status(&mut tasks, &exit_three, pb::TaskStatus::Failed).await;
    assert_eq!(t.error, "command exited with status 3: bad input");
    let t = wait_for_status(&mut tasks, &tempfail, pb::TaskStatus::Failed).await;
    assert!(t.error.contains("status 75 (retryable)"), "{}", t.error);
    let retried =
        format!("SELECT COUNT(*) FROM audit_log WHERE entity_id = '{tempfail}' AND note LIKE '%attempts exhausted%'");
    assert_eq!(server.count(&retried).await, 1, "retryable, but max_attempts = 1");
    let t = wait_for_status(&mut tasks, &bad_result, pb::TaskStatus::Failed).await;
    assert!(t.error.contains("does not hold valid JSON"), "{}", t.error);
    server.stop().await;
}

#[tokio::test]
async fn a_scheduled_task_waits_for_its_time() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let url = server.url();
    let _worker = Process::spawn(&["worker", "--server", &url], &[], server.dir.path().join("worker.log"));
    let mut s = spec("Not before its time");
    let at = control_tower::clock::Clock::now(&control_tower::clock::SystemClock) + 1_500_000;
    s.run_after = Some(control_tower::convert::timestamp(at));
    let task = enqueue(&mut tasks, s).await;
    assert_eq!(task.status(), pb::TaskStatus::Queued);
    let done = wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Completed).await;
    let started = done.started_at.unwrap();
    let started = started.seconds * 1_000_000 + i64::from(started.nanos / 1000);
    assert!(started >= at, "started {started} before its run_after {at}");
    server.stop().await;
}

#[tokio::test]
async fn a_killed_worker_process_loses_its_lease_and_another_finishes_the_task() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let url = server.url();
    let pid_file = server.dir.path().join("agent.pid");
    let agent = format!("echo $$ > {}; exec sleep 300", pid_file.display());
    let mut doomed = Process::spawn(
        &["worker", "--server", &url, "--worker-id", "doomed", "--exec", &agent],
        &[],
        server.dir.path().join("doomed.log"),
    );
    let task = enqueue(&mut tasks, spec("Outlive a crashed worker")).await;
    wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Running).await;
    eventually("the agent to start", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim().parse::<i32>().is_ok())
    })
    .await;
    let agent_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    doomed.signal(libc::SIGKILL);
    doomed.wait().await;
    // SAFETY: signal 0 only checks that the process exists.
    eventually("the agent to die with its worker", || unsafe { libc::kill(agent_pid, 0) } != 0).await;

    let requeued = wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Queued).await;
    assert_eq!(requeued.attempt, 1);
    let _rescuer = Process::spawn(
        &["worker", "--server", &url, "--worker-id", "rescuer"],
        &[],
        server.dir.path().join("rescuer.log"),
    );
    let done = wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Completed).await;
    assert_eq!((done.attempt, done.worker_id.as_str()), (2, "rescuer"));
    assert!(server.task_dir(&task.id).join("attempts/1/input.json").is_file());
    server.stop().await;
}

/// Starts `control-tower serve` on a fixed port and waits until it answers.
async fn serve_process(dir: &std::path::Path, database_url: &str, listen: &str, log: &str) -> (Process, Channel) {
    let traces = dir.join("traces");
    let mut server = Process::spawn(
        &["serve"],
        &[
            ("DATABASE_URL", database_url),
            ("JCT_LISTEN_ADDR", listen),
            ("JCT_TRACE_ROOT", traces.to_str().unwrap()),
            ("JCT_ALLOWED_REPO_PREFIXES", "acme/"),
        ],
        dir.join(log),
    );
    let url = format!("http://{listen}");
    loop {
        match Channel::from_shared(url.clone()).unwrap().connect().await {
            Ok(channel) => return (server, channel),
            Err(_) => {
                assert!(server.child.try_wait().unwrap().is_none(), "server exited: {}", server.output());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn server_and_worker_processes_shut_down_gracefully_and_the_worker_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, postgres_db) = fresh_database(&dir).await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let (mut server, channel) = serve_process(dir.path(), &database_url, &listen, "server.log").await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(serving.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let mut tasks = pb::task_service_client::TaskServiceClient::new(channel);
    let mut worker =
        Process::spawn(&["worker", "--server", &url, "--worker-id", "graceful"], &[], dir.path().join("worker.log"));
    let task = enqueue(&mut tasks, spec("Before the shutdown")).await;
    wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Completed).await;
    let output = dir.path().join("traces").join(&task.id).join("output.json");
    eventually("output.json", || output.is_file()).await;

    server.signal(libc::SIGTERM);
    let status = server.wait().await;
    assert!(status.success(), "server exit {status:?}; log:\n{}", server.output());
    assert!(server.output().contains("stopped"), "{}", server.output());
    let server_log = server.output();
    assert!(!server_log.contains("ERROR") && !server_log.contains("panicked"), "{server_log}");

    // The worker stays up while the server is away and picks up work again once it is back.
    let (_restarted, channel) = serve_process(dir.path(), &database_url, &listen, "server2.log").await;
    assert!(worker.child.try_wait().unwrap().is_none(), "the worker kept running: {}", worker.output());
    let mut tasks = pb::task_service_client::TaskServiceClient::new(channel);
    let after = enqueue(&mut tasks, spec("After the restart")).await;
    let done = wait_for_status(&mut tasks, &after.id, pb::TaskStatus::Completed).await;
    assert_eq!(done.worker_id, "graceful");

    worker.signal(libc::SIGTERM);
    let status = worker.wait().await;
    assert!(status.success(), "worker exit {status:?}; log:\n{}", worker.output());
    if let (Some(admin), Some(db)) = (postgres_admin_url(), postgres_db) {
        drop_database(&admin, &db).await;
    }
}
