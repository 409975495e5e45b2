//! Freshly leased attempts and their folders. A retry's folder is prepared before its assignment goes out: the
//! previous attempt's files must move aside before the worker can upload anything under the new lease. A first
//! attempt's folder only gains `input.json`, which nothing the worker does depends on, so it is written after the
//! assignment has gone out, off the dispatch path. Until then the task is pending: writing its `output.json`, or
//! moving its files aside for a retry, waits for that `input.json`.

use std::{collections::HashSet, io, path::Path, sync::Mutex};

use tokio::sync::Notify;

use super::{INPUT_FILE, TraceStore, archive_attempt, root_dir::RootDir};

/// First attempts whose `input.json` is not written yet. A task has one first attempt, so a set of ids is enough.
#[derive(Debug, Default)]
pub(super) struct PendingInputs {
    tasks: Mutex<HashSet<String>>,
    written: Notify,
}

impl PendingInputs {
    fn add(&self, ids: impl IntoIterator<Item = String>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.extend(ids);
        }
    }

    fn remove(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        if let Ok(mut tasks) = self.tasks.lock() {
            for id in ids {
                tasks.remove(id);
            }
        }
        self.written.notify_waiters();
    }

    fn any_of<'a>(&self, mut ids: impl Iterator<Item = &'a str>) -> bool {
        self.tasks.lock().map(|tasks| !tasks.is_empty() && ids.any(|id| tasks.contains(id))).unwrap_or(false)
    }

    /// Returns once none of these tasks is pending.
    pub(super) async fn wait_for<'a>(&self, ids: impl Iterator<Item = &'a str> + Clone) {
        loop {
            let written = self.written.notified();
            tokio::pin!(written);
            // Registered before looking, so that a removal between the look and the wait is not missed.
            written.as_mut().enable();
            if !self.any_of(ids.clone()) {
                return;
            }
            written.await;
        }
    }
}

/// One leased attempt: the task id, the attempt number, and the bytes of its `input.json` (the task document).
pub type Attempt = (String, i32, Vec<u8>);

/// The attempts one claim leased, from `TraceStore::begin_attempts` until their folders are prepared. Dropping it
/// unprepared (the stream went away) releases whatever waits on its first attempts.
#[must_use = "the folders of the attempts must be prepared"]
pub struct NewAttempts {
    store: TraceStore,
    retries: Vec<Attempt>,
    firsts: Vec<Attempt>,
    /// The tasks of `firsts`, pending until this is dropped.
    first_ids: Vec<String>,
}

impl NewAttempts {
    pub(super) fn new(store: TraceStore, attempts: Vec<Attempt>) -> Self {
        let (retries, firsts): (Vec<_>, Vec<_>) = attempts.into_iter().partition(|(_, attempt, _)| *attempt > 1);
        let first_ids: Vec<String> = firsts.iter().map(|(id, _, _)| id.clone()).collect();
        store.pending.add(first_ids.iter().cloned());
        Self { store, retries, firsts, first_ids }
    }

    /// Moves the previous attempts' files of the retries to `attempts/<attempt - 1>/` and writes their `input.json`.
    /// Call before their assignments go out.
    pub async fn prepare_retries(&mut self) {
        let retries = std::mem::take(&mut self.retries);
        if retries.is_empty() {
            return;
        }
        // A first attempt that failed at once may still be writing its input.json.
        self.store.pending.wait_for(retries.iter().map(|(id, _, _)| id.as_str())).await;
        prepare(&self.store, retries).await;
    }

    /// Writes `input.json` of the first attempts; their assignments may already be out. They stop being pending
    /// when `self` drops, right after.
    pub async fn prepare_firsts(mut self) {
        prepare(&self.store, std::mem::take(&mut self.firsts)).await;
    }
}

impl Drop for NewAttempts {
    fn drop(&mut self) {
        self.store.pending.remove(&self.first_ids);
    }
}

/// One blocking job for the whole batch; failures are logged, as the task runs on without its folder.
async fn prepare(store: &TraceStore, attempts: Vec<Attempt>) {
    if attempts.is_empty() {
        return;
    }
    let root = store.root().to_path_buf();
    let root_dir = store.root_dir.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        for (task_id, attempt, input) in attempts {
            if let Err(err) = prepare_folder(&root_dir, &root, &task_id, attempt, &input) {
                tracing::error!(task_id = %task_id, error = %err, "could not prepare the trace folder");
            }
        }
    })
    .await;
    if let Err(err) = outcome {
        tracing::error!(error = %err, "could not prepare the trace folders");
    }
}

/// Makes the task's folder (moving a previous attempt's files aside) and writes its `input.json`. Written in place
/// rather than through a temporary file and a rename: the file is derived from the database (a torn one after a
/// crash is reconstructible from the row), and creating inodes is the largest cost of a short task's folder.
fn prepare_folder(root_dir: &RootDir, root: &Path, task_id: &str, attempt: i32, input: &[u8]) -> io::Result<()> {
    root_dir.make_dir(task_id)?;
    if attempt > 1 {
        archive_attempt(&root.join(task_id), attempt - 1)?;
    }
    root_dir.write(&format!("{task_id}/{INPUT_FILE}"), input)
}

impl TraceStore {
    /// Starts freshly leased attempts: from now on, uploads under older leases of these tasks are refused. Their
    /// folders are prepared through the returned value.
    pub fn begin_attempts(&self, attempts: Vec<Attempt>) -> NewAttempts {
        if let Ok(mut usage) = self.usage.lock() {
            for (task_id, attempt, _) in &attempts {
                usage.insert(task_id.clone(), super::Usage { attempt: *attempt, ..Default::default() });
            }
        }
        NewAttempts::new(self.clone(), attempts)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value as Json, json};

    use super::*;

    fn doc(value: Json) -> Vec<u8> {
        serde_json::to_vec_pretty(&value).unwrap()
    }
    use crate::trace::{OUTPUT_FILE, TraceLimits};

    fn store() -> (tempfile::TempDir, TraceStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TraceStore::open(dir.path(), TraceLimits::default()).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_first_attempts_output_waits_for_its_input() {
        let (_dir, store) = store();
        let attempts = store.begin_attempts(vec![("t1".into(), 1, doc(json!({"id": "t1"})))]);
        let writer = store.clone();
        let output = tokio::spawn(async move { writer.write_output("t1", &json!({"ok": true})).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!output.is_finished(), "output.json was written before input.json");

        attempts.prepare_firsts().await;
        output.await.unwrap().unwrap();
        let folder = store.task_dir("t1");
        assert!(folder.join(INPUT_FILE).is_file() && folder.join(OUTPUT_FILE).is_file());
    }

    #[tokio::test]
    async fn attempts_dropped_unprepared_hold_nothing_up() {
        let (_dir, store) = store();
        drop(store.begin_attempts(vec![("t2".into(), 1, doc(json!({})))]));
        store.write_output("t2", &json!({})).await.unwrap();
        assert!(!store.task_dir("t2").join(INPUT_FILE).exists());
    }

    #[tokio::test]
    async fn a_retry_moves_the_earlier_attempt_aside_before_its_assignment() {
        let (_dir, store) = store();
        store.begin_attempts(vec![("t3".into(), 1, doc(json!({"attempt": 1})))]).prepare_firsts().await;
        let mut retry = store.begin_attempts(vec![("t3".into(), 2, doc(json!({"attempt": 2})))]);
        retry.prepare_retries().await;
        let folder = store.task_dir("t3");
        let read = |path: std::path::PathBuf| serde_json::from_slice::<Json>(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(read(folder.join("attempts/1").join(INPUT_FILE)), json!({"attempt": 1}));
        assert_eq!(read(folder.join(INPUT_FILE)), json!({"attempt": 2}));
        retry.prepare_firsts().await;
    }
}
