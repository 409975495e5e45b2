//! `task_filters`: the attributes of a task that ListTasks filters on and that never change, one row per task,
//! written with the task. Their indexes live here rather than on `tasks`, whose row PostgreSQL copies, with a new
//! entry in every index of the table, at each of a task's status changes.

use std::sync::OnceLock;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DeriveIden, QueryFilter, QueryOrder, QueryTrait, Select,
    sea_query::{Expr, ExprTrait, Order, Query},
};

use super::TaskFilter;
use crate::{
    error::Result,
    store::{
        entity::task::{Column, Entity as Tasks, Model},
        sqlite_rows::RowInserts,
    },
};

/// Rows per multi-row INSERT (5 columns each).
const ROWS_PER_INSERT: usize = 1000;

#[derive(DeriveIden, Clone, Copy)]
enum TaskFilters {
    Table,
    Id,
    Operation,
    RequestedByKind,
    RequestedById,
    TargetRepo,
}

/// The statement that writes the filter rows of the tasks a CTE named `inserted` returned (PostgreSQL's batch insert
/// writes both tables in one statement).
pub(super) const INSERT_FROM_INSERTED: &str = "INSERT INTO task_filters \
    (id, operation, requested_by_kind, requested_by_id, target_repo) \
    SELECT id, operation, requested_by_kind, requested_by_id, target_repo FROM inserted";

/// A task's filter row, in the columns' order (`TaskFilters`).
fn row(task: &Model) -> [sea_orm::Value; 5] {
    [
        task.id.as_str().into(),
        task.operation.as_str().into(),
        task.requested_by_kind.as_str().into(),
        task.requested_by_id.as_str().into(),
        task.target_repo.as_str().into(),
    ]
}

/// Writes the filter rows of new tasks.
pub(super) async fn insert(db: &impl ConnectionTrait, tasks: &[Model]) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        static INSERTS: OnceLock<RowInserts> = OnceLock::new();
        let inserts = INSERTS.get_or_init(|| {
            RowInserts::new("task_filters", &["id", "operation", "requested_by_kind", "requested_by_id", "target_repo"])
        });
        inserts.insert(db, tasks, |task, values| values.extend(row(task))).await?;
        return Ok(());
    }
    for chunk in tasks.chunks(ROWS_PER_INSERT) {
        let mut insert = Query::insert();
        insert.into_table(TaskFilters::Table).columns([
            TaskFilters::Id,
            TaskFilters::Operation,
            TaskFilters::RequestedByKind,
            TaskFilters::RequestedById,
            TaskFilters::TargetRepo,
        ]);
        for task in chunk {
            insert.values_panic(row(task).map(Into::into));
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Whether the filter names an attribute kept in `task_filters`.
fn applies(filter: &TaskFilter) -> bool {
    filter.operation.is_some()
        || filter.requested_by_kind.is_some()
        || filter.requested_by_id.is_some()
        || filter.target_repo.is_some()
}

/// Restricts a newest-first query of tasks to those matching the filter's immutable attributes. The order and the
/// page boundary are put on the joined table's id (the same as the task's), so that both planners walk its index
/// backwards instead of sorting the matches.
pub(super) fn newest_first(mut query: Select<Tasks>, filter: &TaskFilter, after_id: Option<&str>) -> Select<Tasks> {
    if !applies(filter) {
        if let Some(after) = after_id {
            query = query.filter(Column::Id.lt(after));
        }
        return query.order_by_desc(Column::Id);
    }
    let column = |c: TaskFilters| Expr::col((TaskFilters::Table, c));
    let select = QueryTrait::query(&mut query);
    select.inner_join(TaskFilters::Table, column(TaskFilters::Id).equals((Tasks, Column::Id)));
    let conditions = [
        (TaskFilters::Operation, &filter.operation),
        (TaskFilters::RequestedByKind, &filter.requested_by_kind),
        (TaskFilters::RequestedById, &filter.requested_by_id),
        (TaskFilters::TargetRepo, &filter.target_repo),
    ];
    for (attribute, value) in conditions {
        if let Some(value) = value {
            select.and_where(column(attribute).eq(value.as_str()));
        }
    }
    if let Some(after) = after_id {
        select.and_where(column(TaskFilters::Id).lt(after));
    }
    select.order_by((TaskFilters::Table, TaskFilters::Id), Order::Desc);
    query
}
