//! Task rows read by position. Claims and completions return whole task rows, many per statement; decoding them
//! through the ORM looks every column up by name in every row, which was a tenth of the server's time in a drain on
//! PostgreSQL and 5% of its instructions on SQLite. Here the columns are found once per answer, and each row is then
//! read by position.
//!
//! A PostgreSQL answer describes its columns' types once for all its rows, so the first row's check holds for the
//! rest, which are read without it. SQLite types each value on its own, so there every value is checked.

use sea_orm::{
    ConnectionTrait, QueryResult, QueryTrait, UpdateMany,
    sqlx::{self, Column as _, ColumnIndex, Decode, Row, Type, postgres::PgRow, sqlite::SqliteRow},
};
use serde_json::Value as Json;

use crate::{
    error::{Error, Result},
    store::{
        entity::task::{Entity as Tasks, Model, TaskStatus},
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
    fn of<R: Row>(row: &R) -> Result<Self> {
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

/// The task rows of a PostgreSQL answer; `None` for a row whose `id` is NULL (the count-only row of a claim that
/// leased nothing).
pub fn tasks(rows: &[PgRow]) -> Result<Vec<Option<Model>>> {
    read_rows(rows.iter().map(Ok), Check::Types, Check::Done, task)
}

/// The task rows of an answer of either backend, as sea-orm hands it over.
pub fn from_results(rows: &[QueryResult]) -> Result<Vec<Model>> {
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let other = || Error::internal("task row", "tasks are read from one answer of PostgreSQL or SQLite");
    let tasks = if first.try_as_pg_row().is_some() {
        read_rows(rows.iter().map(|row| row.try_as_pg_row().ok_or_else(other)), Check::Types, Check::Done, task)?
    } else {
        let rows = rows.iter().map(|row| row.try_as_sqlite_row().ok_or_else(other));
        read_rows(rows, Check::EachValue, Check::EachValue, task)?
    };
    Ok(tasks.into_iter().flatten().collect())
}

/// The rows of one answer, each read by `decode`, the first checked as `first` says and the rest as `rest` says. An
/// answer's rows all have the same columns, so they are looked up in the first row only.
fn read_rows<'r, R: Row + 'r>(
    rows: impl ExactSizeIterator<Item = Result<&'r R>>,
    first: Check,
    rest: Check,
    decode: impl Fn(&'r R, &Positions, Check) -> Result<Option<Model>>,
) -> Result<Vec<Option<Model>>> {
    let mut tasks = Vec::with_capacity(rows.len());
    let mut positions = None;
    for row in rows {
        let row = row?;
        let (at, check) = match &positions {
            Some(at) => (at, rest),
            None => (&*positions.insert(Positions::of(row)?), first),
        };
        tasks.push(decode(row, at, check)?);
    }
    Ok(tasks)
}

/// Runs `update` and returns the rows it changed, as they are after the change, read by position.
pub async fn update_returning(db: &impl ConnectionTrait, update: UpdateMany<Tasks>) -> Result<Vec<Model>> {
    let backend = db.get_database_backend();
    let mut query = update.into_query();
    query.returning_all();
    let rows = db.query_all_raw(backend.build(&query)).await?;
    from_results(&rows)
}

/// How a row's column types are checked against the model's.
#[derive(Clone, Copy, PartialEq)]
enum Check {
    /// Against the answer's description of its columns (PostgreSQL), once per answer.
    Types,
    /// Checked on an earlier row of the same answer.
    Done,
    /// Value by value (SQLite, whose values each carry their own type).
    EachValue,
}

/// A row of an answer that task columns can be read from by position.
trait TaskRow: Row
where
    usize: ColumnIndex<Self>,
{
    fn read<'r, T>(&'r self, position: usize, check: Check) -> Result<T>
    where
        T: Decode<'r, Self::Database> + Type<Self::Database>;
}

impl TaskRow for PgRow {
    fn read<'r, T>(&'r self, position: usize, check: Check) -> Result<T>
    where
        T: Decode<'r, sqlx::Postgres> + Type<sqlx::Postgres>,
    {
        match check {
            Check::Types => pg_arrays::described_as::<T>(self, position).map_err(|e| Error::internal("task row", e))?,
            Check::EachValue => return Ok(self.try_get::<T, _>(position).map_err(pg_arrays::exec_err)?),
            Check::Done => {}
        }
        Ok(self.try_get_unchecked::<T, _>(position).map_err(pg_arrays::exec_err)?)
    }
}

impl TaskRow for SqliteRow {
    fn read<'r, T>(&'r self, position: usize, _: Check) -> Result<T>
    where
        T: Decode<'r, sqlx::Sqlite> + Type<sqlx::Sqlite>,
    {
        self.try_get::<T, _>(position).map_err(|e| Error::internal("task row", e))
    }
}

fn task<'r, R>(row: &'r R, at: &Positions, check: Check) -> Result<Option<Model>>
where
    R: TaskRow,
    usize: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    Json: Decode<'r, R::Database> + Type<R::Database>,
{
    let p = &at.0;
    let get = |i: usize| p[i];
    let column = |position: usize| Column { row, position, check };
    let Some(id) = column(get(0)).read::<Option<String>>()? else {
        return Ok(None);
    };
    let status: String = column(get(20)).read()?;
    let status =
        TaskStatus::parse(&status).ok_or_else(|| Error::internal("task row", format!("unknown status {status}")))?;
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
struct Column<'r, R> {
    row: &'r R,
    position: usize,
    check: Check,
}

impl<'r, R> Column<'r, R>
where
    R: TaskRow,
    usize: ColumnIndex<R>,
{
    fn read<T>(&self) -> Result<T>
    where
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        self.row.read(self.position, self.check)
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{
        IdenStatic, Iterable,
        sqlx::{self, Connection},
    };

    use super::{COLUMNS, from_results, tasks};
    use crate::store::entity::task::{Column, TaskStatus};

    /// An answer of two task rows whose columns are given as SQL expressions, with `changed` in place of the
    /// named columns' expressions.
    fn answer(changed: &[(&str, &str, &str)]) -> String {
        answer_of(COLUMNS.iter(), typical, changed)
    }

    /// An answer of two rows with the given columns in the given order, each column's expression from `typical`
    /// or, for the named ones, from `changed` (the first row's, the second's).
    fn answer_of<'a>(
        columns: impl Iterator<Item = &'a &'a str> + Clone,
        typical: fn(&str, bool) -> String,
        changed: &[(&str, &str, &str)],
    ) -> String {
        let row = |first: bool| {
            columns
                .clone()
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

    /// A SQLite answer of two task rows, its columns in the reverse of the model's order, with `changed` in place
    /// of the named columns' values.
    fn sqlite_answer(changed: &[(&str, &str, &str)]) -> String {
        answer_of(COLUMNS.iter().rev(), sqlite_typical, changed)
    }

    fn sqlite_typical(name: &str, first: bool) -> String {
        match name {
            "id" => format!("'{}'", if first { "a" } else { "b" }),
            "time_budget_seconds" | "priority" | "max_attempts" | "attempt" => "1".into(),
            "allow_network" => "0".into(),
            "allow_secrets" => "1".into(),
            "inputs" | "metadata" => "'{\"k\": 1}'".into(),
            "acceptance_criteria" | "evidence_requirements" => "'[]'".into(),
            "status" => "'running'".into(),
            "result" if first => "NULL".into(),
            "result" => "'{\"n\": 2}'".into(),
            "run_after" | "created_at" | "queued_at" => "7".into(),
            "started_at" if !first => "9".into(),
            "lease_expires_at" | "started_at" | "completed_at" => "NULL".into(),
            "idempotency_key" | "requested_by_label" | "lease_id" | "worker_id" | "error" | "trace_path"
            | "cwom_issue_id" | "concurrency_key" => "NULL".into(),
            _ => "'x'".into(),
        }
    }

    async fn sqlite_decoded(sql: String) -> crate::error::Result<Vec<crate::store::entity::task::Model>> {
        use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement};
        let db = Database::connect("sqlite::memory:").await.expect("an in-memory SQLite");
        let rows = db.query_all_raw(Statement::from_string(DatabaseBackend::Sqlite, sql)).await.expect("the answer");
        from_results(&rows)
    }

    #[tokio::test]
    async fn sqlite_rows_are_read_by_their_column_names_positions_and_every_value_is_checked() {
        let rows = sqlite_decoded(sqlite_answer(&[])).await.unwrap();
        assert_eq!((rows[0].id.as_str(), rows[1].id.as_str()), ("a", "b"));
        assert_eq!((rows[0].result.clone(), rows[1].result.clone()), (None, Some(serde_json::json!({"n": 2}))));
        assert_eq!((rows[0].started_at, rows[1].started_at), (None, Some(9)));
        assert_eq!(rows[1].inputs, serde_json::json!({"k": 1}));
        assert_eq!((rows[1].allow_network, rows[1].allow_secrets), (false, true));
        assert_eq!((rows[1].status, rows[1].run_after, rows[1].priority), (TaskStatus::Running, 7, 1));

        // SQLite types each value on its own: a wrong one is refused in any row, not only the first.
        let wrong = sqlite_answer(&[("priority", "1", "'high'")]);
        assert!(sqlite_decoded(wrong).await.is_err());
        let unknown = sqlite_answer(&[("status", "'running'", "'paused'")]);
        assert!(sqlite_decoded(unknown).await.unwrap_err().to_string().contains("paused"));
        let missing = "SELECT 'a' AS id".to_owned();
        assert!(sqlite_decoded(missing).await.unwrap_err().to_string().contains("no column version"));
    }

    #[test]
    fn the_columns_are_the_models_in_its_order() {
        let model: Vec<&str> = Column::iter().map(|c| c.as_str()).collect();
        assert_eq!(COLUMNS.to_vec(), model);
    }
}
