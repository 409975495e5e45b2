//! Group commit of claims (see `group_commit`). Every stream with free slots asks here; the claims waiting while a
//! transaction runs are served together by the next one: one transaction, one audit insert and one commit for all
//! of them, instead of one per stream.
//!
//! On PostgreSQL several claim transactions overlap, as they would on several servers: each skips the rows the
//! others hold (SKIP LOCKED), and concurrency keys are admitted under advisory locks. A claim is a chain of round
//! trips ending in a commit, so a single claimer would leave the database idle between them.

use sea_orm::DatabaseConnection;

use super::group_commit::{Batch, GroupCommit};
use crate::{
    clock::SharedClock,
    error::Result,
    store::tasks::{self, ClaimRequest, ClaimRoute, Claimed},
};

/// Claims per transaction at most.
const MAX_GROUP: usize = 256;

struct Claim {
    db: DatabaseConnection,
    route: ClaimRoute,
    clock: SharedClock,
}

impl Batch for Claim {
    type Item = ClaimRequest;
    type Output = Claimed;
    const NAME: &'static str = "claim";
    /// A claim is a chain of round trips; overlapping claims keep the database busy meanwhile.
    const POSTGRES_COMMITTERS: usize = 4;

    async fn all(&self, requests: Vec<ClaimRequest>) -> Result<Vec<Result<Claimed>>> {
        let claimed = tasks::claim_many(&self.db, &self.route, self.clock.now(), &requests).await?;
        Ok(claimed.into_iter().map(Ok).collect())
    }

    async fn one(&self, request: ClaimRequest) -> Result<Claimed> {
        let claimed =
            tasks::claim_many(&self.db, &self.route, self.clock.now(), std::slice::from_ref(&request)).await?;
        Ok(claimed.into_iter().next().unwrap_or_default())
    }
}

#[derive(Clone)]
pub struct Claims(GroupCommit<Claim>);

impl Claims {
    pub fn spawn(db: DatabaseConnection, clock: SharedClock) -> Self {
        Self(GroupCommit::spawn(
            db.get_database_backend(),
            Claim { db, route: ClaimRoute::default(), clock },
            MAX_GROUP,
        ))
    }

    pub async fn claim(&self, request: ClaimRequest) -> Result<Claimed> {
        self.0.submit(request).await
    }
}
