//! Persistence: connecting and migrating, the entities, and the queries that change state.
//!
//! Query functions take `&impl ConnectionTrait` where they may run inside a caller's transaction, and
//! `&DatabaseConnection` where they open their own (every state change commits with its audit entry).

pub mod audit;
pub mod audit_chain;
pub mod cwom;
pub mod db;
pub mod entity;
pub mod pg_arrays;
pub mod single_server;
pub mod sqlite_memory;
pub mod sqlite_rows;
pub mod tasks;
