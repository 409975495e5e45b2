//! A server process on a fresh database, worker processes, and clients: the system under measurement.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use super::cpu::{self, CpuSnapshot};
use crate::{
    auth::tokens::{hash_token, new_token},
    client::{Authed, BearerToken},
    pb::{task_service_client::TaskServiceClient, worker_service_client::WorkerServiceClient},
};

/// Worker identities a cluster with tokens provides (`bench-0` ...): the most worker processes it can start.
const WORKER_IDENTITIES: usize = 64;

/// Bearer tokens of a cluster whose server checks them: the bench's own calls go as an agent, each worker process
/// as its own worker identity.
struct Tokens {
    agent: String,
    workers: Vec<String>,
}

impl Tokens {
    fn new() -> anyhow::Result<Self> {
        let workers = (0..WORKER_IDENTITIES).map(|_| new_token()).collect::<Result<_, _>>()?;
        Ok(Self { agent: new_token()?, workers })
    }

    /// The server's token table (`JCT_AUTH_TOKENS`): hashes only, as an operator would configure it.
    fn table(&self) -> String {
        let agent = format!("agent bench sha256:{}\n", hash_token(&self.agent));
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, token)| format!("worker {} sha256:{}\n", worker_id(i), hash_token(token)));
        std::iter::once(agent).chain(workers).collect()
    }
}

/// The worker id (and, with tokens, the identity) of the `i`th worker process.
fn worker_id(i: usize) -> String {
    format!("bench-{i}")
}

pub struct Cluster {
    /// This run's files (database, server log, trace folders), under the bench's data directory.
    dir: PathBuf,
    database_url: String,
    /// PostgreSQL: the admin URL and the database made for this cluster, dropped at the end.
    postgres: Option<(String, String)>,
    server: Child,
    workers: Vec<Child>,
    pub url: String,
    db: DatabaseConnection,
    tokens: Option<Tokens>,
}

impl Cluster {
    /// Starts `control-tower serve` on a fresh database (a SQLite file, or a new database next to `admin_url`),
    /// with its files in a new directory under `data_dir`. With `auth`, the server checks bearer tokens and the
    /// cluster's clients and workers present them (see `Tokens`).
    pub async fn start(admin_url: Option<&str>, data_dir: &Path, auth: bool) -> anyhow::Result<Self> {
        let tokens = if auth { Some(Tokens::new()?) } else { None };
        let dir = tempfile::Builder::new().prefix("run-").tempdir_in(data_dir)?.keep();
        let (database_url, postgres) = match admin_url {
            None => (format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()), None),
            Some(admin) => {
                let name = format!("ct_bench_{}", uuid::Uuid::new_v4().simple());
                let conn = Database::connect(admin).await.context("connecting to the benchmark database server")?;
                conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
                conn.close().await.ok();
                (database_beside(admin, &name), Some((admin.to_owned(), name)))
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut server = Command::new(std::env::current_exe()?);
        if let Some(tokens) = &tokens {
            server.env("JCT_AUTH_TOKENS", tokens.table());
        }
        let server = server
            .arg("serve")
            .env("DATABASE_URL", &database_url)
            .env("JCT_LISTEN_ADDR", &listen)
            .env("JCT_TRACE_ROOT", dir.join("traces"))
            .env("JCT_ALLOWED_REPO_PREFIXES", "bench/")
            // Room for the trace scenario's single large file.
            .env("JCT_TRACE_MAX_FILE_BYTES", (8u64 << 30).to_string())
            .env("JCT_TRACE_MAX_TASK_BYTES", (8u64 << 30).to_string())
            // The bench measures the control plane itself, one client driving it as fast as it goes.
            .env("JCT_ENQUEUE_RATE", "0")
            .env("JCT_MAX_STREAMS_PER_IDENTITY", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let url = format!("http://{listen}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while Channel::from_shared(url.clone())?.connect().await.is_err() {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Named, so that the CPU accounting can leave the bench's own connections out.
        let db = match &postgres {
            Some(_) => Database::connect(with_option(&database_url, "application_name", BENCH_APPLICATION)).await?,
            None => Database::connect(&database_url).await?,
        };
        Ok(Self { dir, database_url, postgres, server, workers: Vec::new(), url, db, tokens })
    }

    async fn connect(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(self.url.clone())?.connect().await?)
    }

    /// A new connection, calling as the bench's agent identity when the server checks tokens.
    pub async fn channel(&self) -> anyhow::Result<Authed> {
        let token = BearerToken::new(self.tokens.as_ref().map(|t| t.agent.as_str()))?;
        Ok(InterceptedService::new(self.connect().await?, token))
    }

    /// Fails unless the server refuses a call without a token: a figure measured "with tokens" must be.
    pub async fn ensure_tokens_checked(&self) -> anyhow::Result<()> {
        let channel = self.connect().await?;
        let request = crate::pb::ListTasksRequest { page_size: 1, ..Default::default() };
        match TaskServiceClient::new(channel).list_tasks(request).await {
            Err(status) if status.code() == tonic::Code::Unauthenticated => Ok(()),
            other => anyhow::bail!("the server took a call without a token: {other:?}"),
        }
    }

    pub async fn tasks(&self) -> anyhow::Result<TaskServiceClient<Authed>> {
        Ok(TaskServiceClient::new(self.channel().await?))
    }

    /// Worker calls from the bench itself; with tokens they would need worker identities, which only the worker
    /// processes have, so the scenarios that use this run without tokens.
    pub async fn workers(&self) -> anyhow::Result<WorkerServiceClient<Authed>> {
        Ok(WorkerServiceClient::new(self.channel().await?))
    }

    /// Starts worker processes with the no-op handler, each running `concurrency` tasks at once and holding
    /// `prefetch` more.
    pub fn spawn_workers(&mut self, count: usize, concurrency: usize, prefetch: usize) -> anyhow::Result<()> {
        for i in 0..count {
            let mut worker = Command::new(std::env::current_exe()?);
            if let Some(tokens) = &self.tokens {
                let token = tokens.workers.get(i).with_context(|| {
                    format!("a cluster with tokens starts at most {WORKER_IDENTITIES} worker processes")
                })?;
                worker.env("JCT_TOKEN", token);
            }
            let worker = worker
                .args(["worker", "--noop", "--server", &self.url])
                .args(["--concurrency", &concurrency.to_string(), "--prefetch", &prefetch.to_string()])
                .args(["--worker-id", &worker_id(i)])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            self.workers.push(worker);
        }
        Ok(())
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        let statement = Statement::from_string(self.db.get_database_backend(), sql.to_owned());
        let row = self.db.query_one_raw(statement).await?.context("no row")?;
        Ok(row.try_get_by_index::<i64>(0)?)
    }

    /// Waits until `n` tasks are completed; returns how long that took.
    pub async fn wait_completed(&self, n: usize) -> anyhow::Result<Duration> {
        let started = tokio::time::Instant::now();
        while self.count("SELECT COUNT(*) FROM tasks WHERE status = 'completed'").await? < n as i64 {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "tasks did not complete");
            // Counting is not free (it reads an index of every completed task): look often enough, not more.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(started.elapsed())
    }

    /// The newest audit entry's id (0 when the log is empty): where a drain's progress is counted from.
    pub async fn audit_head(&self) -> anyhow::Result<i64> {
        self.count("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM audit_log").await
    }

    /// Waits until no task is queued or running, then checks that all `n` completed.
    ///
    /// Whether any task is left is a read of the first entries of the queue's and the leases' partial indexes,
    /// but on PostgreSQL those hold an entry for every task claimed since the table was last vacuumed: a look cost
    /// 1-1.5 ms of the database during a drain, 5% of a core at 40 looks a second. So the wait asks that when the
    /// drain should be nearly over, and otherwise once a second. Progress is read from the audit log's newest id
    /// (one index entry): each drained task appends two entries, its lease and its completion, counted from
    /// `audit_head`, the id before the drain. Between looks the wait sleeps half the time that the rate since the
    /// previous reading says is left, between 25 ms and 500 ms; retries and leases still running only put the
    /// estimate ahead.
    pub async fn wait_drained(&self, n: usize, audit_head: i64) -> anyhow::Result<()> {
        const SHORTEST: Duration = Duration::from_millis(25);
        const LONGEST: Duration = Duration::from_millis(500);
        const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
        let started = tokio::time::Instant::now();
        let left = "SELECT CASE WHEN EXISTS (SELECT 1 FROM tasks WHERE status = 'queued') \
                    OR EXISTS (SELECT 1 FROM tasks WHERE status = 'running') THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END";
        let mut last_look = started;
        let mut previous = (started, 0.0);
        loop {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "tasks did not complete");
            let now = tokio::time::Instant::now();
            let done = ((self.audit_head().await? - audit_head) / 2) as f64;
            if done >= n as f64 || now - last_look >= LOOK_AT_LEAST_EVERY {
                if self.count(left).await? == 0 {
                    break;
                }
                last_look = now;
            }
            let rate = (done - previous.1) / (now - previous.0).as_secs_f64().max(1e-3);
            let pause = if done < n as f64 && rate > 0.0 {
                Duration::from_secs_f64((n as f64 - done) / rate / 2.0).clamp(SHORTEST, LONGEST)
            } else {
                SHORTEST
            };
            previous = (now, done);
            tokio::time::sleep(pause).await;
        }
        let completed = self.count("SELECT COUNT(*) FROM tasks WHERE status = 'completed'").await?;
        anyhow::ensure!(completed == n as i64, "{completed} of {n} tasks completed");
        Ok(())
    }

    /// Waits until the audit sealer has sealed every entry written so far. A bulk load leaves it a backlog (a
    /// million tasks, a million entries, some twenty seconds of hashing here) that would otherwise share the
    /// machine with whatever is measured next.
    pub async fn wait_sealed(&self) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        let unsealed =
            "SELECT CAST((SELECT COUNT(*) FROM audit_log) - (SELECT COALESCE(MAX(seq), 0) FROM audit_seals) AS BIGINT)";
        while self.count(unsealed).await? > 0 {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(1800), "the audit log was not sealed");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// CPU time so far of the server, the workers and, when PostgreSQL runs on this machine, the backends serving
    /// this run's database (the bench's own connection excepted; PostgreSQL's background writers are not counted).
    pub async fn cpu_snapshot(&self) -> anyhow::Result<CpuSnapshot> {
        let mut snapshot = CpuSnapshot {
            server: cpu::of_processes([self.server.id()]),
            workers: cpu::of_processes(self.workers.iter().map(Child::id)),
            postgres: Default::default(),
        };
        if let Some((admin, _)) = &self.postgres
            && cpu::is_local_postgres(admin)
        {
            let sql = format!(
                "SELECT pid::bigint FROM pg_stat_activity WHERE datname = current_database() \
                 AND backend_type = 'client backend' AND application_name <> '{BENCH_APPLICATION}'"
            );
            let rows = self.db.query_all_raw(Statement::from_string(self.db.get_database_backend(), sql)).await?;
            let pids = rows.iter().filter_map(|row| row.try_get_by_index::<i64>(0).ok()?.try_into().ok());
            // A PostgreSQL in a container reports its own process ids: only processes here named postgres count.
            snapshot.postgres = cpu::of_processes(pids.filter(|&pid| cpu::is_postgres_process(pid)));
        }
        Ok(snapshot)
    }

    /// PostgreSQL: the next transaction id the database server will assign. Only a transaction that writes gets
    /// one, and reading it assigns none, so the difference between two readings counts the write transactions
    /// (commits, and the rare rollback) in between, on the whole database server. Unlike CPU time it does not
    /// depend on how busy the machine is: it shows how many tasks share each commit. None on SQLite.
    pub async fn next_transaction_id(&self) -> anyhow::Result<Option<i64>> {
        if self.postgres.is_none() {
            return Ok(None);
        }
        Ok(Some(self.count("SELECT CAST(CAST(pg_snapshot_xmax(pg_current_snapshot()) AS TEXT) AS BIGINT)").await?))
    }

    /// Resident memory of the server process, in MiB.
    pub fn server_rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.id()))?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .context("no VmRSS")?
            .parse()?;
        Ok(kb / 1024.0)
    }

    pub fn trace_root(&self) -> PathBuf {
        self.dir.join("traces")
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        for worker in &mut self.workers {
            let _ = worker.kill();
            let _ = worker.wait();
        }
        // SAFETY: kill(2) on our own child process.
        unsafe {
            libc::kill(self.server.id() as i32, libc::SIGTERM);
        }
        let _ = self.server.wait();
        self.db.clone().close().await.ok();
        if let Some((admin, name)) = &self.postgres {
            let conn = Database::connect(admin).await?;
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
        }
        Ok(())
    }
}

/// `application_name` of the bench's own connections to a run's PostgreSQL database.
const BENCH_APPLICATION: &str = "control-tower-bench";

/// `url` with one more query option.
fn with_option(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{key}={value}")
}

/// The URL of database `name` on the server of `admin`, with the admin URL's options (`sslmode`, `host` for a
/// Unix socket, ...): `postgres://u@h/test?sslmode=disable` gives `postgres://u@h/<name>?sslmode=disable`.
fn database_beside(admin: &str, name: &str) -> String {
    let (location, options) = admin.split_once('?').map_or((admin, None), |(l, o)| (l, Some(o)));
    let server = location.rsplit_once('/').map_or(location, |(server, _)| server);
    match options {
        Some(options) => format!("{server}/{name}?{options}"),
        None => format!("{server}/{name}"),
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.workers.iter_mut().chain(std::iter::once(&mut self.server)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Tokens, WORKER_IDENTITIES, database_beside, worker_id};
    use crate::auth::{Role, tokens::TokenTable};

    #[test]
    fn the_token_table_gives_the_bench_an_agent_and_each_worker_process_its_own_identity() {
        let tokens = Tokens::new().unwrap();
        let table = TokenTable::parse(&tokens.table()).unwrap();
        assert_eq!(table.len(), 1 + WORKER_IDENTITIES);
        let agent = table.authenticate(&tokens.agent).unwrap();
        assert_eq!((agent.role, agent.id.as_str()), (Role::Agent, "bench"));
        for (i, token) in tokens.workers.iter().enumerate() {
            let worker = table.authenticate(token).unwrap();
            assert_eq!((worker.role, worker.id.clone()), (Role::Worker, worker_id(i)));
        }
        assert!(!tokens.table().contains(&tokens.agent), "the table holds hashes, not tokens");
    }

    #[test]
    fn the_bench_database_keeps_the_admin_urls_server_and_options() {
        assert_eq!(database_beside("postgres://u@h:5432/test", "b"), "postgres://u@h:5432/b");
        assert_eq!(
            database_beside("postgres://u@h/test?sslmode=disable&host=/run/pg", "b"),
            "postgres://u@h/b?sslmode=disable&host=/run/pg"
        );
    }
}
