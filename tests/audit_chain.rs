//! The tamper-evident audit log: the sealer chains every entry by hash behind the writers, verification recomputes
//! the chain, and an entry edited or deleted behind the server's back is reported as the first broken link.

mod common;

use std::time::Duration;

use common::{TestServer, enqueue, spec};
use control_tower::pb::{self, audit_service_client::AuditServiceClient};
use tonic::transport::Channel;

async fn server() -> TestServer {
    TestServer::configured(|config| config.audit_seal_interval = Duration::from_millis(20)).await
}

/// Verifies once everything written so far is sealed.
async fn verify_all_sealed(audit: &mut AuditServiceClient<Channel>) -> pb::VerifyAuditChainResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner();
        if report.entries_unsealed == 0 {
            return report;
        }
        assert!(tokio::time::Instant::now() < deadline, "entries stay unsealed: {report:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Audit entry ids in chain order (the order entries became visible).
async fn entry_ids(server: &TestServer) -> Vec<i64> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &server.state.db;
    let sql = "SELECT audit_id FROM audit_seals ORDER BY seq";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|row| row.try_get::<i64>("", "audit_id").unwrap()).collect()
}

async fn some_history(server: &TestServer) {
    let mut tasks = server.tasks().await;
    for n in 0..5 {
        let task = enqueue(&mut tasks, spec(&format!("Chain link number {n}"))).await;
        if n % 2 == 0 {
            tasks.cancel_task(pb::CancelTaskRequest { id: task.id, reason: "not needed".into() }).await.unwrap();
        }
    }
}

#[tokio::test]
async fn an_edited_entry_breaks_the_chain_at_that_entry() {
    let server = server().await;
    some_history(&server).await;
    let mut audit = AuditServiceClient::new(server.channel().await);
    let report = verify_all_sealed(&mut audit).await;
    assert!(report.intact, "{report:?}");
    assert_eq!(report.entries_verified, 8, "5 created + 3 cancelled");
    assert_eq!(report.head_seq, 8);
    assert_eq!(report.head_hash.len(), 64);

    // Behind the server's back: someone rewrites who cancelled a task.
    let ids = entry_ids(&server).await;
    let victim = ids[5];
    server.sql(&format!("UPDATE audit_log SET actor_id = 'mallory' WHERE id = {victim}")).await.unwrap();
    let report = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner();
    assert!(!report.intact);
    assert_eq!(report.entries_verified, 5, "every link before the edited one holds");
    let broken = report.first_broken.expect("the broken link");
    assert_eq!((broken.seq, broken.audit_id), (6, victim));
    assert!(broken.reason.contains("does not match its seal"), "{}", broken.reason);

    // New entries are still sealed after the break, and the break is still found.
    some_history(&server).await;
    let report = verify_all_sealed(&mut audit).await;
    assert_eq!(report.first_broken.map(|b| b.audit_id), Some(victim));
    assert_eq!(report.head_seq, 16);
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_entry_or_a_removed_seal_is_found() {
    let server = server().await;
    some_history(&server).await;
    let mut audit = AuditServiceClient::new(server.channel().await);
    assert!(verify_all_sealed(&mut audit).await.intact);
    let ids = entry_ids(&server).await;

    server.sql(&format!("DELETE FROM audit_log WHERE id = {}", ids[4])).await.unwrap();
    let broken = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner().first_broken;
    let broken = broken.expect("a broken link");
    assert_eq!((broken.seq, broken.audit_id), (5, ids[4]));
    assert!(broken.reason.contains("was deleted"), "{}", broken.reason);

    server.sql("DELETE FROM audit_seals WHERE seq = 3").await.unwrap();
    let broken = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner().first_broken;
    let broken = broken.expect("a broken link");
    assert_eq!(broken.seq, 3);
    assert!(broken.reason.contains("seal 3 is missing"), "{}", broken.reason);
    server.stop().await;
}

#[tokio::test]
async fn the_operator_verifies_from_the_command_line() {
    let server = server().await;
    some_history(&server).await;
    let mut audit = AuditServiceClient::new(server.channel().await);
    verify_all_sealed(&mut audit).await;
    let verify = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_control-tower"))
            .args(["audit", "verify"])
            .env("JCT_SERVER", server.url())
            .env_remove("JCT_TOKEN")
            .output()
    };
    let intact = verify().await.unwrap();
    assert_eq!(intact.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&intact.stdout).contains("intact"));

    let victim = entry_ids(&server).await[2];
    server.sql(&format!("UPDATE audit_log SET note = 'nothing happened' WHERE id = {victim}")).await.unwrap();
    let broken = verify().await.unwrap();
    assert_eq!(broken.status.code(), Some(9), "exit code 9: the chain is broken");
    let said = String::from_utf8_lossy(&broken.stdout);
    assert!(said.contains("BROKEN") && said.contains(&victim.to_string()), "{said}");
    server.stop().await;
}
