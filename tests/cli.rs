//! The operator CLI: the real binary against a real server, JSON files on disk, exit codes as scripts see them.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use common::TestServer;
use serde_json::{Value as Json, json};

/// Runs the CLI without blocking the test's runtime, which also serves the server.
async fn control_tower(server: &TestServer, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_control-tower"))
        .args(args)
        .env("JCT_SERVER", server.url())
        .env_remove("JCT_TOKEN")
        .output()
        .await
        .expect("run control-tower")
}

fn stdout_json(output: &Output) -> Json {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn spec(objective: &str, repo: &str) -> Json {
    json!({
        "objective": objective,
        "operation": "ops",
        "target": { "repo": repo },
        "requested_by": { "kind": "human", "id": "ops-1" },
        "inputs": { "n": 1 },
    })
}

fn write_json(dir: &Path, name: &str, value: &Json) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(value).unwrap()).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn an_operator_enqueues_finds_follows_and_cancels_a_task() {
    let server = TestServer::start().await;
    let file = write_json(server.dir.path(), "spec.json", &spec("Rotate the staging keys", "acme/app"));

    let enqueued = control_tower(&server, &["task", "enqueue", "-f", &file, "--trace-id", "cli-1", "-o", "json"]).await;
    assert_eq!(enqueued.status.code(), Some(0), "{}", String::from_utf8_lossy(&enqueued.stderr));
    let enqueued = stdout_json(&enqueued);
    assert_eq!(enqueued["created"], json!(true));
    let id = enqueued["task"]["id"].as_str().expect("task id").to_owned();
    assert_eq!(enqueued["task"]["trace_id"], json!("cli-1"));

    let table = control_tower(&server, &["task", "list", "--status", "queued"]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("ID"), "a table with a header: {table}");
    assert!(table.contains(&id) && table.contains("Rotate the staging keys"), "{table}");

    let listed = stdout_json(&control_tower(&server, &["task", "list", "--repo", "acme/app", "-o", "json"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    let got = stdout_json(&control_tower(&server, &["task", "get", &id, "--output", "json"]).await);
    assert_eq!(got["status"], json!("TASK_STATUS_QUEUED"));
    assert_eq!(got["spec"]["inputs"], json!({ "n": 1.0 }), "inputs are a protobuf Struct: numbers are doubles");

    let cancelled = control_tower(&server, &["task", "cancel", &id, "--reason", "not needed", "-o", "json"]).await;
    assert_eq!(cancelled.status.code(), Some(0));
    assert_eq!(stdout_json(&cancelled)["status"], json!("TASK_STATUS_CANCELLED"));

    let trail = stdout_json(&control_tower(&server, &["audit", "list", "--trace-id", "cli-1", "-o", "json"]).await);
    let actions: Vec<&str> = trail.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["status_changed", "created"], "newest first");
    server.stop().await;
}

#[tokio::test]
async fn exit_codes_tell_scripts_what_went_wrong() {
    let server = TestServer::start().await;
    let missing = control_tower(&server, &["task", "get", "01a1fbe9-6ef0-703e-8741-2f40065126b0"]).await;
    assert_eq!(missing.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));

    let refused = write_json(server.dir.path(), "refused.json", &spec("Deploy somewhere else", "evil/app"));
    let refused = control_tower(&server, &["task", "enqueue", "-f", &refused]).await;
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("REPO_NOT_ALLOWED"), "the policy code is shown");

    let enqueued = write_json(server.dir.path(), "ok.json", &spec("Tidy the changelog", "acme/app"));
    let id =
        stdout_json(&control_tower(&server, &["task", "enqueue", "-f", &enqueued, "-o", "json"]).await)["task"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    control_tower(&server, &["task", "cancel", &id]).await;
    let sql = format!("UPDATE tasks SET status = 'completed' WHERE id = '{id}'");
    server.sql(&sql).await.expect("end the task");
    let too_late = control_tower(&server, &["task", "cancel", &id]).await;
    assert_eq!(too_late.status.code(), Some(5), "{}", String::from_utf8_lossy(&too_late.stderr));

    let not_json = write_json(server.dir.path(), "bad.json", &json!("just a string"));
    assert_eq!(control_tower(&server, &["task", "enqueue", "-f", &not_json]).await.status.code(), Some(1));
    assert_eq!(control_tower(&server, &["task", "frobnicate"]).await.status.code(), Some(2));

    let unreachable = tokio::process::Command::new(env!("CARGO_BIN_EXE_control-tower"))
        .args(["task", "list", "--server", "http://127.0.0.1:1"])
        .output()
        .await
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(6));
    server.stop().await;
}

#[tokio::test]
async fn a_file_of_many_specs_is_enqueued_in_batches_and_each_refusal_is_reported() {
    let server = TestServer::start().await;
    let mut specs: Vec<Json> = (0..1200).map(|i| spec(&format!("Batch task number {i}"), "acme/app")).collect();
    specs[700] = spec("Not allowed here", "evil/app");
    let file = write_json(server.dir.path(), "many.json", &Json::Array(specs));

    let output = control_tower(&server, &["task", "enqueue", "-f", &file, "-o", "json"]).await;
    assert_eq!(output.status.code(), Some(3), "one item was refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("enqueued 500/1200") && stderr.contains("enqueued 1200/1200"), "progress: {stderr}");
    assert!(stderr.contains("1 of 1200 refused"), "{stderr}");
    let results = stdout_json(&output);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 1200);
    assert_eq!(results[700]["error"]["reason"], json!("REPO_NOT_ALLOWED"));
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, 1199);
    server.stop().await;
}

#[tokio::test]
async fn watch_prints_each_transition_as_it_happens() {
    let server = TestServer::start().await;
    let mut watch = Command::new(env!("CARGO_BIN_EXE_control-tower"))
        .args(["task", "watch", "-o", "json", "--server", &server.url()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // The watch starts with transitions from now on: enqueue until the first one shows (the stream may still
    // be opening when the first enqueue commits).
    let file = write_json(server.dir.path(), "spec.json", &spec("Watch me change", "acme/app"));
    let mut event = None;
    for _ in 0..50 {
        control_tower(&server, &["task", "enqueue", "-f", &file]).await;
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(200), lines.recv()).await {
            event = Some(line);
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let event: Json = serde_json::from_str(&event.expect("a transition was printed")).unwrap();
    assert_eq!(event["action"], json!("created"));
    assert_eq!(event["to_status"], json!("TASK_STATUS_QUEUED"));
    assert!(event["cursor"].as_str().is_some_and(|c| !c.is_empty()), "each line carries its cursor");
    server.stop().await;
}

#[tokio::test]
async fn work_model_objects_are_created_from_files_and_listed_with_filters() {
    let server = TestServer::start().await;
    let repo = write_json(
        server.dir.path(),
        "repo.json",
        &json!({ "name": "Payments", "slug": "acme/payments", "visibility": "VISIBILITY_PRIVATE" }),
    );
    let created = control_tower(&server, &["cwom", "repo", "create", "-f", &repo, "-o", "json"]).await;
    assert_eq!(created.status.code(), Some(0), "{}", String::from_utf8_lossy(&created.stderr));
    let created = stdout_json(&created);
    let id = created["id"].as_str().unwrap().to_owned();

    let got = stdout_json(&control_tower(&server, &["cwom", "repo", "get", &id, "-o", "json"]).await);
    assert_eq!(got["slug"], json!("acme/payments"));

    let private =
        control_tower(&server, &["cwom", "repo", "list", "--where", "visibility=VISIBILITY_PRIVATE", "-o", "json"])
            .await;
    assert_eq!(stdout_json(&private).as_array().map(Vec::len), Some(1));
    let public =
        control_tower(&server, &["cwom", "repo", "list", "--where", "visibility=VISIBILITY_PUBLIC", "-o", "json"])
            .await;
    assert_eq!(stdout_json(&public).as_array().map(Vec::len), Some(0));

    let table = String::from_utf8(control_tower(&server, &["cwom", "repo", "list"]).await.stdout).unwrap();
    assert!(table.starts_with("ID") && table.contains(&id), "{table}");

    let again = control_tower(&server, &["cwom", "repo", "create", "-f", &repo]).await;
    assert_eq!(again.status.code(), Some(5), "a duplicate slug is a conflict");
    let missing = control_tower(&server, &["cwom", "issue", "get", "01a1fbe9-6ef0-703e-8741-2f40065126b0"]).await;
    assert_eq!(missing.status.code(), Some(4));
    server.stop().await;
}

#[test]
fn shell_completion_scripts_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(env!("CARGO_BIN_EXE_control-tower")).args(["completions", shell]).output().unwrap();
        assert_eq!(output.status.code(), Some(0));
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains("control-tower") && script.contains("enqueue"), "{shell} completion");
    }
}
