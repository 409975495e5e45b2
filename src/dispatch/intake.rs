//! Group commit of unary EnqueueTask (see `group_commit`): enqueues arriving during a commit share the next one,
//! with one multi-row insert and one audit insert. Enqueues that build a work model take their own transaction.

use sea_orm::DatabaseConnection;

use super::group_commit::{Batch, GroupCommit};
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
}

impl Batch for Enqueue {
    type Item = (NewTask, EnqueueContext);
    type Output = Enqueued;
    const NAME: &'static str = "enqueue";
    const POSTGRES_COMMITTERS: usize = 4;

    async fn all(&self, items: Vec<Self::Item>) -> Result<Vec<Result<Enqueued>>> {
        let enqueued = tasks::enqueue_many(&self.db, self.clock.now(), items).await?;
        Ok(enqueued.into_iter().map(Ok).collect())
    }

    async fn one(&self, (task, ctx): Self::Item) -> Result<Enqueued> {
        tasks::enqueue(&self.db, self.clock.now(), task, &ctx).await
    }
}

#[derive(Clone)]
pub struct Intake(GroupCommit<Enqueue>);

impl Intake {
    pub fn spawn(db: DatabaseConnection, clock: SharedClock) -> Self {
        Self(GroupCommit::spawn(db.get_database_backend(), Enqueue { db, clock }, MAX_GROUP))
    }

    pub async fn enqueue(&self, task: NewTask, ctx: EnqueueContext) -> Result<Enqueued> {
        self.0.submit((task, ctx)).await
    }
}
