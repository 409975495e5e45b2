//! Task rows read straight from PostgreSQL's answers. Claims and completions return whole task rows, many per
//! statement; decoding them through the ORM looks every column up by name in every row, which was a tenth of the
//! server's time in a drain. Here the columns are found once per answer, and each row is then read by position.
//! Their types are checked once per answer too: every row of an answer has the columns its row description
//! gives, so the first row's check holds for the rest, which are read without it.

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
    let mut tasks = Vec::with_capacity(rows.len());
    tasks.push(task(first, &positions, Check::Types)?);
    for row in &rows[1..] {
        tasks.push(task(row, &positions, Check::Done)?);
    }
    Ok(tasks)
}

/// Whether a row's column types are still to be checked against the model's.
#[derive(Clone, Copy, PartialEq)]
enum Check {
    Types,
    /// Checked on an earlier row of the same answer.
    Done,
}

fn task(row: &PgRow, at: &Positions, check: Check) -> Result<Option<Model>> {
    let p = &at.0;
    let get = |i: usize| p[i];
    let column = |position: usize| Column { row, position, check };
    let Some(id) = column(get(0)).read::<Option<String>>()? else {
        return Ok(None);
    };
    let status: String = column(get(20)).read()?;
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
        version: column(get(1)).read()?,
        idempotency_key: column(get(2)).read()?,
        requested_by_kind: column(get(3)).read()?,
        requested_by_id: column(get(4)).read()?,
        requested_by_label: column(get(5)).read()?,
        objective: column(get(6)).read()?,
        operation: column(get(7)).read()?,
        target_repo: column(get(8)).read()?,
        target_ref: column(get(9)).read()?,
        target_path: column(get(10)).read()?,
        time_budget_seconds: column(get(11)).read()?,
        allow_network: column(get(12)).read()?,
        allow_secrets: column(get(13)).read()?,
        inputs: column(get(14)).read::<Json>()?,
        metadata: column(get(15)).read::<Json>()?,
        acceptance_criteria: column(get(16)).read::<Json>()?,
        evidence_requirements: column(get(17)).read::<Json>()?,
        priority: column(get(18)).read()?,
        max_attempts: column(get(19)).read()?,
        status,
        attempt: column(get(21)).read()?,
        run_after: column(get(22)).read()?,
        lease_id: column(get(23)).read()?,
        lease_expires_at: column(get(24)).read()?,
        worker_id: column(get(25)).read()?,
        result: column(get(26)).read::<Option<Json>>()?,
        error: column(get(27)).read()?,
        trace_path: column(get(28)).read()?,
        cwom_issue_id: column(get(29)).read()?,
        trace_id: column(get(30)).read()?,
        created_at: column(get(31)).read()?,
        queued_at: column(get(32)).read()?,
        started_at: column(get(33)).read()?,
        completed_at: column(get(34)).read()?,
        concurrency_key: column(get(35)).read()?,
    }))
}

/// One column of one row, to be decoded as the model's type for it.
struct Column<'r> {
    row: &'r PgRow,
    position: usize,
    check: Check,
}

impl<'r> Column<'r> {
    fn read<T>(&self) -> Result<T>
    where
        T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        if self.check == Check::Types {
            pg_arrays::described_as::<T>(self.row, self.position).map_err(|e| Error::internal("task row", e))?;
        }
        Ok(self.row.try_get_unchecked::<T, _>(self.position).map_err(pg_arrays::exec_err)?)
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{
        IdenStatic, Iterable,
        sqlx::{self, Connection},
    };

    use super::{COLUMNS, tasks};
    use crate::store::entity::task::Column;

    /// An answer of two task rows whose columns are given as SQL expressions, with `changed` in place of the
    /// named columns' expressions.
    fn answer(changed: &[(&str, &str, &str)]) -> String {
        let row = |first: bool| {
            COLUMNS
                .iter()
                .map(|&name| {
                    let changed = changed.iter().find(|(column, ..)| *column == name);
                    let expression = match changed {
                        Some((_, in_first, in_second)) => (if first { *in_first } else { *in_second }).to_owned(),
                        None => typical(name, first),
                    };
                    format!("{expression} AS {name}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("SELECT {} UNION ALL SELECT {}", row(true), row(false))
    }

    fn typical(name: &str, first: bool) -> String {
        match name {
            "id" => format!("'{}'::varchar", if first { "a" } else { "b" }),
            "time_budget_seconds" | "priority" | "max_attempts" | "attempt" => "1::int4".into(),
            "allow_network" | "allow_secrets" => "false".into(),
            "inputs" | "metadata" => "'{\"k\": 1}'::jsonb".into(),
            "acceptance_criteria" | "evidence_requirements" => "'[]'::jsonb".into(),
            "status" => "'completed'::varchar".into(),
            "result" if first => "NULL::jsonb".into(),
            "result" => "'{\"n\": 2}'::jsonb".into(),
            "run_after" | "created_at" | "queued_at" => "7::int8".into(),
            "lease_expires_at" | "started_at" | "completed_at" => "NULL::int8".into(),
            "idempotency_key" | "requested_by_label" | "lease_id" | "worker_id" | "error" | "trace_path"
            | "cwom_issue_id" | "concurrency_key" => "NULL::varchar".into(),
            _ => "'x'::varchar".into(),
        }
    }

    /// The rows of `sql` as the decoder reads them; `None` without a PostgreSQL to ask (`TEST_DATABASE_URL`).
    async fn decoded(sql: String) -> Option<crate::error::Result<Vec<Option<crate::store::entity::task::Model>>>> {
        let url = std::env::var("TEST_DATABASE_URL").ok().filter(|u| u.starts_with("postgres"))?;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect to TEST_DATABASE_URL");
        // sqlx takes statement texts that outlive the call, as the server's are (static).
        let sql: &'static str = Box::leak(sql.into_boxed_str());
        let rows = sqlx::query(sql).fetch_all(&mut conn).await.expect("the answer");
        Some(tasks(&rows))
    }

    #[tokio::test]
    async fn every_row_is_decoded_and_the_types_are_checked_once_even_where_the_first_row_is_null() {
        let Some(both) = decoded(answer(&[])).await else { return };
        let rows: Vec<_> = both.unwrap().into_iter().map(Option::unwrap).collect();
        assert_eq!((rows[0].id.as_str(), rows[1].id.as_str()), ("a", "b"));
        assert_eq!((rows[0].result.clone(), rows[1].result.clone()), (None, Some(serde_json::json!({"n": 2}))));
        assert_eq!(rows[1].inputs, serde_json::json!({"k": 1}));

        // A column of another type is refused by name, also when the first row holds NULL there.
        let wrong = answer(&[("result", "NULL::int8", "2::int8")]);
        let refused = decoded(wrong).await.unwrap().unwrap_err().to_string();
        assert!(refused.contains("result"), "{refused}");
        let wrong = answer(&[("priority", "'1'::varchar", "'2'::varchar")]);
        assert!(decoded(wrong).await.unwrap().unwrap_err().to_string().contains("priority"));
    }

    #[test]
    fn the_columns_are_the_models_in_its_order() {
        let model: Vec<&str> = Column::iter().map(|c| c.as_str()).collect();
        assert_eq!(COLUMNS.to_vec(), model);
    }
}
