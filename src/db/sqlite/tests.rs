//! Tests of the SQLite layer.

use super::*;
use crate::formats::MemorySource;

#[test]
fn query_insert_and_conflicts() {
    let db = Db::open_in_memory().unwrap();
    db.exec(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
        &Params::None,
    )
    .unwrap();
    let cols = vec!["id".to_string(), "name".to_string()];
    let rows = vec![
        vec![Value::Int(1), Value::Text("a".into())],
        vec![Value::Int(2), Value::Null],
    ];
    let r = db
        .insert(
            "t",
            &mut MemorySource::new(cols.clone(), rows.clone()),
            InsertOptions::default(),
        )
        .unwrap();
    assert_eq!(r.inserted, 2);
    let e = db
        .insert(
            "t",
            &mut MemorySource::new(cols.clone(), rows.clone()),
            InsertOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1") && e.contains("UNIQUE"), "{e}");
    let r = db
        .insert(
            "t",
            &mut MemorySource::new(cols.clone(), rows),
            InsertOptions {
                on_conflict: OnConflict::Skip,
                ..InsertOptions::default()
            },
        )
        .unwrap();
    assert_eq!((r.inserted, r.skipped), (0, 2));

    let mut q = db
        .query(
            "SELECT id, name FROM t WHERE id >= :min ORDER BY id",
            &Params::Named(vec![("min".into(), Value::Int(2))]),
        )
        .unwrap();
    assert_eq!(q.columns(), cols);
    let mut row = Vec::new();
    assert!(q.next_row(&mut row).unwrap());
    assert_eq!(row, vec![Value::Int(2), Value::Null]);
    assert!(!q.next_row(&mut row).unwrap());
}

#[test]
fn transaction_rolls_back_on_error() {
    let db = Db::open_in_memory().unwrap();
    db.exec("CREATE TABLE t (x)", &Params::None).unwrap();
    let r: Result<(), DbError> = db.transaction(|| {
        db.exec("INSERT INTO t VALUES (1)", &Params::None)?;
        db.exec("INSERT INTO nope VALUES (1)", &Params::None)?;
        Ok(())
    });
    assert!(r.is_err());
    let mut q = db.query("SELECT count(*) FROM t", &Params::None).unwrap();
    let mut row = Vec::new();
    q.next_row(&mut row).unwrap();
    assert_eq!(row, vec![Value::Int(0)]);
}

#[test]
fn script_error_names_line_and_column() {
    let db = Db::open_in_memory().unwrap();
    let text = "BEGIN TRANSACTION;\nCREATE TABLE t (x);\nINSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2;\nCOMMIT;\n";
    let mut st = SqlStatements::new(text.as_bytes(), "in.sql");
    let e = db.run_script(&mut st).unwrap_err().to_string();
    assert!(e.contains("in.sql: line 4, column"), "{e}");
    // All or nothing: the table does not exist.
    assert!(db.query("SELECT * FROM t", &Params::None).is_err());
}

#[test]
fn a_long_statement_stops_within_a_check_of_a_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("x.db"), "x.db").unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let a = asked.clone();
    // Stop from the tenth look on: the statement must stop there, not run to its end.
    let _scope = crate::cancel::scope(std::sync::Arc::new(move || {
        a.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 10
    }));
    let e = db
        .exec(
            "CREATE TABLE t AS WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s \
             WHERE i < 100000000) SELECT i FROM s",
            &Params::None,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("interrupt"), "{e}");
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        11,
        "stopped at the first look that said so"
    );
}
