//! Limits per identity and per request: open streams, enqueue rate (with a retry delay), inputs size, message size.

mod common;

use std::time::Duration;

use common::{TestServer, json_struct, spec};
use control_tower::{auth::tokens::hash_token, client::ControlTower, pb};
use tonic::Code;
use tonic_types::StatusExt;

fn table() -> String {
    ["alice", "bob"].iter().map(|who| format!("agent {who} sha256:{}\n", hash_token(who))).collect()
}

async fn as_agent(server: &TestServer, who: &str) -> ControlTower {
    ControlTower::connect(server.url()).await.unwrap().with_token(who).unwrap()
}

fn mine(objective: &str) -> pb::TaskSpec {
    pb::TaskSpec { requested_by: None, ..spec(objective) }
}

#[tokio::test]
async fn each_identity_holds_a_bounded_number_of_open_streams() {
    let server = TestServer::configured(|config| {
        config.tokens.inline = Some(table());
        config.limits.max_streams_per_identity = 2;
    })
    .await;
    let alice = as_agent(&server, "alice").await;
    let watch = || {
        let alice = alice.clone();
        async move { alice.tasks().watch_tasks(pb::WatchTasksRequest::default()).await }
    };
    let first = watch().await.unwrap();
    let _second = watch().await.unwrap();
    let third = watch().await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert!(third.message().contains("JCT_MAX_STREAMS_PER_IDENTITY"), "{}", third.message());
    as_agent(&server, "bob").await.tasks().watch_tasks(pb::WatchTasksRequest::default()).await.unwrap();

    // Closing a stream gives its place back.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while watch().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the closed stream's place never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn enqueueing_faster_than_the_rate_is_refused_with_a_retry_delay() {
    let server = TestServer::configured(|config| {
        config.tokens.inline = Some(table());
        config.limits.enqueue_rate = std::num::NonZeroU32::new(1);
        config.limits.enqueue_burst = std::num::NonZeroU32::new(3).unwrap();
    })
    .await;
    let alice = as_agent(&server, "alice").await;
    for n in 0..3 {
        alice.enqueue(mine(&format!("Burst task {n}")), None).await.unwrap();
    }
    let refused = alice.enqueue(mine("One too many"), None).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let retry = refused.get_details_retry_info().expect("RetryInfo").retry_delay.expect("a delay");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1), "{retry:?}");
    let batch = (0..4).map(|n| common::request(mine(&format!("Batch {n}")))).collect();
    assert_eq!(alice.enqueue_many(batch, None).await.unwrap_err().code(), Code::ResourceExhausted);
    // Bob has a bucket of his own.
    as_agent(&server, "bob").await.enqueue(mine("Bob's task"), None).await.unwrap();
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, 4, "refused tasks wrote nothing");
    server.stop().await;
}

#[tokio::test]
async fn oversized_inputs_and_messages_are_refused_and_the_server_carries_on() {
    let server = TestServer::configured(|config| {
        config.limits.max_inputs_bytes = 1024;
        config.limits.max_message_bytes = 64 * 1024;
    })
    .await;
    let mut tasks = server.tasks().await;
    let mut big = spec("Carry too much");
    big.inputs = Some(json_struct(serde_json::json!({ "blob": "x".repeat(2000) })));
    let refused = tasks.enqueue_task(common::request(big)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().starts_with("spec.inputs:"), "{}", refused.message());

    let mut huge = spec("Send too much");
    huge.metadata = Some(json_struct(serde_json::json!({ "blob": "x".repeat(100 * 1024) })));
    let refused = tasks.enqueue_task(common::request(huge)).await.unwrap_err();
    // tonic refuses a message over the decoding limit before it reaches the service.
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");

    assert_eq!(server.count("SELECT COUNT(*) FROM tasks").await, 0);
    common::enqueue(&mut tasks, spec("Still serving")).await;
    server.stop().await;
}
