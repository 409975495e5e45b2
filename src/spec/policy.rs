//! The policy gate: six rules over a validated spec, in order, first failure wins.

use super::{NewTask, OPERATIONS};
use crate::error::{Error, Result};

pub const MIN_TIME_BUDGET_SECONDS: i32 = 30;
pub const MAX_TIME_BUDGET_SECONDS: i32 = 86_400;

/// The environment variable that admits repositories; named in the refusal so users know what to set.
pub const ALLOWED_REPO_PREFIXES_VAR: &str = "JCT_ALLOWED_REPO_PREFIXES";

#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Lower-cased prefixes; empty denies every repository.
    allowed_repo_prefixes: Vec<String>,
}

impl Policy {
    pub fn new<S: AsRef<str>>(prefixes: impl IntoIterator<Item = S>) -> Self {
        let allowed_repo_prefixes =
            prefixes.into_iter().map(|p| p.as_ref().trim().to_lowercase()).filter(|p| !p.is_empty()).collect();
        Self { allowed_repo_prefixes }
    }

    /// Parses the comma-separated form of `JCT_ALLOWED_REPO_PREFIXES`.
    pub fn from_comma_separated(list: &str) -> Self {
        Self::new(list.split(','))
    }

    pub fn allowed_repo_prefixes(&self) -> &[String] {
        &self.allowed_repo_prefixes
    }

    pub fn check(&self, task: &NewTask) -> Result<()> {
        if !OPERATIONS.contains(&task.operation.as_str()) {
            return deny(
                "INVALID_OPERATION",
                format!("Operation '{}' is not allowed. Allowed operations: {}", task.operation, OPERATIONS.join(", ")),
            );
        }
        if !self.allowed_repo_prefixes.iter().any(|p| task.target_repo.starts_with(p.as_str())) {
            let allowed = if self.allowed_repo_prefixes.is_empty() {
                format!("(none configured: set {ALLOWED_REPO_PREFIXES_VAR})")
            } else {
                self.allowed_repo_prefixes.join(", ")
            };
            return deny(
                "REPO_NOT_ALLOWED",
                format!(
                    "Repository '{}' is not in the allowed namespace. Allowed prefixes: {allowed}",
                    task.target_repo
                ),
            );
        }
        let budget = task.time_budget_seconds;
        if budget < MIN_TIME_BUDGET_SECONDS {
            return deny(
                "TIME_BUDGET_TOO_LOW",
                format!("Time budget {budget}s is below minimum ({MIN_TIME_BUDGET_SECONDS}s)"),
            );
        }
        if budget > MAX_TIME_BUDGET_SECONDS {
            return deny(
                "TIME_BUDGET_TOO_HIGH",
                format!("Time budget {budget}s exceeds maximum ({MAX_TIME_BUDGET_SECONDS}s)"),
            );
        }
        if task.allow_network {
            return deny(
                "NETWORK_ACCESS_DENIED",
                "Network access is not allowed in V1. Set constraints.allow_network to false.".into(),
            );
        }
        if task.allow_secrets {
            return deny(
                "SECRETS_ACCESS_DENIED",
                "Secrets access is not allowed in V1. Set constraints.allow_secrets to false.".into(),
            );
        }
        Ok(())
    }
}

fn deny(code: &'static str, message: String) -> Result<()> {
    Err(Error::Policy { code, message })
}
