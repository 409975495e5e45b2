//! Batch inserts over PostgreSQL's `COPY ... FROM STDIN` (text format): rows stream in as tab-separated lines, with
//! no statement to plan per batch and no JSON document for the server to parse and take apart row by row.

use std::io::{self, Write};

use sea_orm::{
    DbErr, Value,
    sqlx::{PgConnection, postgres::PgCopyIn},
};
use serde::Serialize;

/// Rows in COPY's text format, built in memory and sent in one go.
#[derive(Debug, Default)]
pub struct CopyRows {
    buf: Vec<u8>,
    at_row_start: bool,
}

impl CopyRows {
    pub fn new() -> Self {
        Self { buf: Vec::new(), at_row_start: true }
    }

    fn next_field(&mut self) {
        if !self.at_row_start {
            self.buf.push(b'\t');
        }
        self.at_row_start = false;
    }

    pub fn end_row(&mut self) {
        self.buf.push(b'\n');
        self.at_row_start = true;
    }

    pub fn null(&mut self) {
        self.next_field();
        self.buf.extend_from_slice(b"\\N");
    }

    pub fn text(&mut self, text: &str) {
        self.next_field();
        escape_into(&mut self.buf, text.as_bytes());
    }

    pub fn int(&mut self, value: i64) {
        self.next_field();
        // Digits and a sign need no escaping.
        let _ = write!(self.buf, "{value}");
    }

    pub fn bool(&mut self, value: bool) {
        self.next_field();
        self.buf.push(if value { b't' } else { b'f' });
    }

    /// A `json` or `jsonb` field, serialised straight into the row.
    pub fn json(&mut self, value: &impl Serialize) -> Result<(), DbErr> {
        self.next_field();
        serde_json::to_writer(Escaping(&mut self.buf), value).map_err(|e| DbErr::Custom(format!("a JSON field: {e}")))
    }

    /// A field given as a sea-orm value (a column of a model).
    pub fn value(&mut self, value: &Value) -> Result<(), DbErr> {
        match value {
            Value::String(Some(s)) => self.text(s),
            Value::Int(Some(i)) => self.int(i64::from(*i)),
            Value::BigInt(Some(i)) => self.int(*i),
            Value::Bool(Some(b)) => self.bool(*b),
            Value::Json(Some(json)) => self.json(json)?,
            Value::String(None) | Value::Int(None) | Value::BigInt(None) | Value::Bool(None) | Value::Json(None) => {
                self.null()
            }
            other => return Err(DbErr::Custom(format!("COPY does not encode values like {other:?}"))),
        }
        Ok(())
    }
}

/// Backslash, newline, carriage return and tab are the characters COPY's text format gives a meaning to.
fn escape_into(buf: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => buf.push(b),
        }
    }
}

/// Escapes whatever is written through it, so that a serialiser can write into a row.
struct Escaping<'a>(&'a mut Vec<u8>);

impl Write for Escaping<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        escape_into(self.0, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `COPY <target> FROM STDIN` with the rows; returns how many were written. On an error the COPY is aborted,
/// so the connection stays usable (its transaction has failed).
pub async fn copy_in(conn: &mut PgConnection, target: &str, rows: CopyRows) -> Result<u64, DbErr> {
    let statement = format!("COPY {target} FROM STDIN");
    let mut copy: PgCopyIn<&mut PgConnection> = conn.copy_in_raw(&statement).await.map_err(exec_err)?;
    if let Err(err) = copy.send(rows.buf).await {
        let _ = copy.abort("the rows could not be sent").await;
        return Err(exec_err(err));
    }
    copy.finish().await.map_err(exec_err)
}

/// A driver error as sea-orm reports a failed statement, so that it maps to the same gRPC codes.
pub fn exec_err(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_tab_separated_and_escaped() {
        let mut rows = CopyRows::new();
        rows.text("a\tb\\c\nd\re");
        rows.null();
        rows.int(-42);
        rows.bool(true);
        rows.json(&serde_json::json!({"k": "line\nbreak \\ tab\t"})).unwrap();
        rows.end_row();
        rows.value(&Value::String(None)).unwrap();
        rows.value(&Value::Int(Some(7))).unwrap();
        rows.end_row();
        let text = String::from_utf8(rows.buf).unwrap();
        assert_eq!(text, "a\\tb\\\\c\\nd\\re\t\\N\t-42\tt\t{\"k\":\"line\\\\nbreak \\\\\\\\ tab\\\\t\"}\n\\N\t7\n");
    }
}
