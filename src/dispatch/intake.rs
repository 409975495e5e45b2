//! Group commit of unary EnqueueTask (see `group_commit`): enqueues arriving during a commit share the next one,
//! with one multi-row insert and one audit insert. Enqueues that build a work model take their own transaction.
//! Streams waiting for work are served in the same transaction (see `handoff`).

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use super::{
    Dispatcher,
    group_commit::{Batch, GroupCommit},
};
use crate::{
    clock::SharedClock,
    error::Result,
    spec::NewTask,
    store::tasks::{self, EnqueueContext, Enqueued},
};

/// Enqueues per transaction at most.
const MAX_GROUP: usize = 256;

struct Enqueue {
    db: DatabaseConnection,
    clock: SharedClock,
    dispatcher: Arc<Dispatcher>,
}

impl Batch for Enqueue {
    type Item = (NewTask, EnqueueContext);
    type Output = Enqueued;
    const NAME: &'static str = "enqueue";
    // One: an enqueue's statement costs PostgreSQL about the same whether it carries one task or a dozen, and with
    // several committers each enqueue found one idle and went alone (700 commits per 1,000 tasks from 16 clients
    // with four committers, 350 with one, and a third more tasks/s; BENCHMARKS.md).
    const POSTGRES_COMMITTERS: usize = 1;

    async fn all(&self, items: Vec<Self::Item>) -> Result<Vec<Result<Enqueued>>> {
        let now = self.clock.now();
        let parked = self.dispatcher.take_parked(&items, now);
        let claims: Vec<_> = parked.iter().map(|p| p.request.clone()).collect();
        // On failure the parked streams are dropped unanswered, and look for work on their own.
        let (enqueued, claimed) =
            tasks::enqueue_many_claiming(&self.db, self.dispatcher.claim_db(), now, items, &claims).await?;
        self.dispatcher.hand_over(parked, claimed).await;
        Ok(enqueued.into_iter().map(Ok).collect())
    }

    async fn one(&self, (task, ctx): Self::Item) -> Result<Enqueued> {
        tasks::enqueue(&self.db, self.clock.now(), task, &ctx).await
    }
}

#[derive(Clone)]
pub struct Intake(GroupCommit<Enqueue>);

impl Intake {
    pub fn spawn(db: DatabaseConnection, clock: SharedClock, dispatcher: Arc<Dispatcher>) -> Self {
        Self(GroupCommit::spawn(db.get_database_backend(), Enqueue { db, clock, dispatcher }, MAX_GROUP))
    }

    pub async fn enqueue(&self, task: NewTask, ctx: EnqueueContext) -> Result<Enqueued> {
        self.0.submit((task, ctx)).await
    }
}
