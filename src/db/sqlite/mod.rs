//! SQLite: streaming queries with bound parameters, statements, savepoint transactions, scripts
//! from `.sql` files, and batched inserts with a conflict policy.
//!
//! A [`Db`] is a cheap handle over one connection (`Rc`, because a run is single-threaded and
//! its sources, sinks and script all use the same connection: an insert inside
//! `db:transaction` must see the transaction). A [`QuerySource`] keeps its own handle, so it
//! stays valid after the `Db` it came from is dropped.
//!
//! SQLite is a file API too: `ATTACH 'any/path'` reads or creates any file, `VACUUM INTO`
//! writes one, `load_extension()` loads native code. A database a script opens
//! ([`Db::open_sandboxed`]) runs under an authorizer (see [`FileCheck`]) that allows an attached
//! or vacuumed-into file only when the caller's check (the confinement of stores) accepts its
//! path, and refuses extensions and the pragmas that move SQLite's files; a refusal is a
//! [`DbError::Denied`] naming the statement and the reason.

mod authorizer;
mod query;
mod table_sink;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::rc::Rc;

use rusqlite::hooks::{AuthContext, Authorization};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, Statement, ToSql};

use crate::formats::{FormatError, Location, RowSink, RowSource, SqlStatements, Value};

pub use authorizer::FileCheck;
use authorizer::{Refusals, authorize};
pub use query::QuerySource;
pub use table_sink::{InsertOptions, InsertReport, OnConflict, TableSink};

/// An error of the database layer, naming the database and the statement or row.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be opened.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The path as the script gave it.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A statement failed to prepare or run.
    #[error("{db}: {context}: {message}")]
    Sql {
        /// The database.
        db: String,
        /// The statement (cut) or the script file and line.
        context: String,
        /// SQLite's message.
        message: String,
    },
    /// Parameters do not match the statement.
    #[error("{db}: {context}: {message}")]
    Params {
        /// The database.
        db: String,
        /// The statement (cut).
        context: String,
        /// What was expected.
        message: String,
    },
    /// A statement tried to reach a file or a capability scripts may not use (`ATTACH` or
    /// `VACUUM INTO` outside the allowed roots, `load_extension`): kind `denied`.
    #[error("{db}: {context}: refused: {reason}")]
    Denied {
        /// The database.
        db: String,
        /// The statement (cut) or the script file and line.
        context: String,
        /// What was refused and why.
        reason: String,
    },
    /// A row source or a script file failed.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Parameters bound to a statement.
#[derive(Debug, Clone, Default)]
pub enum Params {
    /// No parameters.
    #[default]
    None,
    /// `?` / `?N` parameters, in order; missing trailing ones are null.
    Positional(Vec<Value>),
    /// `:name`, `@name` or `$name` parameters (the name may be given with or without prefix).
    Named(Vec<(String, Value)>),
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Float(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

/// Stores a SQLite value in a row slot, reusing its allocation. Text that is not valid UTF-8
/// becomes bytes.
fn store(slot: &mut Value, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => *slot = Value::Null,
        ValueRef::Integer(i) => *slot = Value::Int(i),
        ValueRef::Real(f) => *slot = Value::Float(f),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => slot.set_text(s),
            Err(_) => slot.set_bytes(t),
        },
        ValueRef::Blob(b) => slot.set_bytes(b),
    }
}

/// A statement cut to one line of at most 80 characters, for messages.
fn excerpt(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 {
        let cut: String = one.chars().take(77).collect();
        format!("`{cut}...`")
    } else {
        format!("`{one}`")
    }
}

/// A handle over one SQLite connection.
#[derive(Clone)]
pub struct Db {
    conn: Rc<Connection>,
    name: String,
    refusals: Refusals,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("name", &self.name).finish()
    }
}

/// SQLite virtual-machine steps between two looks at the run's cancel scope (a few
/// microseconds of work).
const PROGRESS_OPS: std::os::raw::c_int = 10_000;

impl Db {
    /// Opens (creating if needed) the database at `path`, named `name` in messages. Sets a busy
    /// timeout so a concurrent writer makes this one wait rather than fail at once.
    pub fn open(path: &Path, name: &str) -> Result<Db, DbError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| {
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(c)
        })
        .map_err(|source| DbError::Open {
            path: name.to_owned(),
            source,
        })?;
        // A long statement (a big INSERT ... SELECT, a recursive query) stops when the run is
        // being stopped: SQLite asks every PROGRESS_OPS virtual-machine steps.
        conn.progress_handler(PROGRESS_OPS, Some(crate::cancel::requested));
        Ok(Db {
            conn: Rc::new(conn),
            name: name.to_owned(),
            refusals: Refusals::default(),
        })
    }

    /// Opens the database at `path` (as [`Db::open`]) for a script: under an authorizer that
    /// lets `ATTACH` and `VACUUM INTO` reach only files `check` accepts and refuses extensions
    /// and file-moving pragmas, in SQLite's defensive mode (no writable schema, no raw page
    /// writes).
    pub fn open_sandboxed(path: &Path, name: &str, check: FileCheck) -> Result<Db, DbError> {
        let db = Db::open(path, name)?;
        let refusals = db.refusals.clone();
        db.conn
            .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(|source| DbError::Open {
                path: name.to_owned(),
                source,
            })?;
        db.conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            match authorize(&ctx.action, &check) {
                Ok(()) => Authorization::Allow,
                Err(reason) => {
                    refusals.record(reason);
                    Authorization::Deny
                }
            }
        }));
        Ok(db)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Db, DbError> {
        let conn = Connection::open_in_memory().map_err(|source| DbError::Open {
            path: ":memory:".into(),
            source,
        })?;
        Ok(Db {
            conn: Rc::new(conn),
            name: ":memory:".into(),
            refusals: Refusals::default(),
        })
    }

    /// Copies the database, consistently even while others write to it (SQLite's online backup
    /// API), into a new file at `dest` (replaced atomically: written beside it, then renamed).
    pub fn snapshot_to(&self, dest: &Path) -> Result<(), DbError> {
        let sql_err = |e: rusqlite::Error| DbError::Sql {
            db: self.name.clone(),
            context: format!("snapshot to {}", dest.display()),
            message: e.to_string(),
        };
        let tmp = dest.with_extension(format!("ferry-tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let result = (|| {
            let mut out = Connection::open(&tmp).map_err(sql_err)?;
            {
                let backup =
                    rusqlite::backup::Backup::new(&self.conn, &mut out).map_err(sql_err)?;
                backup
                    .run_to_completion(1024, std::time::Duration::from_millis(5), None)
                    .map_err(sql_err)?;
            }
            out.close().map_err(|(_, e)| sql_err(e))?;
            std::fs::rename(&tmp, dest).map_err(|e| DbError::Sql {
                db: self.name.clone(),
                context: format!("snapshot to {}", dest.display()),
                message: e.to_string(),
            })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The name given at open.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn sql_error(&self, sql: &str, e: &rusqlite::Error) -> DbError {
        self.refusals.error(&self.name, excerpt(sql), e)
    }

    fn bind(&self, stmt: &mut Statement<'_>, sql: &str, params: &Params) -> Result<(), DbError> {
        let perr = |message: String| DbError::Params {
            db: self.name.clone(),
            context: excerpt(sql),
            message,
        };
        let expected = stmt.parameter_count();
        match params {
            Params::None if expected == 0 => Ok(()),
            Params::None => Err(perr(format!("expects {expected} parameters, none given"))),
            Params::Positional(values) => {
                // Fewer values than parameters: the rest are null, as a Lua list cannot end
                // with nil.
                if values.len() > expected {
                    return Err(perr(format!(
                        "expects {expected} parameters, {} given",
                        values.len()
                    )));
                }
                for (i, v) in values.iter().enumerate() {
                    stmt.raw_bind_parameter(i + 1, v)
                        .map_err(|e| perr(sqlite_message(&e)))?;
                }
                Ok(())
            }
            Params::Named(pairs) => {
                if pairs.len() != expected {
                    return Err(perr(format!(
                        "expects {expected} parameters, {} given",
                        pairs.len()
                    )));
                }
                for (name, v) in pairs {
                    let idx = if name.starts_with([':', '@', '$']) {
                        stmt.parameter_index(name)
                    } else {
                        [":", "@", "$"]
                            .iter()
                            .map(|p| stmt.parameter_index(&format!("{p}{name}")))
                            .find(|r| !matches!(r, Ok(None)))
                            .unwrap_or(Ok(None))
                    }
                    .map_err(|e| perr(sqlite_message(&e)))?;
                    let Some(idx) = idx else {
                        return Err(perr(format!(
                            "has no parameter named `{name}` (write it as :{name} in the SQL)"
                        )));
                    };
                    stmt.raw_bind_parameter(idx, v)
                        .map_err(|e| perr(sqlite_message(&e)))?;
                }
                Ok(())
            }
        }
    }

    /// Runs a query and returns its rows as a streaming source.
    pub fn query(&self, sql: &str, params: &Params) -> Result<QuerySource, DbError> {
        QuerySource::new(self, sql, params)
    }

    /// Runs one statement and returns the number of rows it changed.
    pub fn exec(&self, sql: &str, params: &Params) -> Result<u64, DbError> {
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| self.sql_error(sql, &e))?;
        self.bind(&mut stmt, sql, params)?;
        let mut rows = stmt.raw_query();
        // Step to the end: a statement may return rows (a PRAGMA, `RETURNING`).
        loop {
            match rows.next() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(self.sql_error(sql, &e)),
            }
        }
        Ok(self.conn.changes())
    }

    /// Runs `f` in a transaction (a savepoint, so transactions nest): released when `f`
    /// succeeds, rolled back when it fails.
    pub fn transaction<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let sp = self.savepoint()?;
        match f() {
            Ok(v) => {
                sp.release()?;
                Ok(v)
            }
            Err(e) => {
                sp.rollback();
                Err(e)
            }
        }
    }

    fn savepoint(&self) -> Result<Savepoint, DbError> {
        self.conn
            .execute_batch("SAVEPOINT ferry")
            .map_err(|e| self.sql_error("SAVEPOINT ferry", &e))?;
        Ok(Savepoint {
            db: self.clone(),
            open: true,
        })
    }

    /// Runs the statements of a `.sql` script in one transaction: all or nothing. `BEGIN`,
    /// `COMMIT`, `END` and `ROLLBACK` statements in the script (as in `sqlite3 .dump` output)
    /// are skipped, since the import is one transaction already. An error names the script,
    /// the line (and column) and SQLite's message.
    pub fn run_script<R: std::io::Read>(
        &self,
        statements: &mut SqlStatements<R>,
    ) -> Result<ScriptReport, DbError> {
        statements.adopt(crate::formats::SqlDialect::Sqlite, false);
        self.transaction(|| {
            super::run_statements(statements, |st, script| {
                let at = |e: &rusqlite::Error| {
                    let (line, col) = match e {
                        rusqlite::Error::SqlInputError { offset, .. } if *offset >= 0 => {
                            let upto = &st.sql[..(*offset as usize).min(st.sql.len())];
                            let nl = upto.matches('\n').count() as u64;
                            let col = upto.rsplit('\n').next().map_or(0, |l| l.chars().count());
                            (st.line + nl, Some(col as u64 + 1))
                        }
                        _ => (st.line, None),
                    };
                    let mut loc = Location::file(script).at_line(line);
                    if let Some(c) = col {
                        loc = loc.at_column(c);
                    }
                    self.refusals.error(&self.name, loc.to_string(), e)
                };
                let mut stmt = self.conn.prepare(&st.sql).map_err(|e| at(&e))?;
                let mut rows = stmt.raw_query();
                loop {
                    match rows.next() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => return Err(at(&e)),
                    }
                }
                Ok(self.conn.changes())
            })
        })
    }

    /// A sink inserting into `table`.
    pub fn table_sink(&self, table: &str, opts: InsertOptions) -> TableSink {
        TableSink::new(self, table, opts)
    }

    /// Inserts every row of `source` into `table`; the report counts inserted and skipped rows.
    pub fn insert(
        &self,
        table: &str,
        source: &mut dyn RowSource,
        opts: InsertOptions,
    ) -> Result<InsertReport, DbError> {
        let mut sink = self.table_sink(table, opts);
        sink.set_input(source.name());
        crate::formats::pipe(source, &mut sink).map_err(unwrap_db)?;
        sink.finish().map_err(unwrap_db)?;
        Ok(sink.report())
    }
}

/// Takes a [`DbError`] back out of a [`FormatError::Other`] when that is what it wraps.
pub(crate) fn unwrap_db(e: FormatError) -> DbError {
    match e {
        FormatError::Other(inner) => match inner.downcast::<DbError>() {
            Ok(db) => *db,
            Err(other) => DbError::Format(FormatError::Other(other)),
        },
        other => DbError::Format(other),
    }
}

/// SQLite's own message, without rusqlite's wrapping.
fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        other => other.to_string(),
    }
}

/// An open savepoint; rolled back when dropped without `release`.
struct Savepoint {
    db: Db,
    open: bool,
}

impl Savepoint {
    fn release(mut self) -> Result<(), DbError> {
        self.open = false;
        self.db
            .conn
            .execute_batch("RELEASE ferry")
            .map_err(|e| self.db.sql_error("RELEASE ferry", &e))
    }

    fn rollback(mut self) {
        self.open = false;
        // Rolling back to a savepoint and releasing it undoes its work and closes it. If this
        // fails the connection is already out of the transaction (SQLite rolled it back).
        let _ = self
            .db
            .conn
            .execute_batch("ROLLBACK TO ferry; RELEASE ferry");
    }
}

impl Drop for Savepoint {
    fn drop(&mut self) {
        if self.open {
            let _ = self
                .db
                .conn
                .execute_batch("ROLLBACK TO ferry; RELEASE ferry");
        }
    }
}

/// What a script import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptReport {
    /// Statements executed.
    pub statements: u64,
    /// Transaction statements skipped.
    pub skipped: u64,
    /// Rows changed.
    pub changes: u64,
}
