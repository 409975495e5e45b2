//! The operator's commands on the same binary: `task`, `audit` and `cwom`, over the client API.
//!
//! Exit codes, so that scripts can tell outcomes apart (also in the README):
//! 0 done; 1 any other error; 2 bad command line; 3 the server refused the input (INVALID_ARGUMENT, a policy
//! refusal, or a batch with a refused item); 4 NOT_FOUND; 5 a conflict with the current state (ALREADY_EXISTS,
//! FAILED_PRECONDITION); 6 the server is unreachable or unavailable; 7 UNAUTHENTICATED or PERMISSION_DENIED;
//! 8 RESOURCE_EXHAUSTED; 9 `audit verify` found the audit chain broken.

mod audit;
mod cwom;
pub mod render;
mod task;

use std::io::Read;

use clap::{Args, Subcommand};
use tonic::Code;
use tonic_types::StatusExt;

pub use audit::AuditCommand;
pub use cwom::CwomArgs;
pub use render::Output;
pub use task::TaskCommand;

use crate::client::{ClientTls, ControlTower};

/// How to reach the server, and how to print; accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, env = "JCT_SERVER", default_value = "http://127.0.0.1:50051", global = true)]
    pub server: String,
    /// Bearer token sent with every call.
    #[arg(long, env = "JCT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    #[command(flatten)]
    pub tls: ClientTls,
}

impl ClientArgs {
    async fn connect(&self) -> anyhow::Result<ControlTower> {
        let tower = ControlTower::connect_tls(self.server.clone(), &self.tls)
            .await
            .map_err(|e| Unreachable(format!("{e:#}")))?;
        Ok(match &self.token {
            Some(token) => tower.with_token(token)?,
            None => tower,
        })
    }
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: TaskCommand,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    Task(TaskArgs),
    Audit(AuditArgs),
    Cwom(CwomArgs),
}

/// Runs an operator command; returns the process exit code.
pub async fn run(command: OperatorCommand) -> i32 {
    let outcome = match command {
        OperatorCommand::Task(args) => task::run(&args.client, args.command).await,
        OperatorCommand::Audit(args) => audit::run(&args.client, args.command).await,
        OperatorCommand::Cwom(args) => cwom::run(args).await,
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            exit_code(&err)
        }
    }
}

/// The server could not be reached at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the server: {0}")]
struct Unreachable(String);

fn describe(err: &anyhow::Error) -> String {
    let Some(status) = err.downcast_ref::<tonic::Status>() else {
        return format!("{err:#}");
    };
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(info) = status.get_error_details().error_info() {
        text.push_str(&format!(" (reason {})", info.reason));
    }
    text
}

fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<Unreachable>().is_some() {
        return 6;
    }
    match err.downcast_ref::<tonic::Status>().map(tonic::Status::code) {
        Some(Code::InvalidArgument | Code::OutOfRange) => 3,
        Some(Code::NotFound) => 4,
        Some(Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted) => 5,
        Some(Code::Unavailable | Code::DeadlineExceeded) => 6,
        Some(Code::Unauthenticated | Code::PermissionDenied) => 7,
        Some(Code::ResourceExhausted) => 8,
        _ => 1,
    }
}

/// Reads a JSON document from a file, or from stdin when the path is `-`.
fn read_json(path: &str) -> anyhow::Result<serde_json::Value> {
    let text = if path == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{path} is not valid JSON: {e}"))
}

/// `TASK_STATUS_RUNNING` -> `running`: enum names without their prefix, for tables.
fn short_enum(value: &serde_json::Value, prefix: &str) -> String {
    value.as_str().map(|s| s.strip_prefix(prefix).unwrap_or(s).to_lowercase()).unwrap_or_default()
}
