//! Failures: a connection that goes silent without a reset, a cancellation racing a completion, and a server killed
//! with SIGKILL under load and restarted. Nothing acknowledged is lost, nothing finishes twice.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::*;
use control_tower::pb::{self, task_service_client::TaskServiceClient, worker_service_client::WorkerServiceClient};
use sea_orm::{ConnectionTrait, Database, Statement};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic::{Code, transport::Channel};

/// A TCP proxy that can go silent: once frozen it forwards nothing but keeps every connection open, like a
/// network path that dropped without a reset.
struct Proxy {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
}

async fn proxy_to(target: SocketAddr) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frozen = Arc::new(AtomicBool::new(false));
    let flag = frozen.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(target).await else { continue };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pump(ri, wo, flag.clone()));
            tokio::spawn(pump(ro, wi, flag.clone()));
        }
    });
    Proxy { addr, frozen }
}

/// A server that gives up on a silent connection after about 600 ms.
async fn with_fast_keepalive() -> TestServer {
    TestServer::configured(|c| {
        c.keepalive_interval = Duration::from_millis(300);
        c.keepalive_timeout = Duration::from_millis(300);
    })
    .await
}

/// A worker client whose connection to the server goes through a proxy that can go silent.
async fn behind_proxy(server: &TestServer) -> (Proxy, WorkerServiceClient<Channel>) {
    let proxy = proxy_to(server.addr).await;
    let channel = Channel::from_shared(format!("http://{}", proxy.addr)).unwrap().connect().await.unwrap();
    (proxy, WorkerServiceClient::new(channel))
}

async fn pump(mut from: impl AsyncReadExt + Unpin, mut to: impl AsyncWriteExt + Unpin, frozen: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            // Silent from now on: hold both sockets open and forward nothing.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_silently_dead_worker_connection_is_detected_and_its_lease_redelivered() {
    let server = with_fast_keepalive().await;
    let mut tasks = server.tasks().await;
    let task = enqueue(&mut tasks, spec("Held by a worker behind a dying link")).await;
    let (proxy, mut workers) = behind_proxy(&server).await;
    let mut stream = pull(&mut workers, "behind-proxy", 1).await;
    let lease = next_assignment(&mut stream).await;
    assert_eq!(lease.task.unwrap().id, task.id);

    proxy.frozen.store(true, Ordering::SeqCst);
    let requeued = wait_for_status(&mut tasks, &task.id, pb::TaskStatus::Queued).await;
    assert_eq!(requeued.attempt, 1);
    assert!(requeued.error.contains("stream closed"), "{}", requeued.error);
    // The next worker gets it as a new attempt; the silent one's lease is dead.
    let mut direct = server.workers().await;
    let mut fresh = pull(&mut direct, "healthy", 1).await;
    assert_eq!(next_assignment(&mut fresh).await.attempt, 2);
    let stale = direct.complete_task(pb::CompleteTaskRequest { lease_id: lease.lease_id, result: None }).await;
    assert_eq!(code_of(stale), Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn a_task_cancelled_while_its_worker_is_unreachable_stays_cancelled() {
    let server = with_fast_keepalive().await;
    let mut tasks = server.tasks().await;
    let task = enqueue(&mut tasks, spec("Cancelled behind a dead link")).await;
    let (proxy, mut workers) = behind_proxy(&server).await;
    let mut stream = pull(&mut workers, "unreachable", 1).await;
    next_assignment(&mut stream).await;
    proxy.frozen.store(true, Ordering::SeqCst);

    let cancelled = tasks.cancel_task(pb::CancelTaskRequest { id: task.id.clone(), reason: "no answer".into() });
    assert_eq!(cancelled.await.unwrap().into_inner().status(), pb::TaskStatus::Cancelled);
    // The dead stream is found and closed; its lease ends, and the task is not run again.
    let dispatcher = server.state.dispatcher.clone();
    eventually("the dead stream to close", move || dispatcher.stream_count() == 0).await;
    assert_eq!(server.state.dispatcher.reap_expired().await.unwrap(), 0);
    assert_eq!(get(&mut tasks, &task.id).await.status(), pb::TaskStatus::Cancelled);
    assert_eq!(server.count("SELECT COUNT(*) FROM tasks WHERE status = 'queued'").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn cancel_racing_completion_has_exactly_one_winner() {
    let server = TestServer::start().await;
    let mut tasks = server.tasks().await;
    let mut workers = server.workers().await;
    let n = 20;
    for i in 0..n {
        enqueue(&mut tasks, spec(&format!("Cancel or complete {i}"))).await;
    }
    let mut stream = pull(&mut workers, "racer", n).await;
    let mut races = Vec::new();
    for _ in 0..n {
        let lease = next_assignment(&mut stream).await;
        let (mut t, mut w) = (tasks.clone(), workers.clone());
        let id = lease.task.unwrap().id;
        races.push(tokio::spawn(async move {
            let (cancel, complete) = tokio::join!(
                t.cancel_task(pb::CancelTaskRequest { id: id.clone(), reason: "race".into() }),
                w.complete_task(pb::CompleteTaskRequest { lease_id: lease.lease_id, result: None }),
            );
            (id, cancel.is_ok(), complete.is_ok())
        }));
    }
    for race in races {
        let (id, cancelled, completed) = race.await.unwrap();
        assert!(cancelled ^ completed, "exactly one wins for {id}");
        let status = get(&mut tasks, &id).await.status();
        let expected = if cancelled { pb::TaskStatus::Cancelled } else { pb::TaskStatus::Completed };
        assert_eq!(status, expected);
    }
    server.stop().await;
}

async fn start_server(dir: &std::path::Path, database_url: &str, listen: &str, log: &str) -> Process {
    let traces = dir.join("traces");
    let server = Process::spawn(
        &["serve"],
        &[
            ("DATABASE_URL", database_url),
            ("JCT_LISTEN_ADDR", listen),
            ("JCT_TRACE_ROOT", traces.to_str().unwrap()),
            ("JCT_ALLOWED_REPO_PREFIXES", "acme/"),
            ("JCT_LEASE_TIMEOUT_SECONDS", "2"),
        ],
        dir.join(log),
    );
    let url = format!("http://{listen}");
    eventually("the server to listen", || std::net::TcpStream::connect(listen).is_ok()).await;
    let _ = Channel::from_shared(url).unwrap().connect().await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_under_load_loses_no_acknowledged_task_and_runs_none_twice() {
    const TASKS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let (database_url, postgres_db) = fresh_database(&dir).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let mut server = start_server(dir.path(), &database_url, &listen, "server-1.log").await;
    let _worker = Process::spawn(
        // Tasks that take a moment, so that some are in flight when the server dies.
        &["worker", "--server", &url, "--concurrency", "8", "--worker-id", "survivor", "--exec", "sleep 0.1"],
        &[],
        dir.path().join("worker.log"),
    );

    // Enqueue steadily; every request carries an idempotency key and is retried until acknowledged.
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let enqueuer = {
        let url = url.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let endpoint = Channel::from_shared(url).unwrap().connect_timeout(Duration::from_millis(500));
            let mut client: Option<TaskServiceClient<Channel>> = None;
            for i in 0..TASKS {
                let mut s = spec(&format!("Steady load {i}"));
                s.idempotency_key = format!("load-{i}");
                loop {
                    if client.is_none() {
                        client = endpoint.connect().await.ok().map(TaskServiceClient::new);
                    }
                    if let Some(c) = client.as_mut() {
                        match c.enqueue_task(request(s.clone())).await {
                            Ok(response) => {
                                acknowledged.push(response.into_inner().task.unwrap().id);
                                progress.store(acknowledged.len(), Ordering::SeqCst);
                                break;
                            }
                            Err(_) => client = None,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // A steady stream rather than a burst, so that the kill lands in the middle of it.
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            acknowledged
        })
    };

    // Kill the server hard in the middle of it, and bring it back.
    eventually("a third of the load", || progress.load(Ordering::SeqCst) >= TASKS / 3).await;
    server.signal(libc::SIGKILL);
    server.wait().await;
    let _restarted = start_server(dir.path(), &database_url, &listen, "server-2.log").await;
    let acknowledged = enqueuer.await.unwrap();
    assert_eq!(acknowledged.len(), TASKS);
    assert!(progress.load(Ordering::SeqCst) == TASKS);

    // Every acknowledged task finishes, exactly once.
    let db = Database::connect(&database_url).await.unwrap();
    let count = |sql: String| {
        let db = db.clone();
        async move {
            let row = db.query_one_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap().unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while count("SELECT COUNT(*) FROM tasks WHERE status = 'completed'".into()).await < TASKS as i64 {
        assert!(tokio::time::Instant::now() < deadline, "not every acknowledged task completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count("SELECT COUNT(*) FROM tasks".into()).await, TASKS as i64, "no duplicates from retried enqueues");
    let completions = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT entity_id, COUNT(*) FROM audit_log WHERE note LIKE '%-> completed%' GROUP BY entity_id",
        ))
        .await
        .unwrap();
    let per_task: HashMap<String, i64> =
        completions.iter().map(|r| (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap())).collect();
    for id in &acknowledged {
        assert_eq!(per_task.get(id), Some(&1), "task {id} completed exactly once");
    }
    let redelivered = count("SELECT COUNT(*) FROM tasks WHERE attempt > 1".into()).await;
    assert!(redelivered > 0, "the kill caught tasks in flight, which were redelivered");
    println!("{TASKS} tasks acknowledged across a SIGKILL of the server; {redelivered} redelivered after it");
    db.close().await.ok();
    if let (Some(admin), Some(name)) = (postgres_admin_url(), postgres_db) {
        drop_database(&admin, &name).await;
    }
}
