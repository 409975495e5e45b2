//! Connecting to SQLite or PostgreSQL, tuned for a server, and running the migrations.

use std::time::Duration;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

/// The embedded default: a SQLite file in the working directory, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://control-tower.db?mode=rwc";

pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// How many rows of an answer SQLite's connection thread may hand over before the reader takes them. sqlx's
/// default, 50, parks that thread every 50 rows of a large answer (a claim of 500 tasks, a batch the audit sealer
/// reads) until the reader wakes and drains them: a pair of thread switches each time, where one answer could be
/// handed over whole. The rows wait in the channel either way; this only lets more of them wait.
const SQLITE_ROW_BUFFER: usize = 4096;

/// Opens a pool. SQLite gets WAL, a busy timeout and a single connection (one writer; the in-process pool
/// serialises writers instead of letting them fail with SQLITE_BUSY). PostgreSQL gets `max_connections`.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = pool_options(url);
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
                    .row_buffer_size(SQLITE_ROW_BUFFER)
            });
    } else {
        // Prepared statements keep PostgreSQL's default plan caching; the claim runs on sessions of its own (see
        // `connect_claims`).
        options.max_connections(max_connections.max(1)).min_connections(1);
    }
    Database::connect(options).await
}

/// Where long reads go that need not wait for the writer. On a SQLite file, a connection of its own, read-only: WAL
/// lets it read while the one writer writes, where the writer's pool would hold every write back for the whole read.
/// Elsewhere (PostgreSQL, whose pool has many connections, or an in-memory SQLite, which lives in one connection)
/// the pool itself.
pub async fn connect_reader(url: &str, db: &DatabaseConnection) -> Result<DatabaseConnection, DbErr> {
    if !is_sqlite(url) || super::single_server::database_file(url).is_none() {
        return Ok(db.clone());
    }
    let mut options = pool_options(url);
    options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None).map_sqlx_sqlite_opts(
        // The database exists by now (migrated through the writer); reading needs no journal mode of its own.
        |opts| opts.read_only(true).busy_timeout(Duration::from_secs(10)).row_buffer_size(SQLITE_ROW_BUFFER),
    );
    Database::connect(options).await
}

/// What every pool of the server shares: timeouts, and no query logging.
fn pool_options(url: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        // A liveness round trip before every checkout would double the latency of every query.
        .test_before_acquire(false);
    options
}

/// Connections of the claim pool on PostgreSQL: one per overlapping claim (see `dispatch::claimer`).
pub const CLAIM_CONNECTIONS: u32 = 4;

/// The connections claims run on. SQLite: the one connection there is. PostgreSQL: a pool of its own whose sessions
/// keep the claim on its indexes whatever the table statistics say, so that a claim needs no statement to set that
/// up. Just after a bulk load, before autovacuum has analyzed the table, PostgreSQL believes the queue empty and
/// plans a sort of every queued row (measured: 50 ms per claim with 20,000 queued, instead of well under 1 ms); hence
/// no sorts, bitmap or sequential scans. With those ruled out, the claim index is the only way to read the queue in
/// dispatch order, whatever the `LIMIT`, so each statement is planned once per session (a generic plan) instead of
/// at every execution: planning the one-statement claim took 0.3-0.6 ms, more than running it. (Before sorts were
/// ruled out, a generic plan, which cannot see `LIMIT 16`, sorted every queued row: 909 ms per claim with a million
/// queued.) No JIT compiling either (below).
pub async fn connect_claims(url: &str, db: &DatabaseConnection) -> Result<DatabaseConnection, DbErr> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(db.clone());
    }
    let mut options = pool_options(url);
    options.max_connections(CLAIM_CONNECTIONS).min_connections(1).map_sqlx_postgres_opts(|opts| {
        opts.options([
            ("enable_sort", "off"),
            ("enable_bitmapscan", "off"),
            ("enable_seqscan", "off"),
            ("plan_cache_mode", "force_generic_plan"),
            // The disabled plan types cost what PostgreSQL calls prohibitive, which can lift a plan's estimate
            // over the JIT threshold: measured 1.5 s of compiling per claim. A claim reads a handful of rows.
            ("jit", "off"),
        ])
    });
    Database::connect(options).await
}

pub async fn migrate_up(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Sets up the SQLite writer for serving, once migrations are done. A statement that changes several rows inside a
/// transaction keeps a statement journal, to undo just that statement; past 64 KiB SQLite moves it to a temporary
/// file, made and deleted again for each such statement (every multi-row claim or completion): kept in memory
/// instead. Temporary storage also takes sorts and indexes built without room in the page cache, which the
/// server's paged queries keep small but a migration building an index over a large table does not: hence after
/// the migrations.
pub async fn prepare_writer(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        db.execute_unprepared("PRAGMA temp_store = memory").await?;
    }
    Ok(())
}

pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => "postgres",
        DatabaseBackend::Sqlite => "sqlite",
        _ => "other",
    }
}
