//! The Canonical Work Object Model: seven object tables, six join tables, and storage-level immutability of
//! context packets and constraint snapshots (triggers refuse UPDATE and DELETE, on SQLite and PostgreSQL alike).

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CwomRepos {
    Table,
    Id,
    Name,
    Slug,
    Source,
    DefaultBranch,
    Visibility,
    Owners,
    Policy,
    Links,
}

#[derive(DeriveIden)]
enum CwomIssues {
    Table,
    Id,
    RepoId,
    Title,
    Description,
    IssueType,
    Priority,
    Status,
    Assignees,
    Watchers,
    Acceptance,
    Relationships,
}

#[derive(DeriveIden)]
enum CwomConstraintSnapshots {
    Table,
    Id,
    Scope,
    CapturedAt,
    Owner,
    OwnerId,
    Constraints,
}

#[derive(DeriveIden)]
enum CwomContextPackets {
    Table,
    Id,
    IssueId,
    Version,
    Sequence,
    Summary,
    Inputs,
    Assumptions,
    OpenQuestions,
    Instructions,
    ConstraintSnapshotId,
}

#[derive(DeriveIden)]
enum CwomDoctrineRefs {
    Table,
    Id,
    Namespace,
    Name,
    Version,
    DoctrineType,
    Priority,
    Statement,
    Rationale,
    Links,
    Applicability,
}

#[derive(DeriveIden)]
enum CwomRuns {
    Table,
    Id,
    IssueId,
    RepoId,
    Status,
    Mode,
    Executor,
    Inputs,
    Plan,
    Telemetry,
    Cost,
    Outputs,
    Failure,
    ArtifactRootUri,
    TaskId,
    TaskAttempt,
}

#[derive(DeriveIden)]
enum CwomArtifacts {
    Table,
    Id,
    RunId,
    IssueId,
    ArtifactType,
    Title,
    Uri,
    Digest,
    MediaType,
    SizeBytes,
    Preview,
    Verification,
}

/// Columns every object has.
#[derive(DeriveIden)]
enum Common {
    Tags,
    Meta,
    TraceId,
    CreatedAt,
    UpdatedAt,
}

fn common(table: &mut TableCreateStatement, timestamps: bool) -> &mut TableCreateStatement {
    table.col(json_binary(Common::Tags)).col(json_binary(Common::Meta)).col(string_len_null(Common::TraceId, 128));
    if timestamps {
        table.col(big_integer(Common::CreatedAt)).col(big_integer(Common::UpdatedAt));
    }
    table
}

fn fk(
    from_table: impl IntoIden,
    from_col: impl IntoIden,
    to_table: impl IntoIden,
    to_col: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_col)
        .to(to_table, to_col)
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

/// A join table: the two ids as a composite primary key, both referencing their objects, and when it was made.
fn join_table(name: &str, left: Side, right: Side) -> TableCreateStatement {
    let table = Alias::new(name);
    let (left_col, left_table) = (Alias::new(left.0), Alias::new(left.1));
    let (right_col, right_table) = (Alias::new(right.0), Alias::new(right.1));
    Table::create()
        .table(table.clone())
        .col(string_len(left_col.clone(), 36))
        .col(string_len(right_col.clone(), 36))
        .col(big_integer(Alias::new("created_at")))
        .primary_key(Index::create().col(left_col.clone()).col(right_col.clone()))
        .foreign_key(&mut fk(table.clone(), left_col, left_table, Alias::new("id")))
        .foreign_key(&mut fk(table, right_col, right_table, Alias::new("id")))
        .to_owned()
}

/// One side of a join table: its column and the table it references.
type Side = (&'static str, &'static str);

const JOIN_TABLES: [(&str, Side, Side); 6] = [
    ("cwom_issue_context_packets", ("issue_id", "cwom_issues"), ("context_packet_id", "cwom_context_packets")),
    ("cwom_issue_doctrine_refs", ("issue_id", "cwom_issues"), ("doctrine_ref_id", "cwom_doctrine_refs")),
    (
        "cwom_issue_constraint_snapshots",
        ("issue_id", "cwom_issues"),
        ("constraint_snapshot_id", "cwom_constraint_snapshots"),
    ),
    ("cwom_run_context_packets", ("run_id", "cwom_runs"), ("context_packet_id", "cwom_context_packets")),
    ("cwom_run_doctrine_refs", ("run_id", "cwom_runs"), ("doctrine_ref_id", "cwom_doctrine_refs")),
    (
        "cwom_context_packet_doctrine_refs",
        ("context_packet_id", "cwom_context_packets"),
        ("doctrine_ref_id", "cwom_doctrine_refs"),
    ),
];

const INDEXES: &[&str] = &[
    "CREATE INDEX cwom_repos_visibility_idx ON cwom_repos (visibility, id)",
    "CREATE INDEX cwom_issues_repo_idx ON cwom_issues (repo_id, id)",
    "CREATE INDEX cwom_issues_status_idx ON cwom_issues (status, id)",
    "CREATE INDEX cwom_issues_type_idx ON cwom_issues (issue_type, id)",
    "CREATE INDEX cwom_issues_priority_idx ON cwom_issues (priority, id)",
    "CREATE UNIQUE INDEX cwom_context_packets_version_idx ON cwom_context_packets (issue_id, version)",
    "CREATE UNIQUE INDEX cwom_context_packets_sequence_idx ON cwom_context_packets (issue_id, sequence)",
    "CREATE INDEX cwom_constraint_snapshots_scope_idx ON cwom_constraint_snapshots (scope, id)",
    "CREATE INDEX cwom_constraint_snapshots_owner_idx ON cwom_constraint_snapshots (owner_id, id)",
    "CREATE UNIQUE INDEX cwom_doctrine_refs_identity_idx ON cwom_doctrine_refs (namespace, name, version)",
    "CREATE INDEX cwom_runs_issue_idx ON cwom_runs (issue_id, id)",
    "CREATE INDEX cwom_runs_repo_idx ON cwom_runs (repo_id, id)",
    "CREATE INDEX cwom_runs_status_idx ON cwom_runs (status, id)",
    "CREATE INDEX cwom_runs_task_idx ON cwom_runs (task_id, task_attempt)",
    "CREATE INDEX cwom_artifacts_run_idx ON cwom_artifacts (run_id, id)",
    "CREATE INDEX cwom_artifacts_issue_idx ON cwom_artifacts (issue_id, id)",
    "CREATE INDEX cwom_artifacts_type_idx ON cwom_artifacts (artifact_type, id)",
];

const IMMUTABLE_TABLES: [&str; 2] = ["cwom_context_packets", "cwom_constraint_snapshots"];

fn immutability_sql(backend: DatabaseBackend) -> Vec<String> {
    match backend {
        DatabaseBackend::Postgres => {
            let mut sql = vec![
                "CREATE FUNCTION cwom_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN RAISE EXCEPTION 'IMMUTABILITY_VIOLATION: % rows cannot be changed or deleted', TG_TABLE_NAME \
                 USING ERRCODE = 'restrict_violation'; END $$"
                    .to_owned(),
            ];
            for table in IMMUTABLE_TABLES {
                sql.push(format!(
                    "CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} \
                     FOR EACH ROW EXECUTE FUNCTION cwom_refuse_change()"
                ));
                sql.push(format!(
                    "CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} \
                     FOR EACH STATEMENT EXECUTE FUNCTION cwom_refuse_change()"
                ));
            }
            sql
        }
        // SQLite's REPLACE deletes the old row without firing DELETE triggers (recursive triggers are off), so an
        // insert over an existing id is refused too.
        _ => IMMUTABLE_TABLES
            .iter()
            .flat_map(|table| {
                let refuse = format!(
                    "BEGIN SELECT RAISE(ABORT, 'IMMUTABILITY_VIOLATION: {table} rows cannot be changed or deleted'); END"
                );
                [
                    format!("CREATE TRIGGER {table}_immutable_update BEFORE UPDATE ON {table} {refuse}"),
                    format!("CREATE TRIGGER {table}_immutable_delete BEFORE DELETE ON {table} {refuse}"),
                    format!(
                        "CREATE TRIGGER {table}_immutable_replace BEFORE INSERT ON {table} \
                         WHEN EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id) {refuse}"
                    ),
                ]
            })
            .collect(),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut repos = Table::create();
        repos
            .table(CwomRepos::Table)
            .col(string_len(CwomRepos::Id, 36).primary_key())
            .col(string_len(CwomRepos::Name, 256))
            .col(string_len_uniq(CwomRepos::Slug, 256))
            .col(json_binary(CwomRepos::Source))
            .col(string_len(CwomRepos::DefaultBranch, 128))
            .col(string_len(CwomRepos::Visibility, 16))
            .col(json_binary(CwomRepos::Owners))
            .col(json_binary(CwomRepos::Policy))
            .col(json_binary(CwomRepos::Links));
        manager.create_table(common(&mut repos, true).to_owned()).await?;

        let mut issues = Table::create();
        issues
            .table(CwomIssues::Table)
            .col(string_len(CwomIssues::Id, 36).primary_key())
            .col(string_len(CwomIssues::RepoId, 36))
            .col(string_len(CwomIssues::Title, 512))
            .col(text(CwomIssues::Description))
            .col(string_len(CwomIssues::IssueType, 16))
            .col(string_len(CwomIssues::Priority, 4))
            .col(string_len(CwomIssues::Status, 16))
            .col(json_binary(CwomIssues::Assignees))
            .col(json_binary(CwomIssues::Watchers))
            .col(json_binary(CwomIssues::Acceptance))
            .col(json_binary(CwomIssues::Relationships))
            .foreign_key(&mut fk(CwomIssues::Table, CwomIssues::RepoId, CwomRepos::Table, CwomRepos::Id));
        manager.create_table(common(&mut issues, true).to_owned()).await?;

        let mut snapshots = Table::create();
        snapshots
            .table(CwomConstraintSnapshots::Table)
            .col(string_len(CwomConstraintSnapshots::Id, 36).primary_key())
            .col(string_len(CwomConstraintSnapshots::Scope, 16))
            .col(big_integer(CwomConstraintSnapshots::CapturedAt))
            .col(json_binary(CwomConstraintSnapshots::Owner))
            .col(string_len(CwomConstraintSnapshots::OwnerId, 128))
            .col(json_binary(CwomConstraintSnapshots::Constraints));
        manager.create_table(common(&mut snapshots, false).to_owned()).await?;

        let mut packets = Table::create();
        packets
            .table(CwomContextPackets::Table)
            .col(string_len(CwomContextPackets::Id, 36).primary_key())
            .col(string_len(CwomContextPackets::IssueId, 36))
            .col(string_len(CwomContextPackets::Version, 64))
            .col(integer(CwomContextPackets::Sequence))
            .col(text(CwomContextPackets::Summary))
            .col(json_binary(CwomContextPackets::Inputs))
            .col(json_binary(CwomContextPackets::Assumptions))
            .col(json_binary(CwomContextPackets::OpenQuestions))
            .col(text(CwomContextPackets::Instructions))
            .col(string_len_null(CwomContextPackets::ConstraintSnapshotId, 36))
            .col(json_binary(Common::Tags))
            .col(json_binary(Common::Meta))
            .col(string_len_null(Common::TraceId, 128))
            .col(big_integer(Common::CreatedAt))
            .foreign_key(&mut fk(
                CwomContextPackets::Table,
                CwomContextPackets::IssueId,
                CwomIssues::Table,
                CwomIssues::Id,
            ))
            .foreign_key(&mut fk(
                CwomContextPackets::Table,
                CwomContextPackets::ConstraintSnapshotId,
                CwomConstraintSnapshots::Table,
                CwomConstraintSnapshots::Id,
            ));
        manager.create_table(packets.to_owned()).await?;

        let mut doctrine = Table::create();
        doctrine
            .table(CwomDoctrineRefs::Table)
            .col(string_len(CwomDoctrineRefs::Id, 36).primary_key())
            .col(string_len(CwomDoctrineRefs::Namespace, 128))
            .col(string_len(CwomDoctrineRefs::Name, 256))
            .col(string_len(CwomDoctrineRefs::Version, 64))
            .col(string_len(CwomDoctrineRefs::DoctrineType, 16))
            .col(string_len(CwomDoctrineRefs::Priority, 8))
            .col(text(CwomDoctrineRefs::Statement))
            .col(text(CwomDoctrineRefs::Rationale))
            .col(json_binary(CwomDoctrineRefs::Links))
            .col(json_binary(CwomDoctrineRefs::Applicability));
        manager.create_table(common(&mut doctrine, true).to_owned()).await?;

        let mut runs = Table::create();
        runs.table(CwomRuns::Table)
            .col(string_len(CwomRuns::Id, 36).primary_key())
            .col(string_len(CwomRuns::IssueId, 36))
            .col(string_len(CwomRuns::RepoId, 36))
            .col(string_len(CwomRuns::Status, 16))
            .col(string_len(CwomRuns::Mode, 16))
            .col(json_binary(CwomRuns::Executor))
            .col(json_binary(CwomRuns::Inputs))
            .col(json_binary(CwomRuns::Plan))
            .col(json_binary(CwomRuns::Telemetry))
            .col(json_binary(CwomRuns::Cost))
            .col(json_binary(CwomRuns::Outputs))
            .col(json_binary_null(CwomRuns::Failure))
            .col(text(CwomRuns::ArtifactRootUri))
            .col(string_len_null(CwomRuns::TaskId, 36))
            .col(integer_null(CwomRuns::TaskAttempt))
            .foreign_key(&mut fk(CwomRuns::Table, CwomRuns::IssueId, CwomIssues::Table, CwomIssues::Id))
            .foreign_key(&mut fk(CwomRuns::Table, CwomRuns::RepoId, CwomRepos::Table, CwomRepos::Id));
        manager.create_table(common(&mut runs, true).to_owned()).await?;

        let mut artifacts = Table::create();
        artifacts
            .table(CwomArtifacts::Table)
            .col(string_len(CwomArtifacts::Id, 36).primary_key())
            .col(string_len(CwomArtifacts::RunId, 36))
            .col(string_len(CwomArtifacts::IssueId, 36))
            .col(string_len(CwomArtifacts::ArtifactType, 32))
            .col(string_len(CwomArtifacts::Title, 512))
            .col(string_len(CwomArtifacts::Uri, 2000))
            .col(string_len(CwomArtifacts::Digest, 128))
            .col(string_len(CwomArtifacts::MediaType, 128))
            .col(big_integer_null(CwomArtifacts::SizeBytes))
            .col(text(CwomArtifacts::Preview))
            .col(json_binary(CwomArtifacts::Verification))
            .foreign_key(&mut fk(CwomArtifacts::Table, CwomArtifacts::RunId, CwomRuns::Table, CwomRuns::Id))
            .foreign_key(&mut fk(CwomArtifacts::Table, CwomArtifacts::IssueId, CwomIssues::Table, CwomIssues::Id));
        manager.create_table(common(&mut artifacts, true).to_owned()).await?;

        for (name, left, right) in JOIN_TABLES {
            manager.create_table(join_table(name, left, right)).await?;
        }
        let db = manager.get_connection();
        for sql in INDEXES {
            db.execute_unprepared(sql).await?;
        }
        for sql in immutability_sql(manager.get_database_backend()) {
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _, _) in JOIN_TABLES.iter().rev() {
            manager.drop_table(Table::drop().table(Alias::new(*name)).to_owned()).await?;
        }
        for table in [
            "cwom_artifacts",
            "cwom_runs",
            "cwom_doctrine_refs",
            "cwom_context_packets",
            "cwom_constraint_snapshots",
            "cwom_issues",
            "cwom_repos",
        ] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager.get_connection().execute_unprepared("DROP FUNCTION IF EXISTS cwom_refuse_change()").await?;
        }
        Ok(())
    }
}
