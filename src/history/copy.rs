//! `ferry history migrate --to postgres://…`: copies a SQLite history into an empty PostgreSQL
//! one, every table column by column with its ids (runs keep their numbers, so links between
//! runs, logs, files and notifications stay right), in one transaction: the copy is all there
//! or not at all. Identity sequences then continue after the copied ids.

use postgres::types::ToSql;
use rusqlite::types::ValueRef;

use super::{HistoryError, PostgresHistory, SqliteHistory};

/// The tables copied, parents first (logs, artifacts and notifications refer to runs).
pub const TABLES: &[&str] = &[
    "runs",
    "logs",
    "artifacts",
    "job_state",
    "files",
    "schedules",
    "run_discards",
    "paused_jobs",
    "notifications",
    "script_versions",
    "api_tokens",
    "audit",
    "cron_fires",
    "file_claims",
    "cluster",
];

/// Identity columns whose sequence continues after the copied ids.
const IDENTITIES: &[(&str, &str)] = &[
    ("runs", "id"),
    ("logs", "seq"),
    ("files", "id"),
    ("run_discards", "id"),
    ("notifications", "id"),
    ("script_versions", "id"),
    ("audit", "id"),
];

/// How many rows of each table were copied.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// (table, rows), in copy order.
    pub tables: Vec<(String, u64)>,
}

/// Copies every record of `from` into `to`, which must hold no runs, state, versions, tokens or
/// audit entries yet.
pub fn copy_into_postgres(
    from: &SqliteHistory,
    to: &PostgresHistory,
) -> Result<CopyReport, HistoryError> {
    let fail = |message: String| HistoryError::Copy {
        to: to.url().to_string(),
        message,
    };
    let pg_err = |e: postgres::Error| HistoryError::Postgres {
        url: to.url().to_string(),
        source: e,
    };
    let mut client = to.dedicated_client()?;
    let mut tx = client.transaction().map_err(pg_err)?;
    for table in [
        "runs",
        "job_state",
        "script_versions",
        "api_tokens",
        "audit",
    ] {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .map_err(pg_err)?
            .try_get(0)
            .map_err(pg_err)?;
        if n > 0 {
            return Err(fail(format!(
                "the target already holds {n} row(s) in {table}; copy into an empty database"
            )));
        }
    }
    let conn = from.conn();
    let mut report = CopyReport::default();
    for table in TABLES {
        let pg_cols: Vec<(String, String)> = tx
            .query(
                "SELECT column_name::TEXT, udt_name::TEXT FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[table],
            )
            .map_err(pg_err)?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()
            .map_err(pg_err)?;
        let sqlite_cols: Vec<String> = {
            let mut stmt = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .map_err(|e| from.err(e))?;
            stmt.query_map([], |r| r.get(0))
                .map_err(|e| from.err(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| from.err(e))?
        };
        let cols: Vec<&(String, String)> = pg_cols
            .iter()
            .filter(|(name, _)| sqlite_cols.contains(name))
            .collect();
        if cols.is_empty() {
            report.tables.push((table.to_string(), 0));
            continue;
        }
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let marks: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::TEXT::{ty}", i + 1))
            .collect();
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                marks.join(", ")
            ))
            .map_err(pg_err)?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {} FROM {table} ORDER BY rowid",
                names.join(", ")
            ))
            .map_err(|e| from.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| from.err(e))?;
        let mut copied = 0u64;
        while let Some(row) = rows.next().map_err(|e| from.err(e))? {
            let mut values: Vec<Option<String>> = Vec::with_capacity(cols.len());
            for (i, (_, ty)) in cols.iter().enumerate() {
                let v = row.get_ref(i).map_err(|e| from.err(e))?;
                values.push(as_text(v, ty));
            }
            let params: Vec<&(dyn ToSql + Sync)> =
                values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            tx.execute(&insert, &params)
                .map_err(|e| fail(format!("{table} row {}: {e}", copied + 1)))?;
            copied += 1;
        }
        report.tables.push((table.to_string(), copied));
    }
    for (table, col) in IDENTITIES {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{col}'), max({col})) FROM {table} \
                 HAVING max({col}) IS NOT NULL"
            ),
            &[],
        )
        .map_err(pg_err)?;
    }
    tx.commit().map_err(pg_err)?;
    Ok(report)
}

/// A SQLite value as the text PostgreSQL casts to the column's type. A JSON column whose text
/// is not JSON is kept as a JSON string (the SQLite backend reads such text the same way).
fn as_text(v: ValueRef<'_>, ty: &str) -> Option<String> {
    let text = match v {
        ValueRef::Null => return None,
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    };
    if ty == "jsonb" && serde_json::from_str::<serde_json::Value>(&text).is_err() {
        return Some(serde_json::Value::String(text).to_string());
    }
    Some(text)
}
