//! The gRPC services: thin adapters that validate requests, call the store and the dispatcher, and convert.

pub mod audit;
pub mod cwom;
pub mod metadata;
pub mod paging;
pub mod tasks;
pub mod workers;

pub use audit::AuditServiceImpl;
pub use cwom::CwomServiceImpl;
pub use tasks::TaskServiceImpl;
pub use workers::WorkerServiceImpl;

use crate::error::{Error, Result};

/// Parses a task id; ids are UUIDs and a malformed one is INVALID_ARGUMENT, not NOT_FOUND.
pub fn parse_task_id(field: &str, id: &str) -> Result<String> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| Error::invalid(field, format!("must be a UUID, got {id:?}")))
}
