//! Group commit of completions. CompleteTask calls that arrive while a commit is in progress wait for the next one
//! and share it: one transaction, one audit insert and one fsync for the whole group, instead of one each. Nothing
//! waits on purpose, so a lone completion commits at once; under load the groups grow by themselves.

use std::sync::Arc;

use sea_orm::{DatabaseBackend, DatabaseConnection};
use serde_json::Value as Json;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    clock::SharedClock,
    error::{Error, Result},
    store::tasks::{self, Settled},
};

/// Completions per transaction at most.
const MAX_GROUP: usize = 512;

struct Job {
    lease_id: String,
    result: Json,
    reply: oneshot::Sender<Result<Settled>>,
}

#[derive(Clone)]
pub struct Completions {
    jobs: mpsc::Sender<Job>,
}

impl Completions {
    /// One committer on SQLite (one writer anyway); several on PostgreSQL, whose commits can overlap.
    pub fn spawn(db: DatabaseConnection, clock: SharedClock) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_GROUP);
        let rx = Arc::new(Mutex::new(rx));
        let committers = if db.get_database_backend() == DatabaseBackend::Postgres { 4 } else { 1 };
        for _ in 0..committers {
            tokio::spawn(commit_loop(db.clone(), clock.clone(), rx.clone()));
        }
        Self { jobs }
    }

    pub async fn complete(&self, lease_id: &str, result: Json) -> Result<Settled> {
        let (reply, outcome) = oneshot::channel();
        let job = Job { lease_id: lease_id.to_owned(), result, reply };
        self.jobs.send(job).await.map_err(|_| Error::Unavailable("the server is shutting down".into()))?;
        outcome.await.map_err(|_| Error::Unavailable("the server is shutting down".into()))?
    }
}

async fn commit_loop(db: DatabaseConnection, clock: SharedClock, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        // Take a group, then let the next committer take the next one while this one commits.
        let group = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else { return };
            let mut group = vec![first];
            super::take_waiting(&mut jobs, &mut group, MAX_GROUP);
            group
        };
        let items: Vec<_> = group.iter().map(|j| (j.lease_id.clone(), j.result.clone())).collect();
        match tasks::complete_many(&db, clock.now(), items).await {
            Ok(outcomes) => {
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            // The group failed as a whole: settle each on its own, so that one bad item fails only itself.
            Err(err) => {
                tracing::warn!(error = %err, size = group.len(), "group commit failed; completing one by one");
                for job in group {
                    let outcome = tasks::complete(&db, clock.now(), &job.lease_id, job.result).await;
                    let _ = job.reply.send(outcome);
                }
            }
        }
    }
}
