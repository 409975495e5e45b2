//! Entities of the CWOM tables. Nested structures are JSON columns holding the protobuf JSON form of their message;
//! the join tables are written through `store::cwom::links` without entities of their own.

/// Columns shared by every object: tags and meta as JSON, the trace id, and (most) timestamps.
macro_rules! cwom_entity {
    ($table:literal, { $($field:tt)* }) => {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
        #[sea_orm(table_name = $table)]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: String,
            $($field)*
            #[sea_orm(column_type = "JsonBinary")]
            pub tags: Json,
            #[sea_orm(column_type = "JsonBinary")]
            pub meta: Json,
            pub trace_id: Option<String>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod repo {
    cwom_entity!("cwom_repos", {
        pub name: String,
        pub slug: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub source: Json,
        pub default_branch: String,
        pub visibility: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub owners: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub policy: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub links: Json,
        pub created_at: i64,
        pub updated_at: i64,
    });
}

pub mod issue {
    cwom_entity!("cwom_issues", {
        pub repo_id: String,
        pub title: String,
        pub description: String,
        pub issue_type: String,
        pub priority: String,
        pub status: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub assignees: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub watchers: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub acceptance: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub relationships: Json,
        pub created_at: i64,
        pub updated_at: i64,
    });
}

pub mod context_packet {
    cwom_entity!("cwom_context_packets", {
        pub issue_id: String,
        pub version: String,
        pub sequence: i32,
        pub summary: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub inputs: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub assumptions: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub open_questions: Json,
        pub instructions: String,
        pub constraint_snapshot_id: Option<String>,
        pub created_at: i64,
    });
}

pub mod constraint_snapshot {
    cwom_entity!("cwom_constraint_snapshots", {
        pub scope: String,
        pub captured_at: i64,
        #[sea_orm(column_type = "JsonBinary")]
        pub owner: Json,
        pub owner_id: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub constraints: Json,
    });
}

pub mod doctrine_ref {
    cwom_entity!("cwom_doctrine_refs", {
        pub namespace: String,
        pub name: String,
        pub version: String,
        pub doctrine_type: String,
        pub priority: String,
        pub statement: String,
        pub rationale: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub links: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub applicability: Json,
        pub created_at: i64,
        pub updated_at: i64,
    });
}

pub mod run {
    cwom_entity!("cwom_runs", {
        pub issue_id: String,
        pub repo_id: String,
        pub status: String,
        pub mode: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub executor: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub inputs: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub plan: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub telemetry: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub cost: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub outputs: Json,
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub failure: Option<Json>,
        pub artifact_root_uri: String,
        pub task_id: Option<String>,
        pub task_attempt: Option<i32>,
        pub created_at: i64,
        pub updated_at: i64,
    });
}

pub mod artifact {
    cwom_entity!("cwom_artifacts", {
        pub run_id: String,
        pub issue_id: String,
        pub artifact_type: String,
        pub title: String,
        pub uri: String,
        pub digest: String,
        pub media_type: String,
        pub size_bytes: Option<i64>,
        pub preview: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub verification: Json,
        pub created_at: i64,
        pub updated_at: i64,
    });
}
