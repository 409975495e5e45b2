//! Group commit of claims. Every stream with free slots asks here; the claims waiting while one transaction runs
//! are served together by the next one: one transaction, one audit insert and one commit for all of them, instead
//! of one per stream. Nothing waits on purpose, so a lone claim runs at once; under load the groups grow.

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use crate::{
    clock::SharedClock,
    error::{Error, Result},
    store::tasks::{self, ClaimRequest, Claimed},
};

/// Claims per transaction at most.
const MAX_GROUP: usize = 256;

struct Job {
    request: ClaimRequest,
    reply: oneshot::Sender<Result<Claimed>>,
}

#[derive(Clone)]
pub struct Claims {
    jobs: mpsc::Sender<Job>,
}

impl Claims {
    /// One claimer per server: a group serves every waiting stream, and streams on other servers pass it by
    /// (SKIP LOCKED).
    pub fn spawn(db: DatabaseConnection, clock: SharedClock) -> Self {
        let (jobs, rx) = mpsc::channel(MAX_GROUP);
        tokio::spawn(claim_loop(db, clock, rx));
        Self { jobs }
    }

    pub async fn claim(&self, request: ClaimRequest) -> Result<Claimed> {
        let (reply, outcome) = oneshot::channel();
        let gone = || Error::Unavailable("the server is shutting down".into());
        self.jobs.send(Job { request, reply }).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }
}

async fn claim_loop(db: DatabaseConnection, clock: SharedClock, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        super::take_waiting(&mut jobs, &mut group, MAX_GROUP);
        let (requests, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|j| (j.request, j.reply)).unzip();
        match tasks::claim_many(&db, clock.now(), &requests).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            // The group failed as a whole: each stream learns it and tries again after its own delay.
            Err(err) => {
                tracing::warn!(error = %err, size = replies.len(), "group claim failed");
                for reply in replies {
                    let _ = reply.send(Err(Error::Unavailable(format!("claim failed: {err}"))));
                }
            }
        }
    }
}
