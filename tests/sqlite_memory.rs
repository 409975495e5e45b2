//! SQLite's allocator as the server configures it at start (`store::sqlite_memory`): a process that configures it
//! before its first database keeps no SQLite memory statistics and runs its databases through mimalloc. One test
//! alone in this binary, so that nothing else uses SQLite before it configures.

use control_tower::store::{db, sqlite_memory};
use sea_orm::{ConnectionTrait, Statement};

#[tokio::test]
async fn sqlite_runs_on_the_configured_allocator_without_statistics() {
    assert!(sqlite_memory::configure(), "SQLite refused the allocator");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("memory.db").display());
    let conn = db::connect(&url, 1).await.unwrap();
    db::migrate_up(&conn).await.unwrap();
    let backend = conn.get_database_backend();
    conn.execute_raw(Statement::from_string(backend, "CREATE TABLE blobs (b BLOB)")).await.unwrap();
    conn.execute_raw(Statement::from_string(
        backend,
        "INSERT INTO blobs SELECT randomblob(100000) FROM (SELECT 1 UNION SELECT 2)",
    ))
    .await
    .unwrap();
    let row =
        conn.query_one_raw(Statement::from_string(backend, "SELECT SUM(length(b)) FROM blobs")).await.unwrap().unwrap();
    assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 200_000);
    // SAFETY: reads SQLite's counters, which need no setup.
    let (used, peak) = unsafe { (libsqlite3_sys::sqlite3_memory_used(), libsqlite3_sys::sqlite3_memory_highwater(0)) };
    // With statistics on (SQLite's default) these count every live allocation: the connection alone holds more
    // than a hundred kilobytes.
    assert_eq!((used, peak), (0, 0), "SQLite kept memory statistics: its allocator was not configured");
    assert!(!sqlite_memory::configure(), "SQLite is configured before it starts, not while it runs");
}
