//! SQLite serves one server: a second `serve` on the same database file is refused at start-up with a clear
//! message, rather than two dispatchers racing over one writer. The guard is an exclusive `flock` on a file beside
//! the database, held for the server's lifetime and released by the kernel if the process dies.

use std::{fs::File, os::fd::AsRawFd, path::PathBuf};

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct SqliteServerLock {
    _file: File,
    pub path: PathBuf,
}

/// The database file of a SQLite URL, or `None` for an in-memory database.
pub fn database_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Takes the server lock of a SQLite database; an error names the database and what to do instead.
pub fn lock(url: &str) -> anyhow::Result<Option<SqliteServerLock>> {
    let Some(database) = database_file(url) else { return Ok(None) };
    let mut name = database.clone().into_os_string();
    name.push(".server-lock");
    let path = PathBuf::from(name);
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    // SAFETY: flock on a descriptor we own; the lock lives as long as the open file.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        anyhow::bail!(
            "another control-tower server is already using the SQLite database {} (lock {} is held). SQLite serves \
             one server; run several servers on PostgreSQL instead (DATABASE_URL=postgres://...)",
            database.display(),
            path.display()
        );
    }
    Ok(Some(SqliteServerLock { _file: file, path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_database_file_of_sqlite_urls() {
        assert_eq!(database_file("sqlite://control-tower.db?mode=rwc"), Some(PathBuf::from("control-tower.db")));
        assert_eq!(database_file("sqlite:///var/lib/ct.db"), Some(PathBuf::from("/var/lib/ct.db")));
        assert_eq!(database_file("sqlite::memory:"), None);
        assert_eq!(database_file("postgres://localhost/db"), None);
    }

    #[test]
    fn a_second_lock_on_the_same_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("db.sqlite").display());
        let first = lock(&url).unwrap();
        assert!(first.is_some());
        let err = lock(&url).unwrap_err().to_string();
        assert!(err.contains("already using the SQLite database") && err.contains("PostgreSQL"), "{err}");
        drop(first);
        assert!(lock(&url).unwrap().is_some(), "free again once the first server is gone");
    }
}
