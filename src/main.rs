//! `control-tower`: serve, worker, migrate.

use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use control_tower::{
    Server,
    cli::{self, OperatorCommand},
    clock::SystemClock,
    config::{Cli, Command, DatabaseArgs, LogFormat, MigrateAction, MigrateArgs, ServeArgs, ServerConfig, WorkerArgs},
    dispatch::MAX_IN_FLIGHT,
    shutdown,
    store::db,
    worker::{self, EchoHandler, ExecHandler, Handler, NoopHandler, WorkerConfig},
};
use migrations::{Migrator, MigratorTrait};
use tracing_subscriber::EnvFilter;

/// The server allocates and frees many small buffers per task (rows, messages, JSON); mimalloc serves them with
/// less contention and fragmentation than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // Before any thread exists that could use SQLite.
    let _ = control_tower::store::sqlite_memory::configure();
    let runtime = match cli.command {
        // The worker daemon waits on its stream, its handlers' child processes and its calls; it computes little.
        // On one thread, a message that wakes a task never has to wake a second thread and hand the task over:
        // with two threads, such switches were the largest part of a no-op worker's CPU, which halved on one
        // (BENCHMARKS.md). A handler that computes or blocks must put that work on `spawn_blocking`.
        Command::Worker(_) => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Worker(args) => run_worker(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Bench(args) => control_tower::bench::run(args).await,
        Command::Task(args) => std::process::exit(cli::run(OperatorCommand::Task(args)).await),
        Command::Audit(args) => std::process::exit(cli::run(OperatorCommand::Audit(args)).await),
        Command::Cwom(args) => std::process::exit(cli::run(OperatorCommand::Cwom(args)).await),
        Command::Auth(args) => control_tower::auth::command::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "control-tower", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.security.check_exposure(args.listen_addr)?;
    let config = ServerConfig::from(&args);
    let server = Server::build(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("could not listen on {}", args.listen_addr))?;
    let stop = shutdown::on_signal();
    server.run(listener, stop.cancelled_owned()).await
}

async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let (handler, kind): (Arc<dyn Handler>, &str) = match (&args.exec, args.noop) {
        (Some(command), _) => (Arc::new(ExecHandler::new(command)), "exec"),
        (None, true) => (Arc::new(NoopHandler), "noop"),
        (None, false) => (Arc::new(EchoHandler), "echo"),
    };
    let concurrency = args.concurrency.max(1);
    anyhow::ensure!(
        concurrency + args.prefetch <= MAX_IN_FLIGHT,
        "--concurrency + --prefetch must be at most {MAX_IN_FLIGHT} (the tasks one stream may hold), got {}",
        concurrency + args.prefetch
    );
    let config = WorkerConfig {
        server: args.server,
        worker_id: args.worker_id.unwrap_or_else(worker::default_worker_id),
        concurrency,
        prefetch: args.prefetch,
        operations: args.operations.into_iter().filter(|op| !op.is_empty()).collect(),
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_seconds),
        token: args.token,
        tls: args.tls,
    };
    tracing::info!(worker_id = %config.worker_id, handler = kind, "worker starting");
    worker::run(config, handler, shutdown::on_signal()).await
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let DatabaseArgs { database_url, db_max_connections } = args.database;
    let conn = db::connect(&database_url, db_max_connections).await.context("could not connect to the database")?;
    match args.action {
        MigrateAction::Up => Migrator::up(&conn, None).await?,
        MigrateAction::Down { steps } => Migrator::down(&conn, Some(steps)).await?,
        MigrateAction::Fresh => Migrator::fresh(&conn).await?,
        MigrateAction::Status => {}
    }
    for migration in Migrator::get_migration_with_status(&conn).await? {
        println!("{:<10} {}", format!("{:?}", migration.status()).to_lowercase(), migration.name());
    }
    Ok(())
}
