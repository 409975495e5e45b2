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
