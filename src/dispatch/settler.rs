//! Group commit of completions (see `group_commit`): CompleteTask calls arriving during a commit share the next one.
//! A group also claims the next tasks of the full streams whose slots it frees, in its own transaction (see
//! `dispatch::handoff`).

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use serde_json::Value as Json;

use super::{
    Dispatcher,
    group_commit::{Batch, GroupCommit},
};
use crate::{
    clock::SharedClock,
    error::Result,
    store::tasks::{self, Settled},
};

/// Completions per transaction at most.
const MAX_GROUP: usize = 512;

struct Completion {
    db: DatabaseConnection,
    clock: SharedClock,
    dispatcher: Arc<Dispatcher>,
}

impl Batch for Completion {
    type Item = (String, Json);
    type Output = Settled;
    const NAME: &'static str = "complete";
    /// A group of completions is one statement. Fewer committers make larger groups (one made them 2.5 times larger
    /// than four, when worker processes were slower to send them); two let a group commit while the next one is
    /// on its way, which drained a 4 x 16 backlog 7-10% faster than one, at the same CPU per task (BENCHMARKS.md).
    const POSTGRES_COMMITTERS: usize = 2;

    async fn all(&self, items: Vec<Self::Item>) -> Result<Vec<Result<Settled>>> {
        let full = self.dispatcher.take_full(&items);
        if full.is_empty() {
            return tasks::complete_many(&self.db, self.clock.now(), items).await;
        }
        let claims: Vec<_> = full.iter().map(|parked| parked.request.clone()).collect();
        // On an error the parked streams are dropped unanswered, and look on their own.
        let (settled, claimed) =
            tasks::complete_many_claiming(&self.db, self.dispatcher.claim_db(), self.clock.now(), items, &claims)
                .await?;
        self.dispatcher.hand_over(full, claimed).await;
        Ok(settled)
    }

    async fn one(&self, (lease_id, result): Self::Item) -> Result<Settled> {
        tasks::complete(&self.db, self.clock.now(), &lease_id, result).await
    }
}

#[derive(Clone)]
pub struct Completions(GroupCommit<Completion>);

impl Completions {
    pub fn spawn(db: DatabaseConnection, clock: SharedClock, dispatcher: Arc<Dispatcher>) -> Self {
        Self(GroupCommit::spawn(db.get_database_backend(), Completion { db, clock, dispatcher }, MAX_GROUP))
    }

    pub async fn complete(&self, lease_id: &str, result: Json) -> Result<Settled> {
        self.0.submit((lease_id.to_owned(), result)).await
    }

    /// Completions of a CompleteTasks call: one outcome per (lease, result), in order.
    pub async fn complete_all(&self, items: Vec<(String, Json)>) -> Vec<Result<Settled>> {
        self.0.submit_all(items).await
    }
}
