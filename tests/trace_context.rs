//! Trace context: the caller's trace reaches the task, the audit log and the worker's logs.

mod common;

use std::time::Duration;

use common::{TestServer, spec};
use control_tower::pb;

/// A W3C traceparent from the caller becomes the task's trace id, and the worker's JSON logs carry it with the task
/// id on every line about the task.
#[tokio::test]
async fn the_callers_trace_flows_into_the_task_the_audit_log_and_the_workers_logs() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(common::request(spec("Follow the trace")));
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    let task = tasks.enqueue_task(request).await.unwrap().into_inner().task.unwrap();
    assert_eq!(task.trace_id, trace_id);

    let log = server.dir.path().join("worker.log");
    let _worker = common::Process::spawn(
        &["worker", "--server", &server.url(), "--worker-id", "json-worker", "--log-format", "json"],
        &[],
        log.clone(),
    );
    common::wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Completed).await;
    let audit_traces = server
        .count(&format!("SELECT COUNT(*) FROM audit_log WHERE entity_id = '{}' AND trace_id = '{trace_id}'", task.id))
        .await;
    assert!(audit_traces >= 3, "created, running and completed are filed under the trace");

    let settled = || {
        std::fs::read_to_string(&log).unwrap_or_default().lines().find_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            (entry["message"] == "task settled").then_some(entry)
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let entry = loop {
        if let Some(entry) = settled() {
            break entry;
        }
        assert!(tokio::time::Instant::now() < deadline, "no JSON log line for the settled task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry["span"]["trace_id"], trace_id, "{entry}");
    assert_eq!(entry["span"]["task_id"], task.id.as_str(), "{entry}");
    server.stop().await;
}
