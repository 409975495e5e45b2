//! Writes the chunks of one PushTrace upload.
//!
//! A chunk names its byte offset. Bytes below the file's current length are already on disk and are skipped, so
//! a worker that lost its connection can resend from any earlier offset; a chunk past the end would leave a hole
//! and is refused. Room is reserved in the task's shared usage before writing, so concurrent uploads of one task
//! share its limits. Files are opened per chunk (no descriptors held across a stream), written positionally, and
//! every touched file and folder is fsynced by `finish`. One chunk is written while the next one is received: the
//! writes stay in order (a chunk's write starts once the one before it has ended), and a failed write is reported
//! with the next chunk or by `finish`.

use std::{
    collections::BTreeSet,
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::Path,
};

use tokio::task::JoinHandle;

use super::TraceStore;
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
    /// (task id, relative name) of every file this upload touched.
    touched: BTreeSet<(String, String)>,
    bytes_written: u64,
    bytes_skipped: u64,
    /// The write on its way, if any: it returns (bytes written, bytes skipped).
    writing: Option<JoinHandle<Result<(u64, u64)>>>,
}

impl TraceWriter {
    pub(super) fn new(store: TraceStore) -> Self {
        Self { store, touched: BTreeSet::new(), bytes_written: 0, bytes_skipped: 0, writing: None }
    }

    /// Waits for the write on its way and counts what it wrote.
    async fn written(&mut self) -> Result<()> {
        if let Some(writing) = self.writing.take() {
            let (written, skipped) = writing.await.map_err(|e| Error::internal("trace write task", e))??;
            self.bytes_written += written;
            self.bytes_skipped += skipped;
        }
        Ok(())
    }

    /// Starts writing one chunk for `attempt` of a task, once the chunk before it is written; `name` must have
    /// passed `validate_file_name`. An error is that of the chunk before.
    pub async fn write(
        &mut self,
        task_id: &str,
        attempt: i32,
        name: &str,
        offset: u64,
        data: Vec<u8>,
        eof: bool,
    ) -> Result<()> {
        self.written().await?;
        let store = self.store.clone();
        let (task, file) = (task_id.to_owned(), name.to_owned());
        self.writing =
            Some(tokio::task::spawn_blocking(move || write_chunk(&store, &task, attempt, &file, offset, &data, eof)));
        self.touched.insert((task_id.to_owned(), name.to_owned()));
        Ok(())
    }

    /// Waits for the last write, makes everything written durable (file data and directory entries) and reports
    /// what is on disk.
    pub async fn finish(mut self) -> Result<TraceSummary> {
        self.written().await?;
        let root = self.store.root().to_owned();
        let touched = self.touched;
        let (bytes_written, bytes_skipped) = (self.bytes_written, self.bytes_skipped);
        tokio::task::spawn_blocking(move || -> io::Result<TraceSummary> {
            let mut summary = TraceSummary { bytes_written, bytes_skipped, ..Default::default() };
            let mut dirs = BTreeSet::new();
            for (task_id, name) in &touched {
                let path = root.join(task_id).join(name);
                let file = File::open(&path)?;
                file.sync_data()?;
                summary.files.push((name.clone(), file.metadata()?.len()));
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
        .map_err(|e| Error::internal("trace task", e))?
        .map_err(|e| Error::internal("trace fsync", e))
    }
}

/// Returns (bytes written, bytes skipped).
fn write_chunk(
    store: &TraceStore,
    task_id: &str,
    attempt: i32,
    name: &str,
    offset: u64,
    data: &[u8],
    eof: bool,
) -> Result<(u64, u64)> {
    let limits = store.limits();
    let path = store.task_dir(task_id).join(name);
    // Names are valid one by one but may clash with earlier uploads of the task: "a" and "a/b" cannot both be files.
    let existing = match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Some(meta.len()),
        // Otherwise the folder's own size would pass for bytes already written, and the chunk would be dropped.
        Ok(_) => return Err(Error::invalid("file", format!("{name} is a folder of the trace, not a file"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(Error::invalid("file", format!("{name} lies under a file of the trace, not a folder")));
        }
        Err(e) => return Err(Error::internal("trace stat", e)),
    };
    let len = existing.unwrap_or(0);
    let chunk_len = data.len() as u64;
    if offset > len {
        return Err(Error::invalid(
            "offset",
            format!("{offset} would leave a gap in {name}, which has {len} bytes; resume from offset {len}"),
        ));
    }
    let end = offset + chunk_len;
    if end <= len && existing.is_some() {
        return Ok((0, chunk_len));
    }
    if end > limits.max_file_bytes {
        return Err(Error::ResourceExhausted(format!(
            "file: {name} would reach {end} bytes, over the per-file limit of {} bytes",
            limits.max_file_bytes
        )));
    }
    let fresh = end.saturating_sub(len);
    let new_file = existing.is_none();
    store.reserve(task_id, attempt, fresh, new_file)?;
    let start = (len - offset) as usize;
    let written = open_for_write(&path).and_then(|file| {
        file.write_all_at(&data[start..], len)?;
        if eof {
            file.sync_data()?;
        }
        Ok(())
    });
    if let Err(err) = written {
        store.unreserve(task_id, fresh, new_file);
        return Err(Error::internal("trace write", err));
    }
    Ok((fresh, start as u64))
}

fn open_for_write(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).write(true).truncate(false).open(path)
}
