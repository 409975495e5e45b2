//! One error type for the whole server, with a variant per gRPC code we return.
//!
//! Handlers return `Result<_, Error>` and convert once at the edge. Validation errors name the field and the rule;
//! policy and precondition errors also carry a machine-readable reason in `google.rpc.ErrorInfo`. Internal errors
//! are logged here with their detail and reach the client as a generic message.

use sea_orm::{DbErr, SqlErr};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The domain of every `google.rpc.ErrorInfo` we emit.
pub const ERROR_DOMAIN: &str = "controltower.v1";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// Collects every violation of a request before answering, so that the caller can fix them all at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn push(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Lengths count characters, not bytes, so that the limits mean the same for every script.
    pub fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let len = value.chars().count();
        if len < min || len > max {
            let rule = if min == 0 { format!("at most {max}") } else { format!("{min}-{max}") };
            self.push(field, format!("must be {rule} characters, got {len}"));
        }
    }

    pub fn into_result(self) -> Result<()> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(self.0)) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Schema and validation errors, one violation per offending field.
    #[error("{}", join_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// A policy-gate refusal; `code` is the policy code, e.g. `REPO_NOT_ALLOWED`.
    #[error("{code}: {message}")]
    Policy { code: &'static str, message: String },
    /// A stale lease, an illegal transition, an immutable object; `reason` is a stable code for programs.
    #[error("{message}")]
    FailedPrecondition { reason: &'static str, message: String },
    #[error("{0}")]
    ResourceExhausted(String),
    /// A rate limit: RESOURCE_EXHAUSTED with `google.rpc.RetryInfo` saying when to try again.
    #[error("{message}")]
    RateLimited { message: String, retry_after: std::time::Duration },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    /// Never shown to clients; logged where it is converted.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A validation error on a single field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::FailedPrecondition { reason, message: message.into() }
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {err}"))
    }

    pub fn code(&self) -> Code {
        match self {
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::InvalidArgument(_) | Self::Policy { .. } => Code::InvalidArgument,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::ResourceExhausted(_) | Self::RateLimited { .. } => Code::ResourceExhausted,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The machine-readable reason, when there is one (policy code or precondition reason).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Policy { code, .. } => Some(code),
            Self::FailedPrecondition { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The message a client may see: everything but internal detail.
    pub fn client_message(&self) -> String {
        match self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        }
    }
}

fn join_violations(violations: &[FieldViolation]) -> String {
    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::AlreadyExists("the object already exists".into()),
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                Self::NotFound("a referenced object does not exist".into())
            }
            _ => Self::internal("database", err),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let message = err.client_message();
        let mut details = ErrorDetails::new();
        match &err {
            Error::InvalidArgument(violations) => {
                details.set_bad_request(
                    violations
                        .iter()
                        .map(|v| tonic_types::FieldViolation::new(&v.field, &v.description))
                        .collect::<Vec<_>>(),
                );
            }
            Error::Policy { .. } | Error::FailedPrecondition { .. } => {
                let reason = err.reason().unwrap_or_default();
                details.set_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
            }
            Error::RateLimited { retry_after, .. } => {
                details.set_retry_info(Some(*retry_after));
            }
            _ => return Status::new(err.code(), message),
        }
        Status::with_error_details(err.code(), message, details)
    }
}
