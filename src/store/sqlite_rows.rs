//! Multi-row inserts on SQLite in statements of a few fixed sizes.
//!
//! A group of rows is written as whole statements of 64, 32, 16, 8, 4, 2 and 1 rows (as many of the largest as fit,
//! then at most one of each smaller size), each size with a statement text of its own, so that SQLite prepares at
//! most seven texts per table, once per connection. A statement with a text for every group size was prepared again
//! for most groups (the writer's statement cache holds a hundred texts), and building and preparing it cost more
//! than the rows it wrote; one statement reading a JSON array of rows (`json_each`) was prepared once, but escaping
//! every value into that array and SQLite's parsing it again cost more than the inserts (measured: 14% of the
//! server's instructions in a drain). Rows are inserted in the order given, so ids drawn by the table come out in
//! that order.

use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement, Value};

/// Rows per statement, largest first. 64 rows of the widest table (tasks, 36 columns) bind 2,304 values, well
/// under SQLite's limit of 32,766.
const SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// The statements that insert rows of one table's columns.
pub struct RowInserts {
    columns: usize,
    texts: Vec<(usize, String)>,
}

impl RowInserts {
    pub fn new(table: &str, columns: &[&str]) -> Self {
        let row = format!("({})", vec!["?"; columns.len()].join(", "));
        let names = columns.join(", ");
        let text = |rows| format!("INSERT INTO {table} ({names}) VALUES {}", vec![row.as_str(); rows].join(", "));
        Self { columns: columns.len(), texts: SIZES.iter().map(|&rows| (rows, text(rows))).collect() }
    }

    fn text(&self, rows: usize) -> &str {
        self.texts.iter().find(|(n, _)| *n == rows).map(|(_, text)| text.as_str()).expect("one of SIZES")
    }

    /// Inserts one row per item, in order; `row` appends an item's values, one per column, in the columns' order.
    pub async fn insert<T>(
        &self,
        db: &impl ConnectionTrait,
        items: &[T],
        mut row: impl FnMut(&T, &mut Vec<Value>),
    ) -> Result<(), DbErr> {
        let mut rest = items;
        while !rest.is_empty() {
            let rows = SIZES.into_iter().find(|&n| n <= rest.len()).unwrap_or(1);
            let (chunk, tail) = rest.split_at(rows);
            let mut values = Vec::with_capacity(rows * self.columns);
            for item in chunk {
                row(item, &mut values);
            }
            debug_assert_eq!(values.len(), rows * self.columns, "one value per column of every row");
            db.execute_raw(Statement::from_sql_and_values(DatabaseBackend::Sqlite, self.text(rows), values)).await?;
            rest = tail;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_has_one_placeholder_per_column_of_every_row() {
        let inserts = RowInserts::new("t", &["a", "b"]);
        assert_eq!(inserts.text(1), "INSERT INTO t (a, b) VALUES (?, ?)");
        assert_eq!(inserts.text(2), "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)");
        assert_eq!(inserts.text(64).matches('?').count(), 128);
    }
}
