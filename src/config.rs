//! Command line and environment. Every option has a flag and most an environment variable; a flag wins.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    auth::tokens::TokenSource,
    dispatch::{DispatchConfig, MAX_IN_FLIGHT},
    spec::Policy,
    store::{db::DEFAULT_DATABASE_URL, tasks::Backoff},
    trace::TraceLimits,
};

#[derive(Debug, Parser)]
#[command(name = "control-tower", version, about = "gRPC control plane for AI-assisted development operations")]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "JCT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(Box<ServeArgs>),
    /// Run a worker daemon that pulls tasks from a server and runs them.
    Worker(WorkerArgs),
    /// Manage the database schema.
    Migrate(MigrateArgs),
    /// Measure the control plane: a real server process, real worker processes, a real database.
    Bench(BenchArgs),
    /// Tasks: enqueue, get, list, watch, cancel.
    Task(crate::cli::TaskArgs),
    /// The audit log: list, watch.
    Audit(crate::cli::AuditArgs),
    /// Work-model objects: get, list, create.
    Cwom(crate::cli::CwomArgs),
    /// Bearer tokens: make one, or hash one for the token file.
    Auth(crate::auth::command::AuthArgs),
    /// Print a shell completion script, e.g. `control-tower completions bash > /etc/bash_completion.d/control-tower`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// PostgreSQL URL of a database the bench may create databases from; SQLite in a temp folder when absent.
    #[arg(long, env = "BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Scenarios to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [
        crate::bench::Scenario::EnqueueBulk,
        crate::bench::Scenario::EnqueueUnary,
        crate::bench::Scenario::Drain,
        crate::bench::Scenario::Latency,
        crate::bench::Scenario::Trace,
        crate::bench::Scenario::Folders,
        crate::bench::Scenario::Streams,
        crate::bench::Scenario::Claim,
    ])]
    pub scenarios: Vec<crate::bench::Scenario>,
    /// Runs per scenario (median and spread reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Tasks for the enqueue, drain and folders scenarios.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// The drains to run, each as worker processes x concurrency of each [+ tasks each prefetches] (comma-separated):
    /// the window of tasks in flight sets how many tasks each claim and each completion group carries. `1x24+500`
    /// is the reference's batched configuration (24 jobs at once and a local queue of 500).
    #[arg(long, value_delimiter = ',', default_values_t = [DrainShape { workers: 4, concurrency: 16, prefetch: 0 },
        DrainShape { workers: 2, concurrency: 512, prefetch: 0 }, DrainShape { workers: 1, concurrency: 24, prefetch: 500 }])]
    pub drain_shapes: Vec<DrainShape>,
    /// Tasks timed one by one in the latency scenario.
    #[arg(long, default_value_t = 200)]
    pub latency_samples: usize,
    /// MiB pushed in the trace scenario.
    #[arg(long, default_value_t = 256)]
    pub trace_mib: usize,
    /// Idle worker streams in the streams scenario.
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Queue sizes at which the claim scenario measures.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 1_000_000])]
    pub claim_sizes: Vec<usize>,
}

/// Worker processes, the concurrency of each and, optionally, the tasks each prefetches (`--prefetch`), written
/// `4x16` or `1x24+500`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainShape {
    pub workers: usize,
    pub concurrency: usize,
    pub prefetch: usize,
}

impl std::fmt::Display for DrainShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.workers, self.concurrency)?;
        if self.prefetch > 0 {
            write!(f, "+{}", self.prefetch)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for DrainShape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rule = || {
            format!(
                "drain shape {s:?}: must be WORKERSxCONCURRENCY[+PREFETCH] with workers and concurrency at least 1 \
                 and concurrency + prefetch at most {MAX_IN_FLIGHT}, e.g. 4x16 or 1x24+500"
            )
        };
        let (workers, rest) = s.split_once('x').ok_or_else(rule)?;
        let (concurrency, prefetch) = rest.split_once('+').unwrap_or((rest, "0"));
        let number = |text: &str| text.trim().parse::<usize>().map_err(|_| rule());
        let shape = Self { workers: number(workers)?, concurrency: number(concurrency)?, prefetch: number(prefetch)? };
        if shape.workers == 0 || shape.concurrency == 0 || shape.concurrency + shape.prefetch > MAX_IN_FLIGHT {
            return Err(rule());
        }
        Ok(shape)
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://FILE?mode=rwc or postgres://USER@HOST/DB. Default: a SQLite file in the working
    /// directory.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Connections in the PostgreSQL pool (SQLite always uses one writer connection).
    #[arg(long, env = "JCT_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "JCT_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,
    /// Folder under which each task gets its trace folder.
    #[arg(long, env = "JCT_TRACE_ROOT", default_value = "./traces")]
    pub trace_root: PathBuf,
    /// Comma-separated repository prefixes that tasks may target, e.g. "acme/,widgets/". Unset denies all.
    #[arg(long, env = "JCT_ALLOWED_REPO_PREFIXES", default_value = "")]
    pub allowed_repo_prefixes: String,
    /// Seconds a lease lasts without a heartbeat.
    #[arg(long, env = "JCT_LEASE_TIMEOUT_SECONDS", default_value_t = 30)]
    pub lease_timeout_seconds: u64,
    /// Tasks with the same concurrency key that may run at once, across all servers.
    #[arg(long, env = "JCT_CONCURRENCY_LIMIT", default_value_t = 1)]
    pub concurrency_limit: u32,
    /// Attempts per task when its spec does not say.
    #[arg(long, env = "JCT_DEFAULT_MAX_ATTEMPTS", default_value_t = 3)]
    pub default_max_attempts: i32,
    /// Largest trace file a worker may upload, in bytes.
    #[arg(long, env = "JCT_TRACE_MAX_FILE_BYTES", default_value_t = 64 << 20)]
    pub trace_max_file_bytes: u64,
    /// Largest total of uploaded trace files per task attempt, in bytes.
    #[arg(long, env = "JCT_TRACE_MAX_TASK_BYTES", default_value_t = 256 << 20)]
    pub trace_max_task_bytes: u64,
    /// Most files a worker may upload per task attempt.
    #[arg(long, env = "JCT_TRACE_MAX_FILES", default_value_t = 1000)]
    pub trace_max_files: u64,
    /// Seconds to wait on shutdown for held leases to be settled before releasing them.
    #[arg(long, env = "JCT_DRAIN_TIMEOUT_SECONDS", default_value_t = 10)]
    pub drain_timeout_seconds: u64,
    /// Seconds between HTTP/2 pings on idle connections; a connection silent for about 1.5 times this is dropped
    /// and its leases are released.
    #[arg(long, env = "JCT_KEEPALIVE_SECONDS", default_value_t = 20)]
    pub keepalive_seconds: u64,
    /// Actor recorded in the audit log for operator calls (e.g. CancelTask) when auth is off; with auth on, the
    /// caller's identity is recorded.
    #[arg(long, env = "JCT_OPERATOR_ID", default_value = "operator")]
    pub operator_id: String,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464); off when absent.
    #[arg(long, env = "JCT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Milliseconds between passes of the audit sealer, which chains new audit entries by hash.
    #[arg(long, env = "JCT_AUDIT_SEAL_INTERVAL_MS", default_value_t = 200)]
    pub audit_seal_interval_ms: u64,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// File of `ROLE IDENTITY sha256:HEX` lines (see `control-tower auth new-token`); turns auth on. Re-read when
    /// it changes.
    #[arg(long, env = "JCT_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// The same lines inline (separated by newlines or `;`); turns auth on.
    #[arg(long, env = "JCT_AUTH_TOKENS", hide_env_values = true)]
    pub auth_tokens: Option<String>,
    /// Serve a non-loopback address without auth. Without it, the server refuses to start there.
    #[arg(long, env = "JCT_INSECURE")]
    pub insecure: bool,
    /// PEM certificate chain of the server; with --tls-key, turns TLS on.
    #[arg(long, env = "JCT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the server.
    #[arg(long, env = "JCT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates; clients must then present a certificate signed by one of them (mutual TLS).
    #[arg(long, env = "JCT_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl SecurityArgs {
    pub fn tokens(&self) -> TokenSource {
        TokenSource { file: self.auth_tokens_file.clone(), inline: self.auth_tokens.clone() }
    }

    /// Refuses to expose a server without auth on a non-loopback address, unless --insecure says so.
    pub fn check_exposure(&self, listen_addr: SocketAddr) -> anyhow::Result<()> {
        if listen_addr.ip().is_loopback() || self.tokens().is_configured() || self.insecure {
            return Ok(());
        }
        anyhow::bail!(
            "refusing to serve {listen_addr} without auth: anyone who can reach it could run tasks. Configure \
             tokens (--auth-tokens-file or JCT_AUTH_TOKENS; `control-tower auth new-token` makes one), listen on a \
             loopback address, or pass --insecure to accept the risk"
        )
    }
}

#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest request message, in bytes (a PushTrace chunk, an EnqueueTasks batch).
    #[arg(long, env = "JCT_MAX_MESSAGE_BYTES", default_value_t = 4 << 20)]
    pub max_message_bytes: usize,
    /// Largest `inputs` or `metadata` of a task, encoded, in bytes.
    #[arg(long, env = "JCT_MAX_INPUTS_BYTES", default_value_t = 1 << 20)]
    pub max_inputs_bytes: usize,
    /// Streams (PullTasks, WatchTasks, WatchAuditEvents) one identity may hold open at once.
    #[arg(long, env = "JCT_MAX_STREAMS_PER_IDENTITY", default_value_t = 256)]
    pub max_streams_per_identity: u32,
    /// Tasks per second one identity may enqueue, sustained; 0 for no limit.
    #[arg(long, env = "JCT_ENQUEUE_RATE", default_value_t = 1000)]
    pub enqueue_rate: u32,
    /// Tasks one identity may enqueue in a burst above the rate.
    #[arg(long, env = "JCT_ENQUEUE_BURST", default_value_t = 10_000)]
    pub enqueue_burst: u32,
}

/// Request limits, per server.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_inputs_bytes: usize,
    pub max_streams_per_identity: u32,
    /// Tasks per second per identity; `None` for no limit.
    pub enqueue_rate: Option<std::num::NonZeroU32>,
    pub enqueue_burst: std::num::NonZeroU32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_inputs_bytes: 1 << 20,
            max_streams_per_identity: 256,
            enqueue_rate: std::num::NonZeroU32::new(1000),
            enqueue_burst: std::num::NonZeroU32::new(10_000).expect("non-zero"),
        }
    }
}

impl From<&LimitArgs> for Limits {
    fn from(args: &LimitArgs) -> Self {
        Self {
            max_message_bytes: args.max_message_bytes.max(1024),
            max_inputs_bytes: args.max_inputs_bytes,
            max_streams_per_identity: args.max_streams_per_identity.max(1),
            enqueue_rate: std::num::NonZeroU32::new(args.enqueue_rate),
            enqueue_burst: std::num::NonZeroU32::new(args.enqueue_burst.max(1)).expect("non-zero"),
        }
    }
}

/// The server's TLS files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Everything the server needs, independent of how it was configured.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub database_url: String,
    pub db_max_connections: u32,
    pub trace_root: PathBuf,
    pub trace_limits: TraceLimits,
    pub policy: Policy,
    pub dispatch: DispatchConfig,
    pub default_max_attempts: i32,
    pub drain_timeout: Duration,
    pub operator_id: String,
    /// HTTP/2 pings on idle connections, and how long a ping may go unanswered before the connection (and the
    /// leases of its streams) is given up: this is how a silently dead worker is found.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Bearer tokens; auth is off when none are configured.
    pub tokens: TokenSource,
    /// How often the token file is checked for changes.
    pub token_reload_interval: Duration,
    pub tls: Option<TlsFiles>,
    pub limits: Limits,
    /// How often the sealer chains new audit entries.
    pub audit_seal_interval: Duration,
    /// Where to serve /metrics; off when `None`.
    pub metrics_addr: Option<SocketAddr>,
}

impl ServerConfig {
    /// Defaults suitable for tests and embedding: a SQLite file, ./traces, every repository denied.
    pub fn new(database_url: impl Into<String>, trace_root: impl Into<PathBuf>) -> Self {
        Self {
            database_url: database_url.into(),
            db_max_connections: 16,
            trace_root: trace_root.into(),
            trace_limits: TraceLimits::default(),
            policy: Policy::default(),
            dispatch: DispatchConfig::default(),
            default_max_attempts: 3,
            drain_timeout: Duration::from_secs(10),
            operator_id: "operator".into(),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            tokens: TokenSource::default(),
            token_reload_interval: Duration::from_secs(2),
            tls: None,
            limits: Limits::default(),
            audit_seal_interval: Duration::from_millis(200),
            metrics_addr: None,
        }
    }
}

impl From<&ServeArgs> for ServerConfig {
    fn from(args: &ServeArgs) -> Self {
        Self {
            database_url: args.database.database_url.clone(),
            db_max_connections: args.database.db_max_connections,
            trace_root: args.trace_root.clone(),
            trace_limits: TraceLimits {
                max_file_bytes: args.trace_max_file_bytes,
                max_task_bytes: args.trace_max_task_bytes,
                max_files: args.trace_max_files,
            },
            policy: Policy::from_comma_separated(&args.allowed_repo_prefixes),
            dispatch: DispatchConfig {
                lease_timeout: Duration::from_secs(args.lease_timeout_seconds.max(1)),
                sweep_interval: Duration::from_secs(1),
                backoff: Backoff { base: 1_000_000, max: 300_000_000 },
                concurrency_limit: args.concurrency_limit.max(1),
            },
            default_max_attempts: args.default_max_attempts.clamp(1, 100),
            drain_timeout: Duration::from_secs(args.drain_timeout_seconds),
            operator_id: args.operator_id.clone(),
            keepalive_interval: Duration::from_secs(args.keepalive_seconds.max(1)),
            keepalive_timeout: Duration::from_secs(args.keepalive_seconds.max(1) / 2 + 1),
            tokens: args.security.tokens(),
            token_reload_interval: Duration::from_secs(2),
            tls: match (&args.security.tls_cert, &args.security.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: args.security.tls_client_ca.clone(),
                }),
                _ => None,
            },
            limits: Limits::from(&args.limits),
            audit_seal_interval: Duration::from_millis(args.audit_seal_interval_ms.max(1)),
            metrics_addr: args.metrics_addr,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Server to pull tasks from.
    #[arg(long, env = "JCT_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Worker id reported to the server; default: HOSTNAME-PID.
    #[arg(long, env = "JCT_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Tasks run at once.
    #[arg(long, env = "JCT_WORKER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// Tasks leased ahead of a free slot (a local queue): they wait in the worker, leased and heartbeated, so that
    /// a finished handler's slot is refilled without waiting for the server. concurrency + prefetch is the
    /// stream's `max_in_flight`, at most 1000.
    #[arg(long, env = "JCT_WORKER_PREFETCH", default_value_t = 0)]
    pub prefetch: usize,
    /// Operations to take (comma-separated); default: all.
    #[arg(long, env = "JCT_WORKER_OPERATIONS", value_delimiter = ',')]
    pub operations: Vec<String>,
    /// Run this shell command per task instead of the built-in echo handler (see README: "Exec handler").
    #[arg(long, env = "JCT_WORKER_EXEC", conflicts_with = "noop")]
    pub exec: Option<String>,
    /// Complete every task at once without logging (for benchmarks of the control plane itself).
    #[arg(long)]
    pub noop: bool,
    /// Seconds to let running tasks finish on SIGTERM/SIGINT before they are stopped and released.
    #[arg(long, env = "JCT_WORKER_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Bearer token of this worker (a `worker` identity; the worker id must then be that identity).
    #[arg(long, env = "JCT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: crate::client::ClientTls,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(subcommand)]
    pub action: MigrateAction,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply pending migrations.
    Up,
    /// Roll back the last applied migration(s).
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// Show applied and pending migrations.
    Status,
    /// Drop every table and apply all migrations again (destroys data).
    Fresh,
}

#[cfg(test)]
mod tests {
    use super::DrainShape;

    #[test]
    fn drain_shapes_are_workers_by_concurrency() {
        assert_eq!("4x16".parse::<DrainShape>(), Ok(DrainShape { workers: 4, concurrency: 16, prefetch: 0 }));
        assert_eq!("1x24+500".parse::<DrainShape>(), Ok(DrainShape { workers: 1, concurrency: 24, prefetch: 500 }));
        assert_eq!(DrainShape { workers: 2, concurrency: 512, prefetch: 0 }.to_string(), "2x512");
        assert_eq!(DrainShape { workers: 1, concurrency: 24, prefetch: 500 }.to_string(), "1x24+500");
        for bad in ["4", "x16", "0x16", "4x0", "4x-1", "fourx16", "", "1x24+", "1x24+-1", "1x500+501"] {
            let err = bad.parse::<DrainShape>().unwrap_err();
            assert!(err.contains("WORKERSxCONCURRENCY"), "{bad}: {err}");
        }
    }
}
