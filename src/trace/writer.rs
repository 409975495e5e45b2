//! Writes the chunks of one PushTrace upload.
//!
//! A chunk names its byte offset. Bytes below the file's current length are already on disk and are skipped, so
//! a worker that lost its connection can resend from any earlier offset; a chunk past the end would leave a hole
//! and is refused. Writes are positional (`pwrite`), and every touched file and folder is fsynced by `finish`.

use std::{
    collections::{BTreeMap, HashMap},
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::Path,
    sync::Arc,
};

use super::{ATTEMPTS_DIR, INPUT_FILE, OUTPUT_FILE, TraceStore};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceSummary {
    /// Each touched file (relative name) and its size on disk.
    pub files: Vec<(String, u64)>,
    pub bytes_written: u64,
    pub bytes_skipped: u64,
}

pub struct TraceWriter {
    store: TraceStore,
    /// Open handles by (task id, relative name).
    files: BTreeMap<(String, String), Arc<File>>,
    /// Bytes uploaded so far per task (current attempt), against the per-task limit.
    task_bytes: HashMap<String, u64>,
    bytes_written: u64,
    bytes_skipped: u64,
}

impl TraceWriter {
    pub(super) fn new(store: TraceStore) -> Self {
        Self { store, files: BTreeMap::new(), task_bytes: HashMap::new(), bytes_written: 0, bytes_skipped: 0 }
    }

    /// Writes one chunk; `name` must have passed `validate_file_name`.
    pub async fn write(&mut self, task_id: &str, name: &str, offset: u64, data: Vec<u8>, eof: bool) -> Result<()> {
        let limits = self.store.limits();
        let task_dir = self.store.task_dir(task_id);
        let task_total = match self.task_bytes.get(task_id) {
            Some(total) => *total,
            None => {
                let dir = task_dir.clone();
                blocking(move || uploaded_bytes(&dir)).await?
            }
        };
        let key = (task_id.to_owned(), name.to_owned());
        let file = match self.files.get(&key) {
            Some(file) => file.clone(),
            None => {
                let path = task_dir.join(name);
                let file = Arc::new(blocking(move || open_for_append(&path)).await?);
                self.files.insert(key, file.clone());
                file
            }
        };

        let name = name.to_owned();
        let (written, skipped) = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
            let len = file.metadata().map_err(|e| Error::internal("trace stat", e))?.len();
            let chunk_len = data.len() as u64;
            if offset > len {
                return Err(Error::invalid(
                    "offset",
                    format!("{offset} would leave a gap in {name}, which has {len} bytes; resume from offset {len}"),
                ));
            }
            let end = offset + chunk_len;
            if end <= len {
                return Ok((0, chunk_len));
            }
            if end > limits.max_file_bytes {
                return Err(Error::ResourceExhausted(format!(
                    "file: {name} would reach {end} bytes, over the per-file limit of {} bytes",
                    limits.max_file_bytes
                )));
            }
            let fresh = end - len;
            if task_total + fresh > limits.max_task_bytes {
                return Err(Error::ResourceExhausted(format!(
                    "file: {name} would bring the task's trace to {} bytes, over the per-task limit of {} bytes",
                    task_total + fresh,
                    limits.max_task_bytes
                )));
            }
            let start = (len - offset) as usize;
            file.write_all_at(&data[start..], len).map_err(|e| Error::internal("trace write", e))?;
            if eof {
                file.sync_data().map_err(|e| Error::internal("trace fsync", e))?;
            }
            Ok((fresh, start as u64))
        })
        .await
        .map_err(|e| Error::internal("trace write task", e))??;

        self.task_bytes.insert(task_id.to_owned(), task_total + written);
        self.bytes_written += written;
        self.bytes_skipped += skipped;
        Ok(())
    }

    /// Makes everything written durable (file data and directory entries) and reports what is on disk.
    pub async fn finish(self) -> Result<TraceSummary> {
        let root = self.store.root().to_owned();
        let files = self.files;
        let (bytes_written, bytes_skipped) = (self.bytes_written, self.bytes_skipped);
        blocking(move || {
            let mut summary = TraceSummary { bytes_written, bytes_skipped, ..Default::default() };
            let mut dirs = std::collections::BTreeSet::new();
            for ((task_id, name), file) in &files {
                file.sync_data()?;
                summary.files.push((name.clone(), file.metadata()?.len()));
                let path = root.join(task_id).join(name);
                let mut dir = path.parent();
                while let Some(d) = dir.filter(|d| d.starts_with(&root) && *d != root) {
                    dirs.insert(d.to_owned());
                    dir = d.parent();
                }
            }
            for dir in dirs {
                File::open(dir)?.sync_all()?;
            }
            Ok(summary)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal("trace task", e))?
        .map_err(|e| Error::internal("trace io", e))
}

fn open_for_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).write(true).truncate(false).open(path)
}

/// Bytes the worker has uploaded for the current attempt: everything but the server's files and old attempts.
fn uploaded_bytes(task_dir: &Path) -> io::Result<u64> {
    fn walk(dir: &Path, top: bool, total: &mut u64) -> io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if top && (name == ATTEMPTS_DIR || name == INPUT_FILE || name == OUTPUT_FILE) {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), false, total)?;
            } else if kind.is_file() {
                *total += entry.metadata()?.len();
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(task_dir, true, &mut total)?;
    Ok(total)
}
