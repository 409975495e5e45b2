//! SeaORM entities, one module per table. Times are microseconds since the Unix epoch.

pub mod audit_log;
pub mod audit_seal;
pub mod cwom;
pub mod task;
