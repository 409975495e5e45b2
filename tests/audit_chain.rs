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

/// Verifies until the report satisfies `ready`, polling while the sealer catches up.
async fn verify_when(
    audit: &mut AuditServiceClient<Channel>,
    ready: impl Fn(&pb::VerifyAuditChainResponse) -> bool,
) -> pb::VerifyAuditChainResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner();
        if ready(&report) {
            return report;
        }
        assert!(tokio::time::Instant::now() < deadline, "the sealer does not catch up: {report:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Verifies once everything written so far is sealed.
async fn verify_all_sealed(audit: &mut AuditServiceClient<Channel>) -> pb::VerifyAuditChainResponse {
    verify_when(audit, |report| report.entries_unsealed == 0).await
}

async fn column(server: &TestServer, sql: &str) -> Vec<i64> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &server.state.db;
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|row| row.try_get_by_index::<i64>(0).unwrap()).collect()
}

/// Audit entry ids in chain order (the order entries became visible), once all are sealed.
async fn entry_ids(server: &TestServer) -> Vec<i64> {
    column(server, "SELECT id FROM audit_log ORDER BY txid, id").await
}

/// With the sealer held back: waits until every entry written so far is stable, then seals them all at once;
/// returns how many it sealed.
async fn seal_when_stable(db: &sea_orm::DatabaseConnection) -> u64 {
    wait_until_stable(db).await;
    control_tower::store::audit_chain::seal_all(db).await.unwrap()
}

/// Waits until every entry written so far can be sealed. On PostgreSQL an entry is sealed only once no transaction
/// that started before its own is still open, in any database of the cluster (the tests of other files run beside
/// this one).
async fn wait_until_stable(db: &sea_orm::DatabaseConnection) {
    use control_tower::store::{audit, entity::audit_log};
    use sea_orm::{EntityTrait, QueryOrder};
    let newest = audit_log::Entity::find().order_by_desc(audit_log::Column::Id).one(db).await.unwrap();
    let newest = newest.map_or(0, |entry| entry.id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while audit::head(db).await.unwrap().id < newest {
        assert!(tokio::time::Instant::now() < deadline, "the audit log does not become stable");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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

    // More history, sealed in a batch of its own; then the first batch's seal goes.
    some_history(&server).await;
    // With an entry deleted, "unsealed" (entries minus sealed) reaches 0 one entry early: wait for the head.
    let report = verify_when(&mut audit, |report| report.head_seq == 16).await;
    assert_eq!(report.first_broken.map(|b| b.seq), Some(5));
    let seals = column(&server, "SELECT seq FROM audit_seals ORDER BY seq").await;
    assert!(seals.len() >= 2 && seals[0] <= 8, "the second round was sealed apart from the first: {seals:?}");
    server.sql(&format!("DELETE FROM audit_seals WHERE seq = {}", seals[0])).await.unwrap();
    let broken = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner().first_broken;
    let broken = broken.expect("a broken link");
    assert_eq!(broken.seq, 1);
    assert!(broken.reason.contains(&format!("entries 1 to {} have no seal", seals[0])), "{}", broken.reason);
    server.stop().await;
}

/// With the sealer held back, everything written so far is sealed as one batch: one seal row for all the entries,
/// which still names the exact entry that was changed, and a seal whose links were tampered with is found too.
#[tokio::test]
async fn a_batch_is_one_seal_that_still_names_the_changed_entry() {
    let server = TestServer::configured(|config| config.audit_seal_interval = Duration::from_secs(3600)).await;
    some_history(&server).await;
    some_history(&server).await;
    assert_eq!(seal_when_stable(&server.state.db).await, 16);
    assert_eq!(column(&server, "SELECT entries FROM audit_seals").await, vec![16], "one seal for the batch");
    let mut audit = AuditServiceClient::new(server.channel().await);
    let report = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner();
    assert!(report.intact && report.entries_verified == 16 && report.head_seq == 16, "{report:?}");

    let victim = entry_ids(&server).await[10];
    server.sql(&format!("UPDATE audit_log SET actor_kind = 'mallory' WHERE id = {victim}")).await.unwrap();
    let report = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner();
    assert_eq!(report.entries_verified, 10);
    let broken = report.first_broken.expect("a broken link");
    assert_eq!((broken.seq, broken.audit_id), (11, victim));

    // Cutting a link out of the seal itself is found where the seal starts.
    server.sql("UPDATE audit_seals SET entries = 15, seq = 15").await.unwrap();
    let broken = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner().first_broken;
    let broken = broken.expect("a broken link");
    assert_eq!(broken.seq, 1);
    assert!(broken.reason.contains("the seal was changed"), "{}", broken.reason);
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

/// Seals every entry of the log as the first sealers did: one seal row per entry, no links, each link hashed from
/// the entry as read into values. Returns the entries in chain order.
async fn seal_one_row_per_entry(
    db: &sea_orm::DatabaseConnection,
) -> Vec<control_tower::store::entity::audit_log::Model> {
    use control_tower::store::{audit_chain, entity::audit_log};
    use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};
    let entries = audit_log::Entity::find()
        .order_by_asc(audit_log::Column::Txid)
        .order_by_asc(audit_log::Column::Id)
        .all(db)
        .await
        .unwrap();
    let mut previous = "0".repeat(64);
    for (n, entry) in entries.iter().enumerate() {
        let link = audit_chain::hex(&audit_chain::link_hash(&previous, entry).unwrap());
        let seal = format!(
            "INSERT INTO audit_seals (seq, audit_id, txid, hash) VALUES ({}, {}, {}, '{link}')",
            n + 1,
            entry.id,
            entry.txid
        );
        db.execute_unprepared(&seal).await.unwrap();
        previous = link;
    }
    entries
}

/// A chain sealed before batches (one seal row per entry, no links, as the upgrade leaves it) still verifies, and
/// the sealer goes on from its head in batches.
#[tokio::test]
async fn seals_from_before_batches_still_verify_and_the_chain_goes_on_from_them() {
    let server = TestServer::configured(|config| config.audit_seal_interval = Duration::from_secs(3600)).await;
    some_history(&server).await;
    let entries = seal_one_row_per_entry(&server.state.db).await;
    some_history(&server).await;
    assert_eq!(seal_when_stable(&server.state.db).await, 8, "only the new entries");
    let mut audit = AuditServiceClient::new(server.channel().await);
    let report = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner();
    assert!(report.intact && report.entries_verified == 16 && report.head_seq == 16, "{report:?}");

    let victim = entries[3].id;
    server.sql(&format!("UPDATE audit_log SET note = 'nothing happened' WHERE id = {victim}")).await.unwrap();
    let report = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner();
    let broken = report.first_broken.expect("a broken link");
    assert_eq!((broken.seq, broken.audit_id, report.entries_verified), (4, victim, 3));
    server.stop().await;
}

/// Groups of every size the writer splits into statements (on SQLite, fixed sizes of 64 rows and fewer) keep their
/// entries in order, with every field and the documents' text as serialised, and seal into an intact chain.
#[tokio::test]
async fn groups_of_any_size_keep_their_order_fields_and_documents() {
    use control_tower::store::audit::{self, Action, Actor, Entry};
    use sea_orm::{ConnectionTrait, Statement};
    let server = server().await;
    let now = server.state.clock.now();
    let mut written = Vec::new();
    for size in [1, 2, 3, 7, 63, 64, 65, 130] {
        let entries: Vec<Entry> = (0..size)
            .map(|n| Entry {
                actor: Actor::new("agent", format!("actor-{size}")),
                action: if n % 2 == 0 { Action::Created } else { Action::StatusChanged },
                entity_kind: "task",
                entity_id: format!("entity-{size:03}-{n:03}"),
                before: (n % 2 == 1).then(|| serde_json::json!({ "status": "queued" }).to_string()),
                after: Some(
                    serde_json::json!({
                        "n": n,
                        "size": size,
                        "text": "quote \" backslash \\ tab \t newline \n accents \u{e9} clef \u{1d11e} control \u{1}",
                    })
                    .to_string(),
                ),
                note: (n % 3 == 0).then(|| format!("note {n} of {size}")),
                trace_id: (n % 5 != 0).then(|| format!("trace-{size}")),
            })
            .collect();
        for e in &entries {
            written.push(vec![
                Some(e.actor.id.clone()),
                Some(e.action.as_str().to_owned()),
                Some(e.entity_id.clone()),
                e.before.clone(),
                e.after.clone(),
                e.note.clone(),
                e.trace_id.clone(),
            ]);
        }
        audit::append(&server.state.db, now, entries).await.unwrap();
    }
    let db = &server.state.db;
    let sql = "SELECT actor_id, action, entity_id, CAST(before AS TEXT), CAST(after AS TEXT), note, trace_id \
               FROM audit_log WHERE entity_id LIKE 'entity-%' ORDER BY id";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    let stored: Vec<Vec<Option<String>>> =
        rows.iter().map(|row| (0..7).map(|i| row.try_get_by_index::<Option<String>>(i).unwrap()).collect()).collect();
    assert_eq!(stored.len(), written.len());
    for (stored, written) in stored.iter().zip(&written) {
        assert_eq!(stored, written);
    }
    let mut audit = AuditServiceClient::new(server.channel().await);
    let report = verify_all_sealed(&mut audit).await;
    assert!(report.intact && report.entries_verified as usize >= written.len(), "{report:?}");
    server.stop().await;
}

/// Sealers racing over the same entries, one reading beside the writer (the server's own on a SQLite file) and one
/// in a transaction, leave one chain: each batch is sealed once, and every entry verifies.
#[tokio::test]
async fn racing_sealers_leave_one_intact_chain() {
    use control_tower::store::{audit_chain, db};
    let server = TestServer::configured(|config| config.audit_seal_interval = Duration::from_secs(3600)).await;
    let mut tasks = server.tasks().await;
    for batch in 0..3 {
        let requests = (0..1000).map(|n| common::request(spec(&format!("Entry {batch}-{n}")))).collect();
        tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests }).await.unwrap();
    }
    let written = column(&server, "SELECT COUNT(*) FROM audit_log").await[0];
    // Otherwise a sealer can stop short of entries that another test's open transaction keeps unstable.
    wait_until_stable(&server.state.db).await;
    let reader = db::connect_reader(&server.database_url, &server.state.db).await.unwrap();
    let state = &server.state;
    let (a, b, c) = tokio::join!(
        audit_chain::seal_all_reading(&state.db, &reader),
        audit_chain::seal_all_reading(&state.db, &reader),
        audit_chain::seal_all(&state.db),
    );
    let sealed = a.unwrap() + b.unwrap() + c.unwrap();
    assert_eq!(sealed as i64, written, "every entry sealed exactly once");
    let sums = column(&server, "SELECT CAST(COALESCE(SUM(entries), 0) AS BIGINT) FROM audit_seals").await;
    assert_eq!(sums, vec![written]);
    let mut audit = AuditServiceClient::new(server.channel().await);
    let report = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.unwrap().into_inner();
    assert!(report.intact && report.entries_verified as i64 == written, "{report:?}");
    server.stop().await;
}

/// Entries sealed while their documents were `jsonb` (which PostgreSQL writes back with its own spacing and key
/// order) still verify once the upgrade stores them as `json`, and the chain goes on from them.
#[tokio::test]
async fn entries_sealed_before_the_documents_became_json_still_verify() {
    use control_tower::store::{audit_chain, db};
    use migrations::{Migrator, MigratorTrait};
    use sea_orm::ConnectionTrait;
    /// The last migration before the documents became `json`.
    const BEFORE_JSON: u32 = 12;
    let dir = tempfile::tempdir().unwrap();
    let (url, postgres) = common::fresh_database(&dir).await;
    let conn = db::connect(&url, 2).await.unwrap();
    Migrator::up(&conn, Some(BEFORE_JSON)).await.unwrap();
    let insert = |n: usize| {
        format!(
            "INSERT INTO audit_log (ts, actor_kind, actor_id, action, entity_kind, entity_id, before, after, note) \
             VALUES ({n}, 'system', 'tester', 'status_changed', 'task', 't{n}', '{{\"status\": \"queued\"}}', \
             '{{\"worker_id\": \"w\\\"{n}\", \"zz\": {n}, \"aaa\": [1.50, -0, null, {{\"é\": true}}]}}', 'n')"
        )
    };
    for n in 0..5 {
        conn.execute_unprepared(&insert(n)).await.unwrap();
    }
    // Sealed as the sealer of that version did: each entry's documents parsed into values and hashed.
    seal_one_row_per_entry(&conn).await;

    Migrator::up(&conn, None).await.unwrap();
    for n in 5..8 {
        conn.execute_unprepared(&insert(n)).await.unwrap();
    }
    assert_eq!(seal_when_stable(&conn).await, 3, "only the new entries");
    let report = audit_chain::verify(&conn).await.unwrap();
    assert!(report.broken.is_none() && report.verified == 8 && report.unsealed == 0, "{report:?}");

    // An entry changed after the upgrade is still found.
    conn.execute_unprepared("UPDATE audit_log SET after = '{\"attempt\": 2}' WHERE entity_id = 't1'").await.unwrap();
    let report = audit_chain::verify(&conn).await.unwrap();
    assert_eq!(report.broken.map(|b| b.seq), Some(2), "the second entry");
    conn.close().await.ok();
    if let (Some(admin), Some(name)) = (common::postgres_admin_url(), postgres) {
        common::drop_database(&admin, &name).await;
    }
}

/// The documents the server writes are stored in the form the chain hashes them in (compact, keys in sorted order),
/// so that the sealer hashes their text as it is instead of parsing and writing each again: the `created` entries
/// of single and batched enqueues, leases written in SQL and in Rust (under a concurrency key), and completions.
#[tokio::test]
async fn the_server_stores_its_documents_in_the_form_the_chain_hashes() {
    use common::{json_struct, next_assignment, pull, request};
    let server = server().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    enqueue(&mut tasks, spec("Enqueued alone")).await;
    let mut keyed = spec("Enqueued under a key");
    keyed.concurrency_key = "canonical-key".into();
    enqueue(&mut tasks, keyed).await;
    let batch = vec![request(spec("Enqueued in a batch 1")), request(spec("Enqueued in a batch 2"))];
    tasks.enqueue_tasks(pb::EnqueueTasksRequest { requests: batch }).await.unwrap();
    let mut stream = pull(&mut workers, "canonical-worker", 4).await;
    for _ in 0..4 {
        let assignment = next_assignment(&mut stream).await;
        let result = Some(json_struct(serde_json::json!({"z": "last", "a": [1, {"c": null, "b": true}]})));
        workers.complete_task(pb::CompleteTaskRequest { lease_id: assignment.lease_id, result }).await.unwrap();
    }

    use sea_orm::{ConnectionTrait, Statement};
    let db = &server.state.db;
    let sql = "SELECT CAST(before AS TEXT) FROM audit_log UNION ALL SELECT CAST(after AS TEXT) FROM audit_log";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    let documents: Vec<String> =
        rows.iter().filter_map(|row| row.try_get_by_index::<Option<String>>(0).unwrap()).collect();
    assert!(documents.len() >= 12, "4 created, 4 lease and 4 completion entries: {documents:?}");
    for text in documents {
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, value.to_string());
    }
}
