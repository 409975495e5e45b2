//! Control Tower: a gRPC control plane where agents and people enqueue tasks, remote workers lease and run them
//! over server-streaming gRPC, and everything is recorded (tasks, trace folders, an append-only audit log) in
//! SQLite or PostgreSQL.
//!
//! Map of the crate:
//! - [`spec`]: TaskSpec validation and the policy gate (pure functions).
//! - [`store`]: entities, migrations, and the queries that change state together with their audit entries.
//! - [`dispatch`]: leasing, the worker stream fan-out, the lease reaper.
//! - [`trace`]: trace folders on disk and PushTrace ingest.
//! - [`api`]: the gRPC services, thin adapters over the above.
//! - [`auth`]: bearer tokens, roles, and the check in front of every RPC.
//! - [`server`]: assembly, health, reflection, graceful shutdown.
//! - [`worker`]: the worker daemon and its handlers (client side).

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod convert;
pub mod dispatch;
pub mod error;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod pb;
pub mod server;
pub mod shutdown;
pub mod spec;
pub mod store;
pub mod trace;
pub mod worker;

pub use server::{AppState, Server};
