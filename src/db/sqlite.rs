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

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, Rows, Statement, ToSql};

use crate::formats::{
    FormatError, Location, RowSink, RowSource, SqlStatements, Value, quote_identifier,
};

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

/// Decides whether a script's database may reach the file at an absolute path (through
/// `ATTACH` or `VACUUM INTO`); `Err` says why not.
pub type FileCheck = Arc<dyn Fn(&Path) -> Result<(), String> + Send + Sync>;

/// The reason of the authorizer's last refusal on a connection, for the error that follows.
#[derive(Clone, Default)]
struct Refusals(Arc<Mutex<Option<String>>>);

impl Refusals {
    fn record(&self, reason: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// The error for a failed statement: [`DbError::Denied`] when the authorizer refused it,
    /// else [`DbError::Sql`].
    fn error(&self, db: &str, context: String, e: &rusqlite::Error) -> DbError {
        // A refused action fails the statement with SQLITE_AUTH, a refused function with
        // "not authorized to use function".
        let denied = e.sqlite_error_code()
            == Some(rusqlite::ErrorCode::AuthorizationForStatementDenied)
            || sqlite_message(e).starts_with("not authorized");
        let reason = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match reason {
            Some(reason) if denied => DbError::Denied {
                db: db.to_owned(),
                context,
                reason,
            },
            _ => DbError::Sql {
                db: db.to_owned(),
                context,
                message: sqlite_message(e),
            },
        }
    }
}

/// The authorizer's rule for one action: `Err` with the reason when it is refused.
fn authorize(action: &AuthAction<'_>, check: &FileCheck) -> Result<(), String> {
    match action {
        AuthAction::Attach { filename } => attach_allowed(filename, check),
        // An ATTACH whose file name is an expression rather than a literal: the file it would
        // open cannot be checked before it runs.
        AuthAction::Unknown { code, .. } if *code == rusqlite::ffi::SQLITE_ATTACH => Err(
            "ATTACH takes its file name as a string literal here (an expression or a parameter cannot be checked)".into(),
        ),
        AuthAction::Function { function_name }
            if ["load_extension", "fts3_tokenizer"]
                .iter()
                .any(|f| f.eq_ignore_ascii_case(function_name)) =>
        {
            Err(format!("{function_name}() is not available to scripts"))
        }
        AuthAction::Pragma { pragma_name, .. }
            if ["temp_store_directory", "data_store_directory"]
                .iter()
                .any(|p| p.eq_ignore_ascii_case(pragma_name)) =>
        {
            Err(format!(
                "PRAGMA {pragma_name} is not available to scripts (it moves SQLite's files)"
            ))
        }
        _ => Ok(()),
    }
}

/// Whether `ATTACH` (also the one `VACUUM INTO` runs) may open `filename`: a private temporary
/// database, or a file the check accepts. SQLite opens a relative name from the working
/// directory, so that is what is checked.
fn attach_allowed(filename: &str, check: &FileCheck) -> Result<(), String> {
    if filename.is_empty() || filename == ":memory:" {
        return Ok(());
    }
    if filename
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("file:"))
    {
        return Err(format!(
            "ATTACH of {filename:?}: URI file names are not allowed; give a plain path under the allowed roots"
        ));
    }
    let path = Path::new(filename);
    let abs: PathBuf = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("ATTACH of {filename:?}: cannot resolve a relative path: {e}"))?
            .join(path)
    };
    check(&abs).map_err(|m| format!("ATTACH of {filename:?}: {m}"))
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
        self.transaction(|| {
            let mut report = ScriptReport::default();
            while let Some(st) = statements.next_statement()? {
                if super::is_transaction_control(&st.sql) {
                    report.skipped += 1;
                    continue;
                }
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
                    let mut loc = Location::file(statements.name()).at_line(line);
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
                report.statements += 1;
                report.changes += self.conn.changes();
            }
            Ok(report)
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

/// The rows of a query, as a row source.
///
/// rusqlite's `Rows` borrows its `Statement`, which borrows the `Connection`. A source that a
/// script holds between calls must own all three, so this struct keeps the connection alive
/// through its `Rc`, the statement in a heap allocation that never moves, and the rows with
/// their lifetimes extended to `'static`. The invariants that make this sound: the `Rc` keeps
/// the connection at a fixed heap address for as long as this struct lives; the statement is
/// only freed in `Drop`, after the rows; nothing hands out the extended references.
pub struct QuerySource {
    rows: Option<Rows<'static>>,
    stmt: *mut Statement<'static>,
    _conn: Rc<Connection>,
    columns: Vec<String>,
    name: String,
    db: String,
    sql: String,
    done: bool,
    refusals: Refusals,
}

impl QuerySource {
    fn new(db: &Db, sql: &str, params: &Params) -> Result<QuerySource, DbError> {
        let conn = db.conn.clone();
        // SAFETY: the connection lives in the Rc's heap allocation, which `_conn` keeps alive
        // (and in place) for as long as the statement and rows that borrow it (see the type's
        // documentation).
        let conn_ref: &'static Connection = unsafe { &*Rc::as_ptr(&conn) };
        let mut stmt = conn_ref.prepare(sql).map_err(|e| db.sql_error(sql, &e))?;
        db.bind(&mut stmt, sql, params)?;
        let columns = stmt.column_names().into_iter().map(str::to_owned).collect();
        let stmt = Box::into_raw(Box::new(stmt));
        // SAFETY: `stmt` was just allocated and is freed only in `Drop`, after `rows`.
        let rows = unsafe { (*stmt).raw_query() };
        Ok(QuerySource {
            rows: Some(rows),
            stmt,
            _conn: conn,
            columns,
            name: format!("{} query {}", db.name, excerpt(sql)),
            db: db.name.clone(),
            sql: sql.to_owned(),
            done: false,
            refusals: db.refusals.clone(),
        })
    }
}

impl Drop for QuerySource {
    fn drop(&mut self) {
        // The rows reset the statement when dropped: they go first.
        self.rows = None;
        // SAFETY: allocated by `Box::into_raw` in `new`, freed only here, and the rows that
        // borrowed it are gone.
        unsafe { drop(Box::from_raw(self.stmt)) };
    }
}

impl RowSource for QuerySource {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        if self.done {
            return Ok(false);
        }
        let Some(rows) = self.rows.as_mut() else {
            return Ok(false);
        };
        match rows.next() {
            Ok(Some(r)) => {
                row.resize(self.columns.len(), Value::Null);
                for (i, slot) in row.iter_mut().enumerate() {
                    let v = r.get_ref(i).map_err(|e| {
                        FormatError::other(self.refusals.error(&self.db, excerpt(&self.sql), &e))
                    })?;
                    store(slot, v);
                }
                Ok(true)
            }
            Ok(None) => {
                self.done = true;
                // Reset the statement now so it holds no read lock while the script goes on.
                self.rows = None;
                Ok(false)
            }
            Err(e) => {
                self.done = true;
                Err(FormatError::other(self.refusals.error(
                    &self.db,
                    excerpt(&self.sql),
                    &e,
                )))
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

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
    stmt: Option<Statement<'static>>,
    db: Db,
    table: String,
    /// The input the rows come from, for messages.
    input: Option<String>,
    opts: InsertOptions,
    report: InsertReport,
    own_tx: bool,
    in_batch: u64,
    started: bool,
    finished: bool,
}

impl TableSink {
    fn new(db: &Db, table: &str, opts: InsertOptions) -> TableSink {
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

    fn fail(&self, context: String, e: &rusqlite::Error) -> FormatError {
        FormatError::other(self.db.refusals.error(&self.db.name, context, e))
    }

    fn exec(&self, sql: &str) -> Result<(), FormatError> {
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

#[cfg(test)]
mod tests {
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
}
