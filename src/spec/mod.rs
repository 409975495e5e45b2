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
/// Characters of `target.repo`, as sent and as stored (the column's size).
pub const MAX_REPO_CHARS: usize = 256;
/// Nesting of `inputs` and `metadata`, the object itself being level 1. Each level takes up to three protobuf
/// message levels, and the responses that carry them wrap them about ten deeper (an audit entry of a task's context
/// packet is the deepest). Protobuf decoders stop at 100 levels (prost, grpc-java and C++ alike), so a deeper task
/// would be stored and then fail every response holding it: its EnqueueTask answer, every ListTasks page.
pub const MAX_JSON_DEPTH: usize = 20;
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
    for (field, value) in [
        ("idempotency_key", idempotency_key.as_deref().unwrap_or_default()),
        ("requested_by.id", &requested_by.id),
        ("requested_by.label", requested_by_label.as_deref().unwrap_or_default()),
        ("objective", &objective),
        ("operation", &operation),
    ] {
        refuse_nul(&mut v, field, value);
    }

    let target = spec.target.unwrap_or_default();
    let raw_repo = if target.repo.is_empty() { target.repository } else { target.repo };
    let target_repo = normalise_repo(&raw_repo);
    if raw_repo.is_empty() {
        v.push("target.repo", "is required (\"owner/name\")");
    } else if raw_repo.chars().count() > MAX_REPO_CHARS {
        v.length("target.repo", &raw_repo, 1, MAX_REPO_CHARS);
    } else if target_repo.is_empty() {
        v.push("target.repo", format!("is empty once normalised, got \"{raw_repo}\""));
    } else if target_repo.chars().count() > MAX_REPO_CHARS {
        // Lower-casing can lengthen a string ('İ' becomes "i̇"); the stored form is what the column must hold.
        let len = target_repo.chars().count();
        v.push("target.repo", format!("must be at most {MAX_REPO_CHARS} characters once normalised, got {len}"));
    }
    let target_ref = if target.r#ref.is_empty() { DEFAULT_REF.to_owned() } else { target.r#ref };
    v.length("target.ref", &target_ref, 1, 256);
    v.length("target.path", &target.path, 0, 512);
    for (field, value) in [("target.repo", &target_repo), ("target.ref", &target_ref), ("target.path", &target.path)] {
        refuse_nul(&mut v, field, value);
    }
    for (field, items) in
        [("acceptance_criteria", &spec.acceptance_criteria), ("evidence_requirements", &spec.evidence_requirements)]
    {
        if items.iter().any(|item| item.contains('\0')) {
            v.push(field, NUL_RULE);
        }
    }
    let (inputs_field, inputs) = match (spec.inputs, spec.payload) {
        (Some(inputs), _) => ("inputs", struct_to_json(inputs)),
        (None, Some(payload)) => ("payload", struct_to_json(payload)),
        (None, None) => ("inputs", empty_object()),
    };
    let metadata = spec.metadata.map_or_else(empty_object, struct_to_json);
    for (field, json) in [(inputs_field, &inputs), ("metadata", &metadata)] {
        if json_has_nul(json) {
            v.push(field, NUL_RULE);
        }
        let depth = json_depth(json);
        if depth > MAX_JSON_DEPTH {
            v.push(field, format!("must nest at most {MAX_JSON_DEPTH} levels deep, got {depth}"));
        }
    }

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
        inputs,
        metadata,
        acceptance_criteria: spec.acceptance_criteria,
        evidence_requirements: spec.evidence_requirements,
        priority: spec.priority,
        run_after,
        max_attempts,
        concurrency_key,
    })
}

/// PostgreSQL stores U+0000 neither in text columns nor (as `\u0000`) in jsonb. Refusing it for every backend keeps
/// them alike, and keeps one such item from failing a whole EnqueueTasks batch at insert time.
const NUL_RULE: &str = "must not contain NUL (U+0000) characters";

fn refuse_nul(v: &mut Violations, field: &str, value: &str) {
    if value.contains('\0') {
        v.push(field, NUL_RULE);
    }
}

/// Whether any key or string of a JSON document holds U+0000.
fn json_has_nul(json: &Json) -> bool {
    match json {
        Json::String(s) => s.contains('\0'),
        Json::Array(items) => items.iter().any(json_has_nul),
        Json::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        Json::Null | Json::Bool(_) | Json::Number(_) => false,
    }
}

/// Levels of objects and lists: 0 for a scalar, 1 for `{}` or `{"a": 1}`.
pub fn json_depth(json: &Json) -> usize {
    match json {
        Json::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Json::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        Json::Null | Json::Bool(_) | Json::Number(_) | Json::String(_) => 0,
    }
}

/// Lower-cased, trimmed, trailing ".git" removed: the form stored, compared against prefixes and listed by.
///
/// Normalising the result again changes nothing, so that a stored repo used as a ListTasks filter finds its own
/// tasks: hence lower-casing first (".GIT" is a suffix too) and stripping until no suffix or space is left
/// ("x.git.git" and "x .git" would otherwise be stored as "x.git" and "x ", which normalise to "x").
pub fn normalise_repo(repo: &str) -> String {
    let lower = repo.to_lowercase();
    let mut normalised = lower.trim();
    while let Some(stripped) = normalised.strip_suffix(".git") {
        normalised = stripped.trim_end();
    }
    normalised.to_owned()
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
