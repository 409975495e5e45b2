//! Trace folders on disk: `<trace_root>/<task_id>/` holds `input.json` and `output.json` (written by the server)
//! and whatever the worker uploads through PushTrace (`log.txt` and more).
//!
//! When a task is leased again after a lost or failed attempt, the previous attempt's files move to
//! `attempts/<n>/`, so each attempt's trace stays apart and the top level always shows the current one.
//!
//! Uploaded bytes exist nowhere else, so they are fsynced before PushTrace answers. `input.json` and
//! `output.json` are derived from database rows, so they are written atomically (rename) but not fsynced.

mod names;
mod writer;

use std::{
    io,
    path::{Path, PathBuf},
};

use serde_json::Value as Json;

pub use names::{MAX_DEPTH, validate_file_name};
pub use writer::{TraceSummary, TraceWriter};

pub const INPUT_FILE: &str = "input.json";
pub const OUTPUT_FILE: &str = "output.json";
pub const LOG_FILE: &str = "log.txt";
/// Where earlier attempts' files are kept.
pub const ATTEMPTS_DIR: &str = "attempts";

/// Size limits for uploaded trace files.
#[derive(Debug, Clone, Copy)]
pub struct TraceLimits {
    pub max_file_bytes: u64,
    /// For all uploaded files of one attempt together.
    pub max_task_bytes: u64,
}

impl Default for TraceLimits {
    fn default() -> Self {
        Self { max_file_bytes: 64 << 20, max_task_bytes: 256 << 20 }
    }
}

#[derive(Debug, Clone)]
pub struct TraceStore {
    root: PathBuf,
    limits: TraceLimits,
}

impl TraceStore {
    /// Creates the root if needed; paths are kept absolute so that `trace_path` URIs are too.
    pub fn open(root: &Path, limits: TraceLimits) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self { root: root.canonicalize()?, limits })
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

    /// Prepares the folder for a new attempt: earlier files move to `attempts/<attempt - 1>/`, then `input.json`
    /// records the task as the worker receives it.
    pub async fn begin_attempt(&self, task_id: &str, attempt: i32, input: &Json) -> io::Result<()> {
        let dir = self.task_dir(task_id);
        let bytes = serde_json::to_vec_pretty(input)?;
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            if attempt > 1 {
                archive_attempt(&dir, attempt - 1)?;
            }
            write_atomically(&dir.join(INPUT_FILE), &bytes)
        })
        .await?
    }

    /// Writes `output.json`: the result or the error the task ended with.
    pub async fn write_output(&self, task_id: &str, output: &Json) -> io::Result<()> {
        let dir = self.task_dir(task_id);
        let bytes = serde_json::to_vec_pretty(output)?;
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            write_atomically(&dir.join(OUTPUT_FILE), &bytes)
        })
        .await?
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
            collect_files(&dir, &dir, &uri, &mut files)?;
            files.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(files)
        })
        .await?
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

fn collect_files(root: &Path, dir: &Path, uri: &str, out: &mut Vec<TraceFile>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if dir == root && entry.file_name() == ATTEMPTS_DIR {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, uri, out)?;
        } else if kind.is_file() && !entry.file_name().to_string_lossy().ends_with(".tmp") {
            let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            let (size, sha256) = digest(&path)?;
            out.push(TraceFile { uri: format!("{uri}/{name}"), name, size, sha256 });
        }
    }
    Ok(())
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

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
