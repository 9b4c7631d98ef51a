//! Inserting rows: multi-row `INSERT`s from a sink rows are pushed into ([`TableSink`]), and
//! the bulk path of [`insert`]: `LOAD DATA LOCAL INFILE` fed from the source as the server asks
//! for the "file" (no temporary file), falling back to multi-row `INSERT`s when the server
//! refuses it (`local_infile=OFF`).
//!
//! Every insert is all or nothing: its own transaction (`START TRANSACTION` ... `COMMIT`, or
//! every `batch` rows), or a savepoint inside a script's transaction, rolled back on any error.
//! `LOAD DATA LOCAL` turns errors into warnings (the server cannot stop the client's stream), so
//! the warnings are read after it: a duplicate under `on_conflict = "fail"` or a value that did
//! not fit is an error naming the row and the column, and the rows go back out.

use std::io::Write;

use mysql::LocalInfileHandler;
use mysql::prelude::Queryable;

use super::values::{encode_field, param};
use super::{Db, MysqlError, quote_identifier, quote_table};
use crate::cancel::CHECK_ROWS;
use crate::formats::{FormatError, RowSink, RowSource, Value};

/// What to do when an inserted row conflicts with a unique key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Stop with an error naming the row (the default).
    #[default]
    Fail,
    /// Keep the existing row, count the new one as skipped.
    Skip,
    /// Replace the existing row (`REPLACE`: the old row is deleted, the new one inserted).
    Replace,
}

/// How [`Db::insert`] sends its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BulkMode {
    /// `LOAD DATA LOCAL INFILE`, or multi-row `INSERT`s when the server refuses it.
    #[default]
    Auto,
    /// `LOAD DATA LOCAL INFILE` only: a refusal is an error.
    LoadData,
    /// Multi-row `INSERT`s only.
    Insert,
}

/// Options of an insert.
#[derive(Debug, Clone, Default)]
pub struct InsertOptions {
    /// Conflict policy.
    pub on_conflict: OnConflict,
    /// Create the table when it does not exist, with a `LONGTEXT` column per source column
    /// (outside a script transaction only: MySQL commits a transaction at `CREATE TABLE`).
    pub create: bool,
    /// Commit every this many rows (0: one transaction for the whole insert, the default).
    /// Ignored inside a script's transaction.
    pub batch: u64,
    /// How `insert` sends the rows.
    pub bulk: BulkMode,
}

/// What an insert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertReport {
    /// Rows inserted (or replaced).
    pub inserted: u64,
    /// Rows skipped by `on_conflict = skip`.
    pub skipped: u64,
    /// `load_data` or `insert`.
    pub method: &'static str,
    /// Why the bulk path was not taken, when it was refused.
    pub note: Option<String>,
}

/// Server errors that say `LOAD DATA LOCAL` is switched off.
const LOCAL_INFILE_REFUSED: &[u16] = &[1148, 3948, 3950, 2068, 4166];

/// Most parameters in one prepared statement (MySQL's protocol limit).
const MAX_PARAMS: usize = 65_535;
/// Rows per multi-row `INSERT`, at most.
const INSERT_ROWS: usize = 2_000;
/// Bytes of values per multi-row `INSERT`, about (well under the default `max_allowed_packet`).
const INSERT_BYTES: usize = 4 << 20;
/// Bytes handed to the server per write of the `LOAD DATA` stream.
const STREAM_CHUNK: usize = 64 << 10;

/// The transaction an insert runs in: its own, or a savepoint in the script's.
struct Tx {
    own: bool,
    open: bool,
    created: Option<String>,
}

impl Tx {
    /// Creates the table when asked and missing, then opens the transaction.
    fn begin(
        db: &Db,
        table: &str,
        columns: &[String],
        opts: &InsertOptions,
    ) -> Result<Tx, MysqlError> {
        let own = !db.in_transaction();
        let mut created = None;
        if opts.create && !table_exists(db, table)? {
            if !own {
                return Err(MysqlError::unsupported(
                    db.name(),
                    format!(
                        "insert into {table}: the table does not exist, and MySQL would commit the open transaction at CREATE TABLE; create it before the transaction (db:exec) or insert outside it"
                    ),
                ));
            }
            let cols: Vec<String> = columns
                .iter()
                .map(|c| format!("{} LONGTEXT", quote_identifier(c)))
                .collect();
            db.run(&format!(
                "CREATE TABLE {} ({})",
                quote_table(table),
                cols.join(", ")
            ))?;
            created = Some(table.to_owned());
        }
        db.run(if own {
            "START TRANSACTION"
        } else {
            "SAVEPOINT ferry_insert"
        })?;
        Ok(Tx {
            own,
            open: true,
            created,
        })
    }

    /// Commits what is done so far and goes on in a new transaction (own transactions only).
    fn checkpoint(&mut self, db: &Db) -> Result<(), MysqlError> {
        if self.own {
            db.run("COMMIT")?;
            // Committed rows stay: the created table too.
            self.created = None;
            db.run("START TRANSACTION")?;
        }
        Ok(())
    }

    fn commit(mut self, db: &Db) -> Result<(), MysqlError> {
        self.open = false;
        if self.own {
            db.run("COMMIT")
        } else {
            db.run("RELEASE SAVEPOINT ferry_insert")
        }
    }

    fn rollback(&mut self, db: &Db) {
        if !self.open {
            return;
        }
        self.open = false;
        let _ = db.run(if self.own {
            "ROLLBACK"
        } else {
            "ROLLBACK TO SAVEPOINT ferry_insert"
        });
        if let Some(t) = self.created.take() {
            let _ = db.run(&format!("DROP TABLE IF EXISTS {}", quote_table(&t)));
        }
    }
}

fn table_exists(db: &Db, table: &str) -> Result<bool, MysqlError> {
    let (schema, name) = match table.split_once('.') {
        Some((s, t)) if !s.is_empty() && !t.is_empty() => (Value::Text(s.into()), t),
        _ => (Value::Null, table),
    };
    let mut q = db.query(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
        &crate::db::Params::Positional(vec![schema, Value::Text(name.into())]),
    )?;
    let mut row = Vec::new();
    let found = q.next_row(&mut row).map_err(unwrap_mysql)?;
    while q.next_row(&mut row).map_err(unwrap_mysql)? {}
    Ok(found)
}

/// Takes a [`MysqlError`] back out of a [`FormatError::Other`] when that is what it wraps.
pub(crate) fn unwrap_mysql(e: FormatError) -> MysqlError {
    match e {
        FormatError::Other(inner) => match inner.downcast::<MysqlError>() {
            Ok(m) => *m,
            Err(other) => MysqlError::Format(FormatError::Other(other)),
        },
        other => MysqlError::Format(other),
    }
}

/// `row N` (and the input) for messages; `N` counts from 1 over the whole insert.
fn row_label(n: u64, input: Option<&str>) -> String {
    match input {
        Some(i) => format!("row {n} from {i}"),
        None => format!("row {n}"),
    }
}

/// A server message that names `at row K` of a statement, rewritten to name the row of the
/// whole insert (`first` is the insert's number of the statement's first row).
fn rebase_row(message: &str, first: u64) -> (String, Option<u64>) {
    if let Some(at) = message.rfind("at row ") {
        let digits: String = message[at + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(k) = digits.parse::<u64>() {
            let n = first + k - 1;
            let rest = &message[at + 7 + digits.len()..];
            return (format!("{}at row {n}{rest}", &message[..at]), Some(n));
        }
    }
    (message.to_owned(), None)
}

/// A sink that inserts rows into a table with multi-row `INSERT`s, in a transaction.
pub struct TableSink {
    db: Db,
    table: String,
    input: Option<String>,
    opts: InsertOptions,
    report: InsertReport,
    tx: Option<Tx>,
    columns: usize,
    /// `INSERT ... VALUES ` up to the first row's parentheses.
    head: String,
    /// `(?, ?, ...)` for one row.
    row_marks: String,
    /// `ON DUPLICATE KEY ...` for skips, or nothing.
    tail: String,
    rows_per_stmt: usize,
    pending: Vec<mysql::Value>,
    pending_rows: usize,
    pending_bytes: usize,
    /// Rows handed to the sink so far.
    seen: u64,
    since_commit: u64,
    started: bool,
    finished: bool,
}

impl TableSink {
    pub(super) fn new(db: &Db, table: &str, opts: InsertOptions) -> TableSink {
        TableSink {
            db: db.clone(),
            table: table.to_owned(),
            input: None,
            opts,
            report: InsertReport {
                method: "insert",
                ..InsertReport::default()
            },
            tx: None,
            columns: 0,
            head: String::new(),
            row_marks: String::new(),
            tail: String::new(),
            rows_per_stmt: 1,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            seen: 0,
            since_commit: 0,
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
        self.report.clone()
    }

    fn flush(&mut self) -> Result<(), MysqlError> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        let n = self.pending_rows;
        let first = self.seen - n as u64 + 1;
        let mut sql = String::with_capacity(self.head.len() + n * (self.row_marks.len() + 1));
        sql.push_str(&self.head);
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&self.row_marks);
        }
        sql.push_str(&self.tail);
        let params = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        self.pending_bytes = 0;
        let db = self.db.clone();
        let result = {
            let mut state = db.borrow_state()?;
            db.watched(|| -> Result<u64, mysql::Error> {
                let conn = state.conn();
                let stmt = conn.prep(&sql)?;
                let r = conn.exec_iter(&stmt, mysql::Params::Positional(params))?;
                let affected = r.affected_rows();
                drop(r);
                Ok(affected)
            })
        };
        match result {
            Ok(affected) => {
                match self.opts.on_conflict {
                    // A row kept by `ON DUPLICATE KEY UPDATE c = c` counts 0, an inserted one 1.
                    OnConflict::Skip => {
                        self.report.inserted += affected;
                        self.report.skipped += n as u64 - affected.min(n as u64);
                    }
                    _ => self.report.inserted += n as u64,
                }
                Ok(())
            }
            Err(e) => {
                let e = db.sql_error(String::new(), e);
                Err(self.row_error(e, first, n))
            }
        }
    }

    /// A statement error of the rows from `first` (n of them), naming the row when the server
    /// does.
    fn row_error(&self, e: MysqlError, first: u64, n: usize) -> MysqlError {
        match e {
            MysqlError::Sql {
                target,
                code,
                message,
                ..
            } => {
                let (message, row) = rebase_row(&message, first);
                let rows = match row {
                    Some(r) => row_label(r, self.input.as_deref()),
                    None if n == 1 => row_label(first, self.input.as_deref()),
                    None => format!(
                        "{} to {}",
                        row_label(first, self.input.as_deref()),
                        first + n as u64 - 1
                    ),
                };
                MysqlError::Sql {
                    target,
                    context: format!("insert into {}: {rows}", self.table),
                    code,
                    message,
                }
            }
            MysqlError::Cancelled { target, .. } => MysqlError::Cancelled {
                target,
                context: format!("insert into {}", self.table),
            },
            MysqlError::Io {
                target,
                message,
                timed_out,
                ..
            } => MysqlError::Io {
                target,
                context: format!("insert into {}", self.table),
                message,
                timed_out,
            },
            other => other,
        }
    }

    fn fail(&mut self, e: MysqlError) -> FormatError {
        if let Some(tx) = self.tx.as_mut() {
            tx.rollback(&self.db);
        }
        self.tx = None;
        FormatError::other(e)
    }
}

impl RowSink for TableSink {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        self.started = true;
        if columns.is_empty() {
            return Err(FormatError::other(MysqlError::state(
                self.db.name(),
                format!("insert into {}: the rows have no columns", self.table),
            )));
        }
        let tx =
            Tx::begin(&self.db, &self.table, columns, &self.opts).map_err(FormatError::other)?;
        self.tx = Some(tx);
        self.prepare(columns);
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        self.push(row)
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        self.complete()
    }

    fn started(&self) -> bool {
        self.started
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("inserted", self.report.inserted),
            ("skipped", self.report.skipped),
        ]
    }

    /// `ferry.pipe` into this sink: the rows go with `LOAD DATA LOCAL` like [`Db::insert`]'s,
    /// in this sink's transaction, committed at `finish`.
    fn pull(&mut self, src: &mut dyn RowSource) -> Option<Result<u64, FormatError>> {
        if self.opts.bulk == BulkMode::Insert || src.columns().is_empty() {
            return None;
        }
        let columns = src.columns().to_vec();
        let mut tx = match Tx::begin(&self.db, &self.table, &columns, &self.opts) {
            Ok(tx) => tx,
            Err(e) => return Some(Err(FormatError::other(e))),
        };
        self.started = true;
        let input = self.input.clone().unwrap_or_else(|| src.name().to_owned());
        let mut report = InsertReport {
            method: "load_data",
            ..InsertReport::default()
        };
        match load_rows(
            &self.db,
            &mut tx,
            &self.table,
            src,
            &self.opts,
            &input,
            &mut report,
        ) {
            Ok(sent) => {
                self.tx = Some(tx);
                self.prepare(&columns);
                self.seen = sent;
                self.report = report;
                Some(Ok(sent))
            }
            Err(LoadError::Refused(m)) if self.opts.bulk == BulkMode::Auto => {
                // Nothing was read: the rows go row by row, in this transaction.
                self.tx = Some(tx);
                self.prepare(&columns);
                self.report.note = Some(m);
                None
            }
            Err(LoadError::Refused(m)) => {
                tx.rollback(&self.db);
                Some(Err(FormatError::other(MysqlError::unsupported(
                    self.db.name(),
                    m,
                ))))
            }
            Err(LoadError::Failed(e)) => {
                tx.rollback(&self.db);
                Some(Err(FormatError::other(e)))
            }
        }
    }
}

impl TableSink {
    /// Builds the `INSERT` for `columns`.
    fn prepare(&mut self, columns: &[String]) {
        self.columns = columns.len();
        let cols: Vec<String> = columns.iter().map(|c| quote_identifier(c)).collect();
        let verb = match self.opts.on_conflict {
            OnConflict::Replace => "REPLACE",
            _ => "INSERT",
        };
        self.head = format!(
            "{verb} INTO {} ({}) VALUES ",
            quote_table(&self.table),
            cols.join(", ")
        );
        self.row_marks = format!("({})", vec!["?"; cols.len()].join(","));
        if self.opts.on_conflict == OnConflict::Skip {
            // Not `INSERT IGNORE`: that would also turn a value that does not fit into a warning.
            self.tail = format!(" ON DUPLICATE KEY UPDATE {0} = {0}", cols[0]);
        }
        self.rows_per_stmt = (MAX_PARAMS / cols.len()).clamp(1, INSERT_ROWS);
    }

    fn push(&mut self, row: &[Value]) -> Result<(), FormatError> {
        if self.tx.is_none() {
            return Err(FormatError::other(MysqlError::state(
                self.db.name(),
                format!(
                    "insert into {}: a row was written before the columns, or after an error",
                    self.table
                ),
            )));
        }
        self.seen += 1;
        if row.len() != self.columns {
            let e = MysqlError::Value {
                target: self.db.name().to_owned(),
                context: format!(
                    "insert into {}: {}",
                    self.table,
                    row_label(self.seen, self.input.as_deref())
                ),
                message: format!("{} values for {} columns", row.len(), self.columns),
            };
            return Err(self.fail(e));
        }
        for v in row {
            if let Value::Float(f) = v
                && !f.is_finite()
            {
                let e = MysqlError::Value {
                    target: self.db.name().to_owned(),
                    context: format!(
                        "insert into {}: {}",
                        self.table,
                        row_label(self.seen, self.input.as_deref())
                    ),
                    message: format!("{f} cannot be stored (MySQL has no NaN or infinity)"),
                };
                return Err(self.fail(e));
            }
            self.pending_bytes += match v {
                Value::Text(s) => s.len(),
                Value::Bytes(b) => b.len(),
                _ => 8,
            };
            self.pending.push(param(v));
        }
        self.pending_rows += 1;
        self.since_commit += 1;
        if (self.pending_rows >= self.rows_per_stmt || self.pending_bytes >= INSERT_BYTES)
            && let Err(e) = self.flush()
        {
            return Err(self.fail(e));
        }
        if self.opts.batch > 0 && self.since_commit >= self.opts.batch {
            self.since_commit = 0;
            let r = self.flush().and_then(|()| match self.tx.as_mut() {
                Some(tx) => tx.checkpoint(&self.db),
                None => Ok(()),
            });
            if let Err(e) = r {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    fn complete(&mut self) -> Result<(), FormatError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if self.tx.is_none() {
            return Ok(());
        }
        if let Err(e) = self.flush() {
            return Err(self.fail(e));
        }
        if let Some(tx) = self.tx.take() {
            tx.commit(&self.db).map_err(FormatError::other)?;
        }
        Ok(())
    }
}

impl Drop for TableSink {
    fn drop(&mut self) {
        // Not finished: an error or an abandoned sink. Nothing half-done stays.
        if let Some(tx) = self.tx.as_mut() {
            tx.rollback(&self.db);
        }
    }
}

/// The bulk insert behind [`Db::insert`].
pub(super) fn insert(
    db: &Db,
    table: &str,
    source: &mut dyn RowSource,
    opts: InsertOptions,
) -> Result<InsertReport, MysqlError> {
    let input = source.name().to_owned();
    if opts.bulk != BulkMode::Insert {
        match load_data(db, table, source, &opts, &input) {
            Ok(report) => return Ok(report),
            Err(LoadError::Refused(message)) if opts.bulk == BulkMode::Auto => {
                let mut report = insert_rows(db, table, source, opts, &input)?;
                report.note = Some(message);
                return Ok(report);
            }
            Err(LoadError::Refused(message)) => {
                return Err(MysqlError::unsupported(db.name(), message));
            }
            Err(LoadError::Failed(e)) => return Err(e),
        }
    }
    insert_rows(db, table, source, opts, &input)
}

fn insert_rows(
    db: &Db,
    table: &str,
    source: &mut dyn RowSource,
    opts: InsertOptions,
    input: &str,
) -> Result<InsertReport, MysqlError> {
    let opts = InsertOptions {
        bulk: BulkMode::Insert,
        ..opts
    };
    let mut sink = db.table_sink(table, opts);
    sink.set_input(input);
    crate::formats::pipe(source, &mut sink).map_err(unwrap_mysql)?;
    sink.finish().map_err(unwrap_mysql)?;
    Ok(sink.report())
}

enum LoadError {
    /// The server refused `LOAD DATA LOCAL` before any row was read.
    Refused(String),
    Failed(MysqlError),
}

impl From<MysqlError> for LoadError {
    fn from(e: MysqlError) -> Self {
        LoadError::Failed(e)
    }
}

/// What one `LOAD DATA` statement reported.
#[derive(Debug, Default)]
struct LoadOk {
    records: u64,
    deleted: u64,
    skipped: u64,
}

/// Reads `Records: 3  Deleted: 0  Skipped: 0  Warnings: 0`.
fn parse_info(info: &str) -> LoadOk {
    let mut ok = LoadOk::default();
    let words: Vec<&str> = info.split_whitespace().collect();
    for pair in words.windows(2) {
        let n = pair[1].parse().unwrap_or(0);
        match pair[0] {
            "Records:" => ok.records = n,
            "Deleted:" => ok.deleted = n,
            "Skipped:" => ok.skipped = n,
            _ => {}
        }
    }
    ok
}

/// The feed of one `LOAD DATA` statement: rows of the source, encoded, up to a limit.
struct Feed<'a> {
    source: &'a mut dyn RowSource,
    columns: usize,
    limit: u64,
    /// Rows sent by this statement.
    sent: u64,
    /// Rows sent before this statement (by earlier batches).
    before: u64,
    /// Whether the source has no more rows.
    exhausted: bool,
    /// Whether the server asked for the file.
    asked: bool,
    /// An error of the source or the encoding, or a cancel: the stream was cut short.
    error: Option<MysqlError>,
    input: String,
    table: String,
    target: String,
}

impl Feed<'_> {
    fn run(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        self.asked = true;
        let mut buf = Vec::with_capacity(STREAM_CHUNK + 4096);
        let mut row = Vec::with_capacity(self.columns);
        while self.sent < self.limit {
            if self.sent.is_multiple_of(CHECK_ROWS) && crate::cancel::requested() {
                self.error = Some(MysqlError::Cancelled {
                    target: self.target.clone(),
                    context: format!("insert into {}", self.table),
                });
                break;
            }
            match self.source.next_row(&mut row) {
                Ok(false) => {
                    self.exhausted = true;
                    break;
                }
                Ok(true) => {}
                Err(e) => {
                    self.error = Some(unwrap_mysql(e));
                    break;
                }
            }
            self.sent += 1;
            let n = self.before + self.sent;
            if row.len() != self.columns {
                self.error = Some(MysqlError::Value {
                    target: self.target.clone(),
                    context: format!(
                        "insert into {}: {}",
                        self.table,
                        row_label(n, Some(&self.input))
                    ),
                    message: format!("{} values for {} columns", row.len(), self.columns),
                });
                break;
            }
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    buf.push(b'\t');
                }
                if let Err(m) = encode_field(&mut buf, v) {
                    self.error = Some(MysqlError::Value {
                        target: self.target.clone(),
                        context: format!(
                            "insert into {}: {}, column {}",
                            self.table,
                            row_label(n, Some(&self.input)),
                            i + 1
                        ),
                        message: m,
                    });
                    return Ok(());
                }
            }
            buf.push(b'\n');
            if buf.len() >= STREAM_CHUNK {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        if self.error.is_none() {
            out.write_all(&buf)?;
        }
        Ok(())
    }
}

/// A raw pointer to the feed, for the handler the `mysql` crate wants `Send + 'static`.
struct FeedPtr(*mut (dyn FnMut(&mut dyn Write) -> std::io::Result<()> + 'static));

// SAFETY: the handler holding this pointer is installed on the connection only for the one
// `LOAD DATA` statement that `load_data` runs on this thread, and removed right after it, while
// the feed it points to is alive on that thread's stack; it never crosses threads.
unsafe impl Send for FeedPtr {}

fn load_data(
    db: &Db,
    table: &str,
    source: &mut dyn RowSource,
    opts: &InsertOptions,
    input: &str,
) -> Result<InsertReport, LoadError> {
    let columns = source.columns().to_vec();
    if columns.is_empty() {
        return Err(MysqlError::state(
            db.name(),
            format!("insert into {table}: the rows have no columns"),
        )
        .into());
    }
    let mut tx = Tx::begin(db, table, &columns, opts)?;
    let mut report = InsertReport {
        method: "load_data",
        ..InsertReport::default()
    };
    match load_rows(db, &mut tx, table, source, opts, input, &mut report) {
        Ok(_) => {
            tx.commit(db)?;
            Ok(report)
        }
        Err(e) => {
            tx.rollback(db);
            Err(e)
        }
    }
}

/// Sends every row of `source` with `LOAD DATA LOCAL` statements (one, or one per `batch` rows
/// with a commit between) in `tx`, and returns how many were sent. `Refused` only when the
/// server refused before any row was read.
fn load_rows(
    db: &Db,
    tx: &mut Tx,
    table: &str,
    source: &mut dyn RowSource,
    opts: &InsertOptions,
    input: &str,
    report: &mut InsertReport,
) -> Result<u64, LoadError> {
    let columns = source.columns().to_vec();
    let keyword = match opts.on_conflict {
        OnConflict::Replace => "REPLACE ",
        // LOCAL behaves as IGNORE anyway (the server cannot stop the stream): the warnings are
        // read after the statement and decide.
        _ => "IGNORE ",
    };
    let cols: Vec<String> = columns.iter().map(|c| quote_identifier(c)).collect();
    let sql = format!(
        "LOAD DATA LOCAL INFILE 'ferry-stream' {keyword}INTO TABLE {} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        quote_table(table),
        cols.join(", ")
    );
    let limit = if opts.batch > 0 && tx.own {
        opts.batch
    } else {
        u64::MAX
    };
    let mut before = 0u64;
    loop {
        let mut feed = Feed {
            source: &mut *source,
            columns: columns.len(),
            limit,
            sent: 0,
            before,
            exhausted: false,
            asked: false,
            error: None,
            input: input.to_owned(),
            table: table.to_owned(),
            target: db.name().to_owned(),
        };
        let ok = run_load(db, &sql, &mut feed)?;
        if let Some(e) = feed.error.take() {
            return Err(e.into());
        }
        let Some(ok) = ok else {
            let message = "the server refused LOAD DATA LOCAL INFILE (its local_infile setting is OFF): set local_infile=ON on the server (SET GLOBAL local_infile = 1, or local-infile=1 in its configuration) for the bulk path, or give bulk = \"insert\"";
            return Err(if before == 0 {
                LoadError::Refused(message.to_owned())
            } else {
                LoadError::Failed(MysqlError::unsupported(db.name(), message))
            });
        };
        check_warnings(db, table, input, opts.on_conflict, before, &ok)?;
        match opts.on_conflict {
            OnConflict::Skip => {
                report.inserted += ok.records - ok.skipped;
                report.skipped += ok.skipped;
            }
            _ => report.inserted += feed.sent,
        }
        before += feed.sent;
        if feed.exhausted || feed.sent < limit {
            return Ok(before);
        }
        tx.checkpoint(db)?;
    }
}

/// Runs one `LOAD DATA LOCAL` statement fed by `feed`; `None` when the server refused it before
/// asking for the stream.
fn run_load(db: &Db, sql: &str, feed: &mut Feed<'_>) -> Result<Option<LoadOk>, LoadError> {
    let mut state = db.borrow_state()?;
    let conn = state.conn();
    let mut run = |out: &mut dyn Write| feed.run(out);
    let f: &mut (dyn FnMut(&mut dyn Write) -> std::io::Result<()> + '_) = &mut run;
    // SAFETY: the lifetime is extended only for the handler below, which is removed before
    // `run` goes out of scope (see `FeedPtr`).
    let f: *mut (dyn FnMut(&mut dyn Write) -> std::io::Result<()> + 'static) =
        unsafe { std::mem::transmute(f) };
    let ptr = FeedPtr(f);
    conn.set_local_infile_handler(Some(LocalInfileHandler::new(move |name, out| {
        if name != b"ferry-stream" {
            // Only the stream this statement names; a server asking for any other file gets
            // nothing.
            return Ok(());
        }
        let p = &ptr;
        // SAFETY: see `FeedPtr`.
        unsafe { (*p.0)(out) }
    })));
    let result = db.watched(|| -> Result<LoadOk, mysql::Error> {
        let r = conn.query_iter(sql)?;
        let ok = parse_info(&r.info_str());
        drop(r);
        Ok(ok)
    });
    conn.set_local_infile_handler(None);
    drop(state);
    let asked = feed.asked;
    match result {
        Ok(ok) => Ok(Some(ok)),
        Err(mysql::Error::MySqlError(m)) if !asked && LOCAL_INFILE_REFUSED.contains(&m.code) => {
            Ok(None)
        }
        Err(e) => {
            if let Some(fe) = feed.error.take() {
                return Err(fe.into());
            }
            let e = db.sql_error(String::new(), e);
            Err(match e {
                MysqlError::Sql {
                    target,
                    code,
                    message,
                    ..
                } => {
                    let (message, row) = rebase_row(&message, feed.before + 1);
                    let context = match row {
                        Some(r) => format!(
                            "insert into {}: {}",
                            feed.table,
                            row_label(r, Some(&feed.input))
                        ),
                        None => format!("insert into {} (LOAD DATA)", feed.table),
                    };
                    MysqlError::Sql {
                        target,
                        context,
                        code,
                        message,
                    }
                }
                MysqlError::Cancelled { target, .. } => MysqlError::Cancelled {
                    target,
                    context: format!("insert into {}", feed.table),
                },
                other => other,
            }
            .into())
        }
    }
}

/// Turns the warnings of a `LOAD DATA LOCAL` statement into the error `INSERT` would have
/// raised: a value that did not fit, or a duplicate under `fail`.
fn check_warnings(
    db: &Db,
    table: &str,
    input: &str,
    on_conflict: OnConflict,
    before: u64,
    ok: &LoadOk,
) -> Result<(), MysqlError> {
    let count = {
        let mut q = db.query("SELECT @@warning_count", &crate::db::Params::None)?;
        let mut row = Vec::new();
        q.next_row(&mut row).map_err(unwrap_mysql)?;
        while q.next_row(&mut row).map_err(unwrap_mysql)? {}
        match row.first() {
            Some(Value::Int(n)) => *n as u64,
            _ => 0,
        }
    };
    // Under skip, each duplicate left one warning: the rest are values that did not fit.
    let allowed = if on_conflict == OnConflict::Skip {
        ok.skipped
    } else {
        0
    };
    if count <= allowed {
        return Ok(());
    }
    // Notes (a decimal rounded to its scale) are not errors for INSERT either.
    let mut q = db.query("SHOW WARNINGS", &crate::db::Params::None)?;
    let mut row = Vec::new();
    let mut first = None;
    let mut listed = 0u64;
    while q.next_row(&mut row).map_err(unwrap_mysql)? {
        listed += 1;
        let level = match row.first() {
            Some(Value::Text(t)) => t.clone(),
            _ => String::new(),
        };
        let code = match row.get(1) {
            Some(Value::Int(c)) => u16::try_from(*c).unwrap_or(0),
            _ => 0,
        };
        if level == "Note" || (on_conflict == OnConflict::Skip && code == 1062) {
            continue;
        }
        if first.is_none() {
            let message = match row.get(2) {
                Some(Value::Text(t)) => t.clone(),
                _ => String::new(),
            };
            first = Some((code, message));
        }
    }
    let (code, message) = match first {
        Some(f) => f,
        // Every warning was seen, and none was an error.
        None if listed >= count => return Ok(()),
        None => (
            0,
            format!(
                "{} values did not fit their columns (the server lists only the first {listed} warnings)",
                count - allowed
            ),
        ),
    };
    let (message, at) = rebase_row(&message, before + 1);
    let context = match at {
        Some(r) => format!("insert into {table}: {}", row_label(r, Some(input))),
        None => format!("insert into {table}"),
    };
    Err(MysqlError::Sql {
        target: db.name().to_owned(),
        context,
        code,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_numbers_of_a_statement_become_rows_of_the_insert() {
        let (m, r) = rebase_row("Out of range value for column 'x' at row 3", 2001);
        assert_eq!(m, "Out of range value for column 'x' at row 2003");
        assert_eq!(r, Some(2003));
        assert_eq!(
            rebase_row("Duplicate entry '1' for key 'PRIMARY'", 5).1,
            None
        );
        let ok = parse_info("Records: 3  Deleted: 1  Skipped: 2  Warnings: 2");
        assert_eq!((ok.records, ok.deleted, ok.skipped), (3, 1, 2));
    }
}
