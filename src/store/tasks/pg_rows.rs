//! Task rows read straight from PostgreSQL's answers. Claims and completions return whole task rows, many per
//! statement; decoding them through the ORM looks every column up by name in every row, which was a tenth of the
//! server's time in a drain. Here the columns are found once per answer, and each row is then read by position.

use sea_orm::sqlx::{self, Column as _, Row, postgres::PgRow};
use serde_json::Value as Json;

use crate::{
    error::{Error, Result},
    store::{
        entity::task::{Model, TaskStatus},
        pg_arrays,
    },
};

/// The position of every task column in an answer's rows.
struct Positions([usize; COLUMNS.len()]);

/// The columns of `Model`, in its field order.
const COLUMNS: [&str; 36] = [
    "id",
    "version",
    "idempotency_key",
    "requested_by_kind",
    "requested_by_id",
    "requested_by_label",
    "objective",
    "operation",
    "target_repo",
    "target_ref",
    "target_path",
    "time_budget_seconds",
    "allow_network",
    "allow_secrets",
    "inputs",
    "metadata",
    "acceptance_criteria",
    "evidence_requirements",
    "priority",
    "max_attempts",
    "status",
    "attempt",
    "run_after",
    "lease_id",
    "lease_expires_at",
    "worker_id",
    "result",
    "error",
    "trace_path",
    "cwom_issue_id",
    "trace_id",
    "created_at",
    "queued_at",
    "started_at",
    "completed_at",
    "concurrency_key",
];

impl Positions {
    fn of(row: &PgRow) -> Result<Self> {
        let columns = row.columns();
        let mut positions = [0; COLUMNS.len()];
        for (position, name) in positions.iter_mut().zip(COLUMNS) {
            *position = columns
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| Error::internal("task row", format!("the answer has no column {name}")))?;
        }
        Ok(Self(positions))
    }
}

/// The task rows of an answer; `None` for a row whose `id` is NULL (the count-only row of a claim that leased
/// nothing). An answer's rows all have the same columns, so they are looked up in the first row only.
pub fn tasks(rows: &[PgRow]) -> Result<Vec<Option<Model>>> {
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let positions = Positions::of(first)?;
    rows.iter().map(|row| task(row, &positions)).collect()
}

fn task(row: &PgRow, at: &Positions) -> Result<Option<Model>> {
    let p = &at.0;
    let get = |i: usize| p[i];
    let Some(id) = row.try_get::<Option<String>, _>(get(0)).map_err(pg_arrays::exec_err)? else {
        return Ok(None);
    };
    let status: String = column(row, get(20))?;
    let status = match status.as_str() {
        "queued" => TaskStatus::Queued,
        "running" => TaskStatus::Running,
        "completed" => TaskStatus::Completed,
        "failed" => TaskStatus::Failed,
        "cancelled" => TaskStatus::Cancelled,
        other => return Err(Error::internal("task row", format!("unknown status {other}"))),
    };
    Ok(Some(Model {
        id,
        version: column(row, get(1))?,
        idempotency_key: column(row, get(2))?,
        requested_by_kind: column(row, get(3))?,
        requested_by_id: column(row, get(4))?,
        requested_by_label: column(row, get(5))?,
        objective: column(row, get(6))?,
        operation: column(row, get(7))?,
        target_repo: column(row, get(8))?,
        target_ref: column(row, get(9))?,
        target_path: column(row, get(10))?,
        time_budget_seconds: column(row, get(11))?,
        allow_network: column(row, get(12))?,
        allow_secrets: column(row, get(13))?,
        inputs: column::<Json>(row, get(14))?,
        metadata: column::<Json>(row, get(15))?,
        acceptance_criteria: column::<Json>(row, get(16))?,
        evidence_requirements: column::<Json>(row, get(17))?,
        priority: column(row, get(18))?,
        max_attempts: column(row, get(19))?,
        status,
        attempt: column(row, get(21))?,
        run_after: column(row, get(22))?,
        lease_id: column(row, get(23))?,
        lease_expires_at: column(row, get(24))?,
        worker_id: column(row, get(25))?,
        result: column::<Option<Json>>(row, get(26))?,
        error: column(row, get(27))?,
        trace_path: column(row, get(28))?,
        cwom_issue_id: column(row, get(29))?,
        trace_id: column(row, get(30))?,
        created_at: column(row, get(31))?,
        queued_at: column(row, get(32))?,
        started_at: column(row, get(33))?,
        completed_at: column(row, get(34))?,
        concurrency_key: column(row, get(35))?,
    }))
}

fn column<'r, T>(row: &'r PgRow, position: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    Ok(row.try_get::<T, _>(position).map_err(pg_arrays::exec_err)?)
}

#[cfg(test)]
mod tests {
    use sea_orm::{IdenStatic, Iterable};

    use super::COLUMNS;
    use crate::store::entity::task::Column;

    #[test]
    fn the_columns_are_the_models_in_its_order() {
        let model: Vec<&str> = Column::iter().map(|c| c.as_str()).collect();
        assert_eq!(COLUMNS.to_vec(), model);
    }
}
