//! TaskSpec V1: validation, legacy aliases, defaults and normalisation, then the policy gate.
//!
//! Both are pure functions of the request, so every rule is tested without a server. Validation collects every
//! violation (each naming its field and rule); the policy gate then stops at its first failing rule.

pub mod policy;

use pbjson_types::Timestamp;
use serde_json::Value as Json;

use crate::{
    clock::Micros,
    error::{Error, Result, Violations},
    json::struct_to_json,
    pb,
};

pub use policy::Policy;

/// The only TaskSpec version there is.
pub const SPEC_VERSION: &str = "1.0";
/// Operations the policy gate admits, in the order its message lists them.
pub const OPERATIONS: [&str; 4] = ["analysis", "code_change", "docs", "ops"];
pub const REQUESTER_KINDS: [&str; 3] = ["human", "agent", "system"];
pub const DEFAULT_TIME_BUDGET_SECONDS: i32 = 900;
pub const DEFAULT_REF: &str = "main";
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
pub const MAX_ATTEMPTS_RANGE: std::ops::RangeInclusive<i32> = 1..=100;

/// A validated, normalised task request, ready for the policy gate and the database.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub version: String,
    pub idempotency_key: Option<String>,
    pub requested_by_kind: String,
    pub requested_by_id: String,
    pub requested_by_label: Option<String>,
    pub objective: String,
    pub operation: String,
    pub target_repo: String,
    pub target_ref: String,
    pub target_path: String,
    pub time_budget_seconds: i32,
    pub allow_network: bool,
    pub allow_secrets: bool,
    pub inputs: Json,
    pub metadata: Json,
    pub acceptance_criteria: Vec<String>,
    pub evidence_requirements: Vec<String>,
    pub priority: i32,
    /// Not dispatched before this time; `None` means at once.
    pub run_after: Option<Micros>,
    /// `None` means the server default.
    pub max_attempts: Option<i32>,
    pub concurrency_key: Option<String>,
}

/// Validates a spec and fills in defaults. Empty strings count as absent, as is usual in proto3.
#[allow(deprecated)] // reads the legacy alias fields on purpose
pub fn validate(spec: Option<pb::TaskSpec>) -> Result<NewTask> {
    let Some(spec) = spec else {
        return Err(Error::invalid("spec", "is required"));
    };
    let mut v = Violations::default();

    let version = if spec.version.is_empty() { SPEC_VERSION.to_owned() } else { spec.version };
    if version != SPEC_VERSION {
        v.push("version", format!("must be \"{SPEC_VERSION}\", got \"{version}\""));
    }

    let idempotency_key = non_empty(spec.idempotency_key);
    if let Some(key) = &idempotency_key {
        v.length("idempotency_key", key, 1, 256);
    }

    let requested_by = spec.requested_by.unwrap_or_default();
    if !REQUESTER_KINDS.contains(&requested_by.kind.as_str()) {
        v.push(
            "requested_by.kind",
            format!("must be one of {}, got \"{}\"", REQUESTER_KINDS.join(", "), requested_by.kind),
        );
    }
    v.length("requested_by.id", &requested_by.id, 1, 128);
    let requested_by_label = non_empty(requested_by.label);
    if let Some(label) = &requested_by_label {
        v.length("requested_by.label", label, 1, 256);
    }

    // The original checked the length before trimming and crashed on "   ab  "; we check what we store.
    let objective = spec.objective.trim().to_owned();
    v.length("objective", &objective, 5, 4000);

    let operation = if spec.operation.is_empty() { spec.r#type } else { spec.operation };
    if operation.is_empty() {
        v.push("operation", format!("is required (one of {})", OPERATIONS.join(", ")));
    }

    let target = spec.target.unwrap_or_default();
    let raw_repo = if target.repo.is_empty() { target.repository } else { target.repo };
    let target_repo = normalise_repo(&raw_repo);
    if raw_repo.is_empty() {
        v.push("target.repo", "is required (\"owner/name\")");
    } else {
        v.length("target.repo", &raw_repo, 1, 256);
        if target_repo.is_empty() {
            v.push("target.repo", format!("is empty once normalised, got \"{raw_repo}\""));
        }
    }
    let target_ref = if target.r#ref.is_empty() { DEFAULT_REF.to_owned() } else { target.r#ref };
    v.length("target.ref", &target_ref, 1, 256);
    v.length("target.path", &target.path, 0, 512);

    let constraints = spec.constraints.unwrap_or_default();

    if !PRIORITY_RANGE.contains(&spec.priority) {
        v.push("priority", format!("must be between -1000 and 1000, got {}", spec.priority));
    }
    let max_attempts = match spec.max_attempts {
        0 => None,
        n if MAX_ATTEMPTS_RANGE.contains(&n) => Some(n),
        n => {
            v.push("max_attempts", format!("must be between 1 and 100 (or 0 for the server default), got {n}"));
            None
        }
    };
    let run_after = match spec.run_after {
        None => None,
        Some(ts) => match timestamp_micros(&ts) {
            Some(at) => Some(at),
            None => {
                v.push("run_after", "must be a valid timestamp between years 1 and 9999");
                None
            }
        },
    };

    let concurrency_key = non_empty(spec.concurrency_key);
    if let Some(key) = &concurrency_key {
        v.length("concurrency_key", key, 1, 128);
        if !key.chars().all(|c| c.is_ascii_graphic()) {
            v.push("concurrency_key", "may only use printable ASCII characters without spaces");
        }
    }

    v.into_result()?;
    Ok(NewTask {
        version,
        idempotency_key,
        requested_by_kind: requested_by.kind,
        requested_by_id: requested_by.id,
        requested_by_label,
        objective,
        operation,
        target_repo,
        target_ref,
        target_path: target.path,
        time_budget_seconds: constraints.time_budget_seconds.unwrap_or(DEFAULT_TIME_BUDGET_SECONDS),
        allow_network: constraints.allow_network,
        allow_secrets: constraints.allow_secrets,
        inputs: spec.inputs.or(spec.payload).map_or_else(empty_object, struct_to_json),
        metadata: spec.metadata.map_or_else(empty_object, struct_to_json),
        acceptance_criteria: spec.acceptance_criteria,
        evidence_requirements: spec.evidence_requirements,
        priority: spec.priority,
        run_after,
        max_attempts,
        concurrency_key,
    })
}

/// Trimmed, trailing ".git" removed, lower-cased: the form stored, compared against prefixes and listed by.
pub fn normalise_repo(repo: &str) -> String {
    let trimmed = repo.trim();
    trimmed.strip_suffix(".git").unwrap_or(trimmed).to_lowercase()
}

fn empty_object() -> Json {
    Json::Object(Default::default())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Microseconds since the epoch, for timestamps between years 1 and 9999 (as google.protobuf.Timestamp requires).
pub fn timestamp_micros(ts: &Timestamp) -> Option<Micros> {
    const MIN_SECONDS: i64 = -62_135_596_800;
    const MAX_SECONDS: i64 = 253_402_300_799;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    Some(ts.seconds * 1_000_000 + i64::from(ts.nanos / 1000))
}

#[cfg(test)]
mod tests;
