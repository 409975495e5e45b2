//! Connecting to SQLite or PostgreSQL, tuned for a server, and running the migrations.

use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DbErr,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

/// The embedded default: a SQLite file in the working directory, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://control-tower.db?mode=rwc";

pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Opens a pool. SQLite gets WAL, a busy timeout and a single connection (one writer; the in-process pool
/// serialises writers instead of letting them fail with SQLITE_BUSY). PostgreSQL gets `max_connections`.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        // A liveness round trip before every checkout would double the latency of every query.
        .test_before_acquire(false);
    if is_sqlite(url) {
        options
            .max_connections(1)
            .min_connections(1)
            // An in-memory database lives only as long as its one connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .map_sqlx_sqlite_opts(|opts| {
                // FULL: a commit is on disk before we acknowledge it, so an acknowledged task survives a power
                // loss, not only a crash of the process.
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
    } else {
        // Prepared statements keep PostgreSQL's default plan caching: the claim, whose best plan depends on its
        // values, asks for custom plans inside its own transaction (see `store::tasks::leases`).
        options.max_connections(max_connections.max(1)).min_connections(1);
    }
    Database::connect(options).await
}

pub async fn migrate_up(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => "postgres",
        DatabaseBackend::Sqlite => "sqlite",
        _ => "other",
    }
}
