//! Tests of the JSON and NDJSON readers and writers.

use super::read::JsonReader;
use crate::formats::error::FormatError;
use crate::formats::options::ReadOptions;
use crate::formats::row::{RowSource, Value};

fn read_json(text: &str, opts: ReadOptions) -> Result<(Vec<String>, Vec<Vec<Value>>), FormatError> {
    let mut r = JsonReader::new(text.as_bytes(), &opts)?;
    let mut rows = Vec::new();
    let mut row = Vec::new();
    while r.next_row(&mut row)? {
        rows.push(row.clone());
    }
    Ok((r.columns().to_vec(), rows))
}

#[test]
fn reads_objects_in_key_order() {
    let (cols, rows) = read_json(
        r#"[{"b": 1, "a": "x", "n": {"k": [1]}}, {"a": null, "b": 2.5}]"#,
        ReadOptions::named("t.json"),
    )
    .unwrap();
    assert_eq!(cols, ["b", "a", "n"]);
    assert_eq!(rows[0][2], Value::Text(r#"{"k":[1]}"#.into()));
    assert_eq!(rows[1], vec![Value::Float(2.5), Value::Null, Value::Null]);
}

#[test]
fn error_points_at_line_and_column() {
    let e = read_json(
        "[\n{\"a\": 1},\n{\"a\": tru}\n]",
        ReadOptions::named("t.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("t.json: line 3, column"), "{e}");
}
