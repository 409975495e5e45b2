//! Group commit: calls that arrive while a commit is in progress wait for the next one and share it (one
//! transaction, one audit insert and one fsync for the whole group, instead of one each). Nothing waits on
//! purpose, so a lone call commits at once; under load the groups grow by themselves. Claims, CompleteTask and
//! unary EnqueueTask go through here.

use std::sync::Arc;

use sea_orm::DatabaseBackend;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::error::{Error, Result};

/// What a group commit writes: a whole group in one transaction, or one item alone.
pub trait Batch: Send + Sync + 'static {
    type Item: Clone + Send + 'static;
    type Output: Send + 'static;
    /// What the log calls the operation.
    const NAME: &'static str;
    /// Groups committed at once on PostgreSQL. Overlapping commits keep the database busy while one group is on
    /// the wire, but split what arrives into smaller groups, and a statement's fixed cost is paid per group.
    const POSTGRES_COMMITTERS: usize;

    /// Writes the group in one transaction; one outcome per item, in order. An error is an error of the whole
    /// transaction, after which every item is written alone, so that one bad item fails only itself.
    fn all(&self, items: Vec<Self::Item>) -> impl Future<Output = Result<Vec<Result<Self::Output>>>> + Send;

    /// Writes one item in its own transaction.
    fn one(&self, item: Self::Item) -> impl Future<Output = Result<Self::Output>> + Send;
}

struct Job<B: Batch> {
    item: B::Item,
    reply: oneshot::Sender<Result<B::Output>>,
}

pub struct GroupCommit<B: Batch> {
    jobs: mpsc::Sender<Job<B>>,
}

impl<B: Batch> Clone for GroupCommit<B> {
    fn clone(&self) -> Self {
        Self { jobs: self.jobs.clone() }
    }
}

impl<B: Batch> GroupCommit<B> {
    /// One committer on SQLite (one writer anyway); `B::POSTGRES_COMMITTERS` on PostgreSQL.
    pub fn spawn(backend: DatabaseBackend, batch: B, max_group: usize) -> Self {
        let (jobs, rx) = mpsc::channel(4 * max_group);
        let rx = Arc::new(Mutex::new(rx));
        let batch = Arc::new(batch);
        let committers = if backend == DatabaseBackend::Postgres { B::POSTGRES_COMMITTERS } else { 1 };
        for _ in 0..committers {
            tokio::spawn(commit_loop(batch.clone(), rx.clone(), max_group));
        }
        Self { jobs }
    }

    pub async fn submit(&self, item: B::Item) -> Result<B::Output> {
        let (reply, outcome) = oneshot::channel();
        self.jobs.send(Job { item, reply }).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    /// Submits several items at once, so that they join the same group; one outcome per item, in order.
    pub async fn submit_all(&self, items: Vec<B::Item>) -> Vec<Result<B::Output>> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let (reply, outcome) = oneshot::channel();
            outcomes.push(match self.jobs.send(Job { item, reply }).await {
                Ok(()) => Some(outcome),
                Err(_) => None,
            });
        }
        let mut results = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            results.push(match outcome {
                Some(outcome) => outcome.await.unwrap_or_else(|_| Err(gone())),
                None => Err(gone()),
            });
        }
        results
    }
}

fn gone() -> Error {
    Error::Unavailable("the server is shutting down".into())
}

async fn commit_loop<B: Batch>(batch: Arc<B>, jobs: Arc<Mutex<mpsc::Receiver<Job<B>>>>, max_group: usize) {
    loop {
        // Take a group, then let the next committer take the next one while this one commits.
        let group = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else { return };
            let mut group = vec![first];
            super::take_waiting(&mut jobs, &mut group, max_group);
            group
        };
        let items = group.iter().map(|job| job.item.clone()).collect();
        match batch.all(items).await {
            Ok(outcomes) => {
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, size = group.len(), operation = B::NAME, "group commit failed; writing one by one");
                for job in group {
                    let _ = job.reply.send(batch.one(job.item).await);
                }
            }
        }
    }
}
