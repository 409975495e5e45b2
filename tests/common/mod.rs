//! Test harness: a real server on 127.0.0.1:0 over a fresh database (a SQLite file, or a new PostgreSQL database
//! when `TEST_DATABASE_URL` is set), with typed clients.
#![allow(dead_code)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use control_tower::{
    AppState, Server,
    clock::{ManualClock, SharedClock, SystemClock},
    config::ServerConfig,
    pb::{self, task_service_client::TaskServiceClient, worker_service_client::WorkerServiceClient},
    spec::Policy,
};
use sea_orm::{ConnectionTrait, Database};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub type Tasks = TaskServiceClient<Channel>;
pub type Workers = WorkerServiceClient<Channel>;

/// The test database backend, chosen once per run by `TEST_DATABASE_URL`.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub manual_clock: Option<Arc<ManualClock>>,
    pub trace_root: PathBuf,
    pub database_url: String,
    pub dir: TempDir,
    stop: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    postgres_db: Option<String>,
}

pub type Configure = Box<dyn FnOnce(&mut ServerConfig) + Send>;

#[derive(Default)]
pub struct Options {
    /// Drive time by hand instead of the wall clock.
    pub manual_clock: bool,
    pub configure: Option<Configure>,
    /// Serve this database instead of a fresh one.
    pub database_url: Option<String>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn with_manual_clock() -> Self {
        Self::start_with(Options { manual_clock: true, ..Default::default() }).await
    }

    pub async fn configured(configure: impl FnOnce(&mut ServerConfig) + Send + 'static) -> Self {
        Self::start_with(Options { configure: Some(Box::new(configure)), ..Default::default() }).await
    }

    /// A second server on the same database (PostgreSQL), like a replica behind a load balancer. Stop it before
    /// the first one, which owns the database.
    pub async fn replica_of(primary: &TestServer, configure: impl FnOnce(&mut ServerConfig) + Send + 'static) -> Self {
        Self::start_with(Options {
            database_url: Some(primary.database_url.clone()),
            configure: Some(Box::new(configure)),
            ..Default::default()
        })
        .await
    }

    pub async fn start_with(options: Options) -> Self {
        // RUST_LOG=debug shows the server's logs in failing tests.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let (database_url, postgres_db) = match options.database_url {
            Some(url) => (url, None),
            None => fresh_database(&dir).await,
        };
        let trace_root = dir.path().join("traces");
        let mut config = ServerConfig::new(database_url.clone(), trace_root.clone());
        config.policy = Policy::new(["acme/"]);
        config.db_max_connections = 8;
        config.drain_timeout = Duration::from_secs(2);
        // Load tests enqueue and stream far beyond one caller's production limits; tests of the limits set them.
        config.limits.enqueue_rate = None;
        config.limits.max_streams_per_identity = 100_000;
        if let Some(configure) = options.configure {
            configure(&mut config);
        }
        let manual_clock = options.manual_clock.then(|| Arc::new(ManualClock::new()));
        let clock: SharedClock = match &manual_clock {
            Some(clock) => clock.clone(),
            None => Arc::new(SystemClock),
        };
        let server = Server::build(config, clock).await.expect("server builds");
        let state = server.state().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let handle = tokio::spawn(server.run(listener, stop.clone().cancelled_owned()));
        Self {
            addr,
            state,
            manual_clock,
            trace_root: trace_root.canonicalize().expect("trace root"),
            database_url,
            dir,
            stop,
            handle: Some(handle),
            postgres_db,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).expect("url").connect().await.expect("connect")
    }

    pub async fn tasks(&self) -> Tasks {
        TaskServiceClient::new(self.channel().await)
    }

    pub async fn workers(&self) -> Workers {
        WorkerServiceClient::new(self.channel().await)
    }

    pub fn clock(&self) -> &ManualClock {
        self.manual_clock.as_deref().expect("started with a manual clock")
    }

    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.trace_root.join(task_id)
    }

    /// Graceful shutdown, then the database is dropped (PostgreSQL).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server stops cleanly");
        }
        if let (Some(admin), Some(db)) = (postgres_admin_url(), self.postgres_db.take()) {
            drop_database(&admin, &db).await;
        }
    }

    /// SQL straight to the database, around the API.
    pub async fn sql(&self, sql: &str) -> Result<u64, sea_orm::DbErr> {
        Ok(self.state.db.execute_unprepared(sql).await?.rows_affected())
    }

    /// The first column of the first row of `sql`'s answer, as text.
    pub async fn text(&self, sql: &str) -> String {
        self.first_row(sql).await.try_get_by_index::<String>(0).expect("a text")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.first_row(sql).await.try_get_by_index::<i64>(0).expect("a count")
    }

    async fn first_row(&self, sql: &str) -> sea_orm::QueryResult {
        let db = &self.state.db;
        let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql.to_owned());
        db.query_one_raw(statement).await.expect("query").expect("a row")
    }
}

/// A new empty database: a SQLite file in `dir`, or a new PostgreSQL database (returned by name to drop later).
pub async fn fresh_database(dir: &TempDir) -> (String, Option<String>) {
    match postgres_admin_url() {
        None => (format!("sqlite://{}?mode=rwc", dir.path().join("control-tower.db").display()), None),
        Some(admin) => {
            let name = format!("ct_test_{}", uuid::Uuid::new_v4().simple());
            let conn = Database::connect(&admin).await.expect("connect to TEST_DATABASE_URL");
            conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
            conn.close().await.ok();
            (with_database(&admin, &name), Some(name))
        }
    }
}

/// The same server URL with another database name.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix = match base.rfind('/') {
        Some(i) if base[..i].contains("://") && !base[..i].ends_with('/') => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

pub async fn drop_database(admin: &str, name: &str) {
    if let Ok(conn) = Database::connect(admin).await {
        let _ = conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        conn.close().await.ok();
    }
}

/// A valid spec for the allowed `acme/` namespace.
pub fn spec(objective: &str) -> pb::TaskSpec {
    pb::TaskSpec {
        requested_by: Some(pb::Requester { kind: "agent".into(), id: "agent-7".into(), label: String::new() }),
        objective: objective.into(),
        operation: "analysis".into(),
        target: Some(pb::Target { repo: "acme/widgets".into(), ..Default::default() }),
        ..Default::default()
    }
}

pub fn request(spec: pb::TaskSpec) -> pb::EnqueueTaskRequest {
    pb::EnqueueTaskRequest { spec: Some(spec), create_cwom: false }
}

pub async fn enqueue(tasks: &mut Tasks, spec: pb::TaskSpec) -> pb::Task {
    tasks.enqueue_task(request(spec)).await.expect("enqueue").into_inner().task.expect("task")
}

pub async fn get(tasks: &mut Tasks, id: &str) -> pb::Task {
    tasks.get_task(pb::GetTaskRequest { id: id.into() }).await.expect("get").into_inner()
}

/// Waits for a task to reach `status`; a generous bound only, so a hang fails instead of blocking the suite.
pub async fn wait_for_status(tasks: &mut Tasks, id: &str, status: pb::TaskStatus) -> pb::Task {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let task = get(tasks, id).await;
        if task.status() == status {
            return task;
        }
        assert!(tokio::time::Instant::now() < deadline, "task {id} stuck in {:?}", task.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens a PullTasks stream as a hand-driven worker.
pub async fn pull(
    workers: &mut Workers,
    worker_id: &str,
    max_in_flight: i32,
) -> tonic::Streaming<pb::PullTasksResponse> {
    workers
        .pull_tasks(pb::PullTasksRequest { worker_id: worker_id.into(), operations: vec![], max_in_flight })
        .await
        .expect("pull")
        .into_inner()
}

/// The next assignment on a stream (skipping control messages), with a generous bound.
pub async fn next_assignment(stream: &mut tonic::Streaming<pb::PullTasksResponse>) -> pb::TaskAssignment {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("an assignment in time")
            .expect("stream ok")
            .expect("stream open");
        if let Some(pb::pull_tasks_response::Event::Assignment(a)) = message.event {
            return a;
        }
    }
}

pub fn code_of<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> tonic::Code {
    result.expect_err("an error").code()
}

pub fn json_struct(value: serde_json::Value) -> pbjson_types::Struct {
    control_tower::json::json_to_struct(&value)
}

/// A `control-tower` process (server or worker) whose output goes to a log file, killed if the test forgets to.
pub struct Process {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(args: &[&str], envs: &[(&str, &str)], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_control-tower"))
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("spawn control-tower");
        Self { child, log }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child process we own.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit on its own (bounded, so a hang fails the test).
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "process did not exit; log:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds (bounded).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replays the task transitions of the audit log in order and returns, per concurrency key, the most tasks of
/// that key that were running at once.
pub async fn peak_running_per_key(db: &sea_orm::DatabaseConnection) -> std::collections::HashMap<String, i64> {
    use sea_orm::{ConnectionTrait, Statement};
    use std::collections::HashMap;
    let keys: HashMap<String, String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, concurrency_key FROM tasks WHERE concurrency_key IS NOT NULL",
        ))
        .await
        .expect("tasks")
        .iter()
        .map(|r| (r.try_get_by_index(0).expect("id"), r.try_get_by_index(1).expect("key")))
        .collect();
    let transitions = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT entity_id, note FROM audit_log WHERE entity_kind = 'Task' AND action = 'status_changed' ORDER BY id",
        ))
        .await
        .expect("audit");
    let mut running: HashMap<String, i64> = HashMap::new();
    let mut peak: HashMap<String, i64> = HashMap::new();
    for row in &transitions {
        let (task, note): (String, String) =
            (row.try_get_by_index(0).expect("id"), row.try_get_by_index(1).expect("note"));
        let Some(key) = keys.get(&task) else { continue };
        let count = running.entry(key.clone()).or_default();
        if note.contains("queued -> running") {
            *count += 1;
        } else if note.contains("running -> ") {
            *count -= 1;
        }
        let most = peak.entry(key.clone()).or_default();
        *most = (*most).max(*count);
    }
    peak
}
