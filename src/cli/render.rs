//! How results reach the operator: aligned tables for people, JSON for scripts.

use clap::ValueEnum;
use serde_json::Value as Json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Aligned columns.
    #[default]
    Table,
    /// One JSON document per object (one per line when streaming).
    Json,
}

/// Widest a cell may be before it is cut, so that one long field does not wreck a table.
const MAX_CELL: usize = 60;

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    println!("{}", line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>(), &widths));
    for row in rows {
        println!("{}", line(row, &widths));
    }
}

fn line(cells: &[String], widths: &[usize]) -> String {
    let padded: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
    padded.join("  ").trim_end().to_owned()
}

/// A value on one line: strings bare, everything else as compact JSON.
fn text(value: &Json) -> String {
    let text = match value {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.replace(['\n', '\t'], " ")
}

/// A value as a table cell, long values cut.
pub fn cell(value: &Json) -> String {
    let text = text(value);
    if text.chars().count() > MAX_CELL {
        format!("{}...", text.chars().take(MAX_CELL - 3).collect::<String>())
    } else {
        text
    }
}

/// One object as `field  value` lines, in the order of its fields. Values are whole: with one value per line there
/// is room for them, and a path or an id cut short is of no use.
pub fn record(object: &Json) {
    let Some(fields) = object.as_object() else {
        println!("{object}");
        return;
    };
    let rows: Vec<Vec<String>> = fields.iter().map(|(k, v)| vec![k.clone(), text(v)]).collect();
    table(&["FIELD", "VALUE"], &rows);
}

/// Objects of one kind as a table: `id` first, then the scalar fields of the first object (at most `max_columns`).
pub fn objects(objects: &[Json], max_columns: usize) {
    let Some(first) = objects.first().and_then(Json::as_object) else {
        println!("(none)");
        return;
    };
    let mut columns: Vec<&str> = Vec::new();
    if first.contains_key("id") {
        columns.push("id");
    }
    for (key, value) in first {
        if columns.len() >= max_columns {
            break;
        }
        if key != "id" && !value.is_object() && !value.is_array() {
            columns.push(key);
        }
    }
    let rows: Vec<Vec<String>> =
        objects.iter().map(|o| columns.iter().map(|c| cell(o.get(*c).unwrap_or(&Json::Null))).collect()).collect();
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    table(&header.iter().map(String::as_str).collect::<Vec<_>>(), &rows);
}

/// Prints a message as pretty JSON (the proto JSON mapping, field names as in the protos).
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a message as one line of JSON (for streams).
pub fn json_line<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
