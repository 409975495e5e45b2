use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `tasks`: the normalised TaskSpec plus its dispatch state.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
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
    #[sea_orm(column_type = "JsonBinary")]
    pub inputs: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub acceptance_criteria: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub evidence_requirements: Json,
    pub priority: i32,
    pub max_attempts: i32,
    pub status: TaskStatus,
    /// How many times the task has been leased.
    pub attempt: i32,
    /// Not dispatched before this time.
    pub run_after: i64,
    /// The latest lease; kept after it ends (settled, cancelled or taken back) so that a late call with it gets a
    /// precise answer. Only a new claim replaces it.
    #[serde(skip)]
    pub lease_id: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub worker_id: Option<String>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub result: Option<Json>,
    pub error: Option<String>,
    pub trace_path: Option<String>,
    pub cwom_issue_id: Option<String>,
    pub trace_id: String,
    pub created_at: i64,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// At most the configured number of tasks with the same key run at once.
    pub concurrency_key: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "completed")]
    Completed,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Completed, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The task as its `created` audit entry records it: every column but the lease, with its keys in sorted order, as
/// `serde_json` writes a `Value` of the task. The stored text is then already in the form the audit chain hashes
/// documents in (`audit_chain::canonical`), and is hashed as it is, where the struct's own order had every entry
/// parsed and written again.
#[derive(Serialize)]
pub struct Snapshot<'a> {
    acceptance_criteria: &'a Json,
    allow_network: bool,
    allow_secrets: bool,
    attempt: i32,
    completed_at: Option<i64>,
    concurrency_key: &'a Option<String>,
    created_at: i64,
    cwom_issue_id: &'a Option<String>,
    error: &'a Option<String>,
    evidence_requirements: &'a Json,
    id: &'a str,
    idempotency_key: &'a Option<String>,
    inputs: &'a Json,
    lease_expires_at: Option<i64>,
    max_attempts: i32,
    metadata: &'a Json,
    objective: &'a str,
    operation: &'a str,
    priority: i32,
    queued_at: i64,
    requested_by_id: &'a str,
    requested_by_kind: &'a str,
    requested_by_label: &'a Option<String>,
    result: &'a Option<Json>,
    run_after: i64,
    started_at: Option<i64>,
    status: TaskStatus,
    target_path: &'a str,
    target_ref: &'a str,
    target_repo: &'a str,
    time_budget_seconds: i32,
    trace_id: &'a str,
    trace_path: &'a Option<String>,
    version: &'a str,
    worker_id: &'a Option<String>,
}

impl Model {
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            acceptance_criteria: &self.acceptance_criteria,
            allow_network: self.allow_network,
            allow_secrets: self.allow_secrets,
            attempt: self.attempt,
            completed_at: self.completed_at,
            concurrency_key: &self.concurrency_key,
            created_at: self.created_at,
            cwom_issue_id: &self.cwom_issue_id,
            error: &self.error,
            evidence_requirements: &self.evidence_requirements,
            id: &self.id,
            idempotency_key: &self.idempotency_key,
            inputs: &self.inputs,
            lease_expires_at: self.lease_expires_at,
            max_attempts: self.max_attempts,
            metadata: &self.metadata,
            objective: &self.objective,
            operation: &self.operation,
            priority: self.priority,
            queued_at: self.queued_at,
            requested_by_id: &self.requested_by_id,
            requested_by_kind: &self.requested_by_kind,
            requested_by_label: &self.requested_by_label,
            result: &self.result,
            run_after: self.run_after,
            started_at: self.started_at,
            status: self.status,
            target_path: &self.target_path,
            target_ref: &self.target_ref,
            target_repo: &self.target_repo,
            time_budget_seconds: self.time_budget_seconds,
            trace_id: &self.trace_id,
            trace_path: &self.trace_path,
            version: &self.version,
            worker_id: &self.worker_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;
    use serde_json::json;

    use super::*;

    /// Every column but the lease, each as the model writes it, in the order a `Value` of the model keeps them.
    #[test]
    fn a_snapshot_is_the_model_written_as_a_value() {
        let model = Model {
            id: "t-1".into(),
            version: "1.0".into(),
            idempotency_key: Some("key".into()),
            requested_by_kind: "agent".into(),
            requested_by_id: "a-1".into(),
            requested_by_label: None,
            objective: "say \"hi\"\n".into(),
            operation: "ops".into(),
            target_repo: "acme/x".into(),
            target_ref: "main".into(),
            target_path: "src".into(),
            time_budget_seconds: 900,
            allow_network: true,
            allow_secrets: false,
            inputs: json!({"z": 1, "a": [1.5, {"y": null, "b": "é"}]}),
            metadata: json!({}),
            acceptance_criteria: json!(["tests pass"]),
            evidence_requirements: json!([]),
            priority: -3,
            max_attempts: 3,
            status: TaskStatus::Running,
            attempt: 2,
            run_after: 1,
            lease_id: Some("lease".into()),
            lease_expires_at: Some(5),
            worker_id: Some("w-1".into()),
            result: Some(json!({"ok": true})),
            error: None,
            trace_path: Some("file:///t".into()),
            cwom_issue_id: None,
            trace_id: "tr-1".into(),
            created_at: 2,
            queued_at: 3,
            started_at: Some(4),
            completed_at: None,
            concurrency_key: Some("k".into()),
        };
        let as_value = serde_json::to_value(&model).unwrap();
        assert_eq!(as_value.as_object().unwrap().len(), Column::iter().count() - 1, "every column but the lease");
        assert_eq!(serde_json::to_string(&model.snapshot()).unwrap(), as_value.to_string());
    }
}
