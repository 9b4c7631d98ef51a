//! [`TableSink`]: a table as a row sink, with batched inserts and a conflict policy.

use std::rc::Rc;

use rusqlite::{Connection, Statement};

use super::Db;
use crate::formats::{FormatError, RowSink, Value, quote_identifier};

/// What to do when an inserted row conflicts with a unique constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Stop with an error naming the row (the default).
    #[default]
    Fail,
    /// Keep the existing row, count the new one as skipped.
    Skip,
    /// Replace the existing row.
    Replace,
}

/// Options of an insert.
#[derive(Debug, Clone, Default)]
pub struct InsertOptions {
    /// Conflict policy.
    pub on_conflict: OnConflict,
    /// Create the table if it does not exist, with untyped columns named after the source's
    /// (SQLite then keeps every value exactly as given).
    pub create: bool,
    /// Commit every this many rows (0: one transaction for the whole insert, the default, so a
    /// failed insert leaves nothing behind). Ignored inside a script's transaction.
    pub batch: u64,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertReport {
    /// Rows inserted (or replaced).
    pub inserted: u64,
    /// Rows skipped by `on_conflict = skip`.
    pub skipped: u64,
}

/// A sink that inserts rows into a table with one prepared statement, in transactions.
pub struct TableSink {
    // Field order matters: the statement borrows the connection and is dropped first.
    pub(super) stmt: Option<Statement<'static>>,
    pub(super) db: Db,
    pub(super) table: String,
    /// The input the rows come from, for messages.
    pub(super) input: Option<String>,
    pub(super) opts: InsertOptions,
    pub(super) report: InsertReport,
    pub(super) own_tx: bool,
    pub(super) in_batch: u64,
    pub(super) started: bool,
    pub(super) finished: bool,
}

impl TableSink {
    pub(super) fn new(db: &Db, table: &str, opts: InsertOptions) -> TableSink {
        TableSink {
            stmt: None,
            db: db.clone(),
            table: table.to_owned(),
            input: None,
            opts,
            report: InsertReport::default(),
            own_tx: false,
            in_batch: 0,
            started: false,
            finished: false,
        }
    }

    /// Names the input the rows come from (a file), so that an error names it with the row.
    pub fn set_input(&mut self, name: &str) {
        self.input = Some(name.to_owned());
    }

    /// Rows inserted and skipped so far.
    pub fn report(&self) -> InsertReport {
        self.report
    }

    pub(super) fn fail(&self, context: String, e: &rusqlite::Error) -> FormatError {
        FormatError::other(self.db.refusals.error(&self.db.name, context, e))
    }

    pub(super) fn exec(&self, sql: &str) -> Result<(), FormatError> {
        self.db
            .conn
            .execute_batch(sql)
            .map_err(|e| self.fail(format!("insert into {}: {sql}", self.table), &e))
    }
}

impl RowSink for TableSink {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        self.started = true;
        let table = quote_identifier(&self.table);
        let cols: Vec<String> = columns.iter().map(|c| quote_identifier(c)).collect();
        // The transaction starts before the table is created: a failed insert leaves no empty
        // table behind.
        if self.db.conn.is_autocommit() {
            self.exec("BEGIN")?;
            self.own_tx = true;
        }
        if self.opts.create {
            let sql = format!("CREATE TABLE IF NOT EXISTS {table} ({})", cols.join(", "));
            self.exec(&sql)?;
        }
        let verb = match self.opts.on_conflict {
            OnConflict::Fail => "INSERT",
            OnConflict::Skip => "INSERT OR IGNORE",
            OnConflict::Replace => "INSERT OR REPLACE",
        };
        let marks = vec!["?"; cols.len()].join(", ");
        let sql = format!("{verb} INTO {table} ({}) VALUES ({marks})", cols.join(", "));
        // SAFETY: the statement borrows the connection held by `self.db`'s Rc, which lives as
        // long as this sink; the statement field is declared first, so it is dropped first.
        let conn: &'static Connection = unsafe { &*Rc::as_ptr(&self.db.conn) };
        let stmt = conn
            .prepare(&sql)
            .map_err(|e| self.fail(format!("insert into {}", self.table), &e))?;
        self.stmt = Some(stmt);
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        let n = self.report.inserted + self.report.skipped + 1;
        let Some(stmt) = self.stmt.as_mut() else {
            return Err(FormatError::Option {
                format: "sqlite",
                option: "insert",
                message: "a row was written before the columns".into(),
            });
        };
        let mut bind = || -> rusqlite::Result<usize> {
            for (i, v) in row.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, v)?;
            }
            stmt.raw_execute()
        };
        match bind() {
            Ok(0) => self.report.skipped += 1,
            Ok(_) => self.report.inserted += 1,
            Err(e) => {
                let row = match &self.input {
                    Some(input) => format!("row {n} from {input}"),
                    None => format!("row {n}"),
                };
                return Err(self.fail(format!("insert into {}: {row}", self.table), &e));
            }
        }
        self.in_batch += 1;
        if self.own_tx && self.opts.batch > 0 && self.in_batch >= self.opts.batch {
            self.in_batch = 0;
            self.exec("COMMIT; BEGIN")?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.stmt = None;
        if self.own_tx {
            self.own_tx = false;
            self.exec("COMMIT")?;
        }
        Ok(())
    }

    fn started(&self) -> bool {
        self.started
    }
}

impl Drop for TableSink {
    fn drop(&mut self) {
        self.stmt = None;
        if self.own_tx {
            // Not finished: an error or an abandoned sink. Nothing half-done stays.
            let _ = self.db.conn.execute_batch("ROLLBACK");
        }
    }
}
