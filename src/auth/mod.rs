//! Who is calling, and may they: bearer tokens mapped to identities with roles, checked on every RPC.
//!
//! With auth on, every request except health checks must carry `authorization: Bearer <token>`. The token is
//! looked up by its SHA-256 in a token table (the table holds only hashes; see `tokens`), which gives the caller's
//! identity and role. `rules` says which roles may call which RPC; `layer` enforces it before a request reaches a
//! service and hands the identity to the handler, which records it as the actor of whatever the call changes and
//! applies the checks that depend on the resource (an agent's own tasks, a worker's own leases).

pub mod command;
pub mod layer;
pub mod rules;
pub mod tokens;

use std::{fmt, sync::Arc};

use tonic::Request;

use crate::{
    error::{Error, Result},
    store::audit::Actor,
};

pub use layer::AuthLayer;
pub use tokens::{Authenticator, TokenTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including cancelling tasks and writing any work-model object.
    Operator,
    /// Enqueues tasks and reads its own; reads the work model and writes objects it created.
    Agent,
    /// The WorkerService, for its own worker id and the leases it holds.
    Worker,
    /// Reads everything, changes nothing.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Operator, Role::Agent, Role::Worker, Role::Viewer];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Agent => "agent",
            Role::Worker => "worker",
            Role::Viewer => "viewer",
        }
    }

    /// The audit log's actor kind for callers of this role.
    fn actor_kind(self) -> &'static str {
        match self {
            Role::Operator | Role::Viewer => "human",
            Role::Agent => "agent",
            Role::Worker => "system",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub role: Role,
}

impl Identity {
    pub fn actor(&self) -> Actor {
        Actor::new(self.role.actor_kind(), &self.id)
    }

    pub fn is(&self, role: Role) -> bool {
        self.role == role
    }
}

/// The authenticated caller of a request; `None` when the server runs without auth.
pub fn caller<T>(request: &Request<T>) -> Option<Arc<Identity>> {
    request.extensions().get::<Arc<Identity>>().cloned()
}

/// Refuses a caller of `role` acting on something that is not theirs.
pub fn deny(identity: &Identity, what: impl fmt::Display) -> Error {
    Error::PermissionDenied(format!("{} {:?} may not {what}", identity.role, identity.id))
}

/// Whether `identity` (if any) may act as the worker `worker_id`: a worker only as itself.
pub fn ensure_worker_id(identity: Option<&Identity>, worker_id: &str) -> Result<()> {
    match identity {
        Some(who) if who.is(Role::Worker) && who.id != worker_id => {
            Err(deny(who, format_args!("act as worker_id {worker_id:?} (worker_id must be the caller's identity)")))
        }
        _ => Ok(()),
    }
}
