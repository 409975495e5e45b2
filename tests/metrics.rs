//! /metrics on its own port: the queue by status and operation, dispatch latency, streams, retries, RPC latency by
//! method and code, and the database pool, as a Prometheus scraper reads them.
//!
//! Counters belong to the process, so this file holds one test: no other test's calls are counted with its own.

mod common;

use std::time::Duration;

use common::{TestServer, enqueue, next_assignment, pull, spec};
use control_tower::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(server: &TestServer) -> String {
    let addr = server.state.metrics_addr.expect("metrics are served");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: scraper\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    body.to_owned()
}

/// The value of the sample whose name and labels start the line.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn an_operator_graphs_the_queue_and_the_dispatch_from_metrics() {
    let server = TestServer::configured(|config| config.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    for n in 0..3 {
        enqueue(&mut tasks, spec(&format!("Analyse module {n}"))).await;
    }
    enqueue(&mut tasks, pb::TaskSpec { operation: "docs".into(), ..spec("Document the module") }).await;
    let refused = tasks.enqueue_task(common::request(spec("x"))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let text = scrape(&server).await;
    assert_eq!(sample(&text, r#"control_tower_tasks{status="queued",operation="analysis"}"#), 3.0);
    assert_eq!(sample(&text, r#"control_tower_tasks{status="queued",operation="docs"}"#), 1.0);
    assert_eq!(sample(&text, r#"control_tower_tasks{status="queued",operation="all"}"#), 4.0);
    assert_eq!(sample(&text, r#"control_tower_tasks{status="running",operation="all"}"#), 0.0);
    let enqueue_ok =
        r#"control_tower_rpc_duration_seconds_count{method="controltower.v1.TaskService/EnqueueTask",code="OK"}"#;
    assert_eq!(sample(&text, enqueue_ok), 4.0);
    let enqueue_refused = r#"control_tower_rpc_duration_seconds_count{method="controltower.v1.TaskService/EnqueueTask",code="InvalidArgument"}"#;
    assert_eq!(sample(&text, enqueue_refused), 1.0);
    assert!(sample(&text, r#"control_tower_db_pool_max_connections"#) >= 1.0);

    // A worker takes a task, fails it retryably (back to the queue, after a backoff), and takes the next.
    let mut stream = pull(&mut workers, "metrics-worker", 1).await;
    let first = next_assignment(&mut stream).await;
    workers
        .fail_task(pb::FailTaskRequest { lease_id: first.lease_id, error: "flaky network".into(), retryable: true })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = scrape(&server).await;
        if sample(&text, r#"control_tower_tasks{status="running",operation="all"}"#) == 1.0
            && sample(&text, "control_tower_dispatch_latency_seconds_count") >= 2.0
        {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "the running gauge never settled:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&text, "control_tower_worker_streams"), 1.0);
    assert_eq!(sample(&text, r#"control_tower_task_retries_total{reason="failure"}"#), 1.0);
    assert!(text.contains("# TYPE control_tower_lease_expiries counter"), "{text}");

    // Paths that are not methods share one label, so callers cannot grow the metrics.
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/controltower.v1.TaskService/NoSuchMethod");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    assert!(grpc.unary(tonic::Request::new(()), path, codec).await.is_err());
    let text = scrape(&server).await;
    assert!(text.contains(r#"method="unknown",code="Unimplemented""#), "{text}");
    assert!(!text.contains("NoSuchMethod"));
    server.stop().await;
}
