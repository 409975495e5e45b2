//! Trace folders on disk: `<trace_root>/<task_id>/` holds `input.json` and `output.json` (written by the server)
//! and whatever the worker uploads through PushTrace (`log.txt` and more).
//!
//! When a task is leased again after a lost or failed attempt, the previous attempt's files move to
//! `attempts/<n>/`, so each attempt's trace stays apart and the top level always shows the current one. A first
//! attempt's `input.json` is written just after its assignment goes out (see `attempts`).
//!
//! Uploaded bytes exist nowhere else, so they are fsynced before PushTrace answers. `input.json` and
//! `output.json` are derived from database rows, so they are written in place and not fsynced. `output.json` is
//! written right after the task's end commits: the settling call answers once it is there, while another client
//! polling the task may see the end a moment before the file.

mod attempts;
mod names;
mod root_dir;
mod writer;

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde_json::Value as Json;

pub use attempts::{Attempt, NewAttempts};
pub use names::{MAX_DEPTH, validate_file_name};
pub use writer::{TraceSummary, TraceWriter};

pub const INPUT_FILE: &str = "input.json";
pub const OUTPUT_FILE: &str = "output.json";
pub const LOG_FILE: &str = "log.txt";
/// Where earlier attempts' files are kept.
pub const ATTEMPTS_DIR: &str = "attempts";

/// Limits on what workers upload, per attempt of a task.
#[derive(Debug, Clone, Copy)]
pub struct TraceLimits {
    pub max_file_bytes: u64,
    /// For all uploaded files of one attempt together.
    pub max_task_bytes: u64,
    pub max_files: u64,
}

impl Default for TraceLimits {
    fn default() -> Self {
        Self { max_file_bytes: 64 << 20, max_task_bytes: 256 << 20, max_files: 1000 }
    }
}

/// What the current attempt of a task has uploaded, shared by every PushTrace stream of the task.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    attempt: i32,
    bytes: u64,
    files: u64,
}

#[derive(Debug, Clone)]
pub struct TraceStore {
    root: PathBuf,
    /// The same folder, open: where the server's own files are written.
    root_dir: Arc<root_dir::RootDir>,
    limits: TraceLimits,
    usage: Arc<Mutex<HashMap<String, Usage>>>,
    pending: Arc<attempts::PendingInputs>,
}

impl TraceStore {
    /// Creates the root if needed; paths are kept absolute so that `trace_path` URIs are too.
    pub fn open(root: &Path, limits: TraceLimits) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let root_dir = Arc::new(root_dir::RootDir::open(&root)?);
        Ok(Self { root, root_dir, limits, usage: Arc::default(), pending: Arc::default() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn limits(&self) -> TraceLimits {
        self.limits
    }

    /// Task ids are UUIDs checked by the caller, so they are safe as a path component.
    pub fn task_dir(&self, task_id: &str) -> PathBuf {
        self.root.join(task_id)
    }

    /// `trace_path` of a task is this prefix followed by its id.
    pub fn uri_prefix(&self) -> String {
        format!("file://{}/", self.root.display())
    }

    /// Writes `output.json`: the result or the error the task ended with. The task takes no more uploads' usage.
    pub async fn write_output(&self, task_id: &str, output: &Json) -> io::Result<()> {
        let mut written = self.write_outputs(vec![(task_id, serde_json::to_vec_pretty(output)?)]).await?;
        written.pop().unwrap_or_else(|| Err(io::Error::other("no outcome")))
    }

    /// `write_output` for several tasks, each given as the bytes of its `output.json`, in one blocking job; one
    /// outcome per task, in order. Waits for the `input.json` of first attempts still being written, so that a
    /// task's folder is whole once it has ended.
    pub async fn write_outputs(&self, outputs: Vec<(&str, Vec<u8>)>) -> io::Result<Vec<io::Result<()>>> {
        self.pending.wait_for(outputs.iter().map(|(task_id, _)| *task_id)).await;
        if let Ok(mut usage) = self.usage.lock() {
            for (task_id, _) in &outputs {
                usage.remove(*task_id);
            }
        }
        let files: Vec<(String, Vec<u8>)> =
            outputs.into_iter().map(|(task_id, bytes)| (task_id.to_owned(), bytes)).collect();
        let root = self.root_dir.clone();
        tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|(task_id, bytes)| {
                    let file = format!("{task_id}/{OUTPUT_FILE}");
                    // The folder was made when the task was leased; it is missing only if preparing it failed.
                    match root.write(&file, &bytes) {
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {
                            root.make_dir(&task_id)?;
                            root.write(&file, &bytes)
                        }
                        written => written,
                    }
                })
                .collect()
        })
        .await
        .map_err(io::Error::other)
    }

    pub fn writer(&self) -> TraceWriter {
        TraceWriter::new(self.clone())
    }

    /// The current attempt's files (earlier attempts excluded), with their size and SHA-256, sorted by name.
    pub async fn files(&self, task_id: &str) -> io::Result<Vec<TraceFile>> {
        let dir = self.task_dir(task_id);
        let uri = format!("{}{task_id}", self.uri_prefix());
        tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            collect_files(&dir, &uri, &mut files)?;
            files.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(files)
        })
        .await?
    }

    /// Reserves room for an upload of the task's `attempt`: `bytes` more, and one more file if `new_file`.
    fn reserve(&self, task_id: &str, attempt: i32, bytes: u64, new_file: bool) -> crate::error::Result<()> {
        use crate::error::Error;
        let dir = self.task_dir(task_id);
        let mut usage = self.usage.lock().map_err(|_| Error::internal("trace usage", "lock poisoned"))?;
        let entry = match usage.get_mut(task_id) {
            Some(entry) => entry,
            None => {
                // First upload since this server started: count what is already there.
                let (bytes, files) = uploaded(&dir).map_err(|e| Error::internal("trace scan", e))?;
                usage.entry(task_id.to_owned()).or_insert(Usage { attempt, bytes, files })
            }
        };
        if entry.attempt > attempt {
            return Err(Error::precondition(
                "LEASE_NOT_HELD",
                format!(
                    "lease_id: attempt {attempt} of task {task_id} is over; attempt {} holds it now",
                    entry.attempt
                ),
            ));
        }
        if entry.bytes + bytes > self.limits.max_task_bytes {
            return Err(Error::ResourceExhausted(format!(
                "file: the task's trace would reach {} bytes, over the per-task limit of {} bytes",
                entry.bytes + bytes,
                self.limits.max_task_bytes
            )));
        }
        if new_file && entry.files >= self.limits.max_files {
            return Err(Error::ResourceExhausted(format!(
                "file: the task's trace already has {} files, the per-task limit",
                self.limits.max_files
            )));
        }
        entry.bytes += bytes;
        entry.files += u64::from(new_file);
        Ok(())
    }

    /// Gives back a reservation whose write failed.
    fn unreserve(&self, task_id: &str, bytes: u64, new_file: bool) {
        if let Ok(mut usage) = self.usage.lock()
            && let Some(entry) = usage.get_mut(task_id)
        {
            entry.bytes = entry.bytes.saturating_sub(bytes);
            entry.files = entry.files.saturating_sub(u64::from(new_file));
        }
    }
}

/// A file in a trace folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFile {
    /// Relative to the task folder, e.g. "log.txt" or "reports/lint.json".
    pub name: String,
    pub uri: String,
    pub size: u64,
    pub sha256: String,
}

/// Which top-level entries of a task folder a walk skips.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Earlier attempts and hidden files: the current attempt's trace, the server's files included.
    EarlierAttempts,
    /// Also `input.json` and `output.json`: what the worker uploaded.
    ServerFiles,
}

/// Calls `visit` with every regular file of the task folder's current attempt, below the skipped entries.
fn walk(task_dir: &Path, skip: Skip, visit: &mut dyn FnMut(&Path) -> io::Result<()>) -> io::Result<()> {
    fn walk_dir(dir: &Path, top: Option<Skip>, visit: &mut dyn FnMut(&Path) -> io::Result<()>) -> io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(skip) = top {
                let earlier = name == ATTEMPTS_DIR || name.to_string_lossy().starts_with('.');
                let servers = name == INPUT_FILE || name == OUTPUT_FILE;
                if earlier || (skip == Skip::ServerFiles && servers) {
                    continue;
                }
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk_dir(&entry.path(), None, visit)?;
            } else if kind.is_file() {
                visit(&entry.path())?;
            }
        }
        Ok(())
    }
    walk_dir(task_dir, Some(skip), visit)
}

fn collect_files(root: &Path, uri: &str, out: &mut Vec<TraceFile>) -> io::Result<()> {
    walk(root, Skip::EarlierAttempts, &mut |path| {
        let name = path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned();
        let (size, sha256) = digest(path)?;
        out.push(TraceFile { uri: format!("{uri}/{name}"), name, size, sha256 });
        Ok(())
    })
}

/// Bytes and files the worker has uploaded for the current attempt.
fn uploaded(task_dir: &Path) -> io::Result<(u64, u64)> {
    let mut total = (0, 0);
    walk(task_dir, Skip::ServerFiles, &mut |path| {
        total.0 += std::fs::metadata(path)?.len();
        total.1 += 1;
        Ok(())
    })?;
    Ok(total)
}

fn digest(path: &Path) -> io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher)?;
    let hash = hasher.finalize();
    Ok((size, hash.iter().map(|b| format!("{b:02x}")).collect()))
}

fn archive_attempt(dir: &Path, attempt: i32) -> io::Result<()> {
    let archive = dir.join(ATTEMPTS_DIR).join(attempt.to_string());
    let mut created = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == ATTEMPTS_DIR {
            continue;
        }
        if !created {
            std::fs::create_dir_all(&archive)?;
            created = true;
        }
        std::fs::rename(entry.path(), archive.join(entry.file_name()))?;
    }
    Ok(())
}
