//! The reader and the writer as a row source and a row sink.

use super::*;

/// An RDB file as rows: columns [`COLUMNS`] (`db`, `key`, `type`, `ttl`, `expire_at`,
/// `payload`), one row per key.
///
/// `db` is an integer; `key` text when valid UTF-8, bytes otherwise; `type` the Redis type
/// ([`type_name`]); `ttl` the milliseconds left when the row is read (0 or less for a key
/// already expired) and `expire_at` the expiry in unix milliseconds, both null for a key
/// without expiry; `payload` the `DUMP` payload as bytes.
pub struct RdbSource<R: Read> {
    reader: RdbReader<R>,
    entry: RdbEntry,
    columns: Vec<String>,
    rows: u64,
    /// Entries read, kept or not.
    seen: u64,
    filter: Option<KeyFilter>,
    interrupt: Option<Interrupt>,
    progress: Option<Progress>,
}

/// Which keys an [`RdbSource`] yields: a Redis-style glob on the key (`user:*`, `session:??`,
/// `[ab]*`) and/or a set of type names (`string`, `hash`, ...).
pub struct KeyFilter {
    glob: Option<globset::GlobMatcher>,
    types: Option<Vec<String>>,
}

impl KeyFilter {
    /// A filter; `pattern` is a glob (`*` also matches `:` and `/`), `types` Redis type names.
    pub fn new(pattern: Option<&str>, types: Option<Vec<String>>) -> Result<KeyFilter, String> {
        let glob = match pattern {
            Some(p) => Some(
                globset::GlobBuilder::new(p)
                    .literal_separator(false)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| format!("bad key pattern `{p}`: {e}"))?
                    .compile_matcher(),
            ),
            None => None,
        };
        if let Some(t) = &types
            && let Some(bad) = t.iter().find(|t| {
                !["string", "list", "set", "zset", "hash", "stream", "module"].contains(&t.as_str())
            })
        {
            return Err(format!(
                "unknown type `{bad}`; expected string, list, set, zset, hash, stream or module"
            ));
        }
        Ok(KeyFilter { glob, types })
    }

    fn accepts(&self, e: &RdbEntry) -> bool {
        if let Some(t) = &self.types {
            let name = type_name(e.type_byte).unwrap_or("");
            if !t.iter().any(|x| x == name) {
                return false;
            }
        }
        match &self.glob {
            None => true,
            Some(g) => {
                use std::os::unix::ffi::OsStrExt;
                g.is_match(std::ffi::OsStr::from_bytes(&e.key))
            }
        }
    }
}

/// Asked every [`CHECK_EVERY`] rows; `true` stops a transfer (the run is being stopped).
pub use crate::cancel::Interrupt;

/// Told the number of keys handled so far, every [`CHECK_EVERY`] rows and at the end.
pub type Progress = Box<dyn FnMut(u64)>;

/// How often (in rows) a source asks its [`Interrupt`] and reports [`Progress`].
pub const CHECK_EVERY: u64 = 1024;

impl<R: Read> RdbSource<R> {
    /// Opens an RDB file as rows, keeping only the keys of database `db_filter` if given.
    pub fn new(input: R, name: &str, db_filter: Option<u64>) -> Result<Self, FormatError> {
        let mut reader = RdbReader::new(input, name)?;
        reader.db_filter = db_filter;
        Ok(RdbSource {
            reader,
            entry: RdbEntry::default(),
            columns: COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
            rows: 0,
            seen: 0,
            filter: None,
            interrupt: None,
            progress: None,
        })
    }

    /// Yields only the keys `filter` accepts.
    pub fn with_filter(mut self, filter: Option<KeyFilter>) -> Self {
        self.filter = filter;
        self
    }

    /// Stops with an error once `interrupt` returns true (asked every [`CHECK_EVERY`] rows).
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// Reports the rows read so far to `progress`, when given.
    pub fn with_progress(mut self, progress: Option<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Counts and metadata so far; complete at the end of the rows.
    pub fn summary(&self) -> &RdbSummary {
        self.reader.summary()
    }

    /// The file's RDB version.
    pub fn version(&self) -> u16 {
        self.reader.version()
    }
}

impl<R: Read> RowSource for RdbSource<R> {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        loop {
            if self.seen.is_multiple_of(CHECK_EVERY) {
                if self.interrupt.as_ref().is_some_and(|f| f()) {
                    return Err(FormatError::data(
                        Location::file(&self.reader.name),
                        "interrupted: the run is being stopped",
                    ));
                }
                if self.rows > 0
                    && let Some(p) = self.progress.as_mut()
                {
                    p(self.rows);
                }
            }
            if !self.reader.next_entry(&mut self.entry)? {
                if let Some(p) = self.progress.as_mut() {
                    p(self.rows);
                }
                return Ok(false);
            }
            self.seen += 1;
            if self.filter.as_ref().is_none_or(|f| f.accepts(&self.entry)) {
                break;
            }
        }
        self.rows += 1;
        let e = &mut self.entry;
        row.resize(COLUMNS.len(), Value::Null);
        let db = i64::try_from(e.db).map_err(|_| {
            FormatError::data(
                Location::file(&self.reader.name),
                format!("database number {} is out of range", e.db),
            )
        })?;
        row[0] = Value::Int(db);
        match std::str::from_utf8(&e.key) {
            Ok(text) => row[1].set_text(text),
            Err(_) => row[1].set_bytes(&e.key),
        }
        row[2].set_text(type_name(e.type_byte).unwrap_or("unknown"));
        match e.expire_at_ms {
            Some(at) => {
                row[3] = Value::Int(at.saturating_sub(now_ms()));
                row[4] = Value::Int(at);
            }
            None => {
                row[3] = Value::Null;
                row[4] = Value::Null;
            }
        }
        // Hand the payload over without copying; the entry takes the row's old buffer.
        match &mut row[5] {
            Value::Bytes(b) => std::mem::swap(b, &mut e.payload),
            other => *other = Value::Bytes(std::mem::take(&mut e.payload)),
        }
        Ok(true)
    }

    fn name(&self) -> &str {
        &self.reader.name
    }
}

/// Where [`RdbSink`] finds its fields.
pub(super) struct SinkColumns {
    key: usize,
    payload: usize,
    db: Option<usize>,
    expire_at: Option<usize>,
    ttl: Option<usize>,
}

/// Rows to an RDB file through an [`RdbWriter`].
///
/// Columns `key` and `payload` (text or bytes; the payload a `DUMP` payload) are required;
/// `db` (integer ≥ 0, default 0), `expire_at` (unix ms) and `ttl` (ms from now, used when
/// `expire_at` is absent or null) are optional, and other columns are ignored. `finish` writes
/// the end of the file and flushes; [`RdbSink::into_inner`] then gives the output back.
pub struct RdbSink<W: Write> {
    writer: Option<RdbWriter<W>>,
    done: Option<W>,
    name: String,
    columns: Option<SinkColumns>,
    names: Vec<String>,
    rows: u64,
}

impl<W: Write> RdbSink<W> {
    /// A sink writing an RDB file to `out`, named `name` in messages.
    pub fn new(out: W, name: &str) -> Self {
        RdbSink {
            writer: Some(RdbWriter::new(out, name)),
            done: None,
            name: name.to_owned(),
            columns: None,
            names: Vec::new(),
            rows: 0,
        }
    }

    /// The output, once `finish` has completed it.
    pub fn into_inner(self) -> Option<W> {
        self.done
    }

    fn field_error(&self, index: usize, message: String) -> FormatError {
        FormatError::data(
            Location::file(&self.name).at_field(index, self.names.get(index).map(String::as_str)),
            format!("row {}: {message}", self.rows),
        )
    }

    fn bytes_at<'r>(&self, row: &'r [Value], index: usize) -> Result<&'r [u8], FormatError> {
        match row.get(index) {
            Some(Value::Text(s)) => Ok(s.as_bytes()),
            Some(Value::Bytes(b)) => Ok(b),
            other => Err(self.field_error(
                index,
                format!(
                    "expected text or bytes, found {}",
                    other.map_or("nothing", Value::type_name)
                ),
            )),
        }
    }

    /// An optional integer field: `None` when the column is absent or the value null.
    fn int_at(&self, row: &[Value], index: Option<usize>) -> Result<Option<i64>, FormatError> {
        let Some(index) = index else {
            return Ok(None);
        };
        match row.get(index) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Int(n)) => Ok(Some(*n)),
            Some(other) => Err(self.field_error(
                index,
                format!("expected an integer, found {}", other.type_name()),
            )),
        }
    }
}

impl<W: Write> RowSink for RdbSink<W> {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        let find = |name: &str| columns.iter().position(|c| c == name);
        let required = |name: &str| {
            find(name).ok_or_else(|| {
                FormatError::data(
                    Location::file(&self.name),
                    format!(
                        "an RDB output needs a `{name}` column (it takes `key`, `payload` with DUMP payloads, and optionally `db`, `expire_at` or `ttl`); the columns are: {}",
                        columns.join(", ")
                    ),
                )
            })
        };
        self.columns = Some(SinkColumns {
            key: required("key")?,
            payload: required("payload")?,
            db: find("db"),
            expire_at: find("expire_at"),
            ttl: find("ttl"),
        });
        self.names = columns.to_vec();
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        self.rows += 1;
        let Some(cols) = &self.columns else {
            return Err(FormatError::data(
                Location::file(&self.name),
                "a row was written before the columns (begin)",
            ));
        };
        let key = self.bytes_at(row, cols.key)?;
        let payload = self.bytes_at(row, cols.payload)?;
        let db = match self.int_at(row, cols.db)? {
            None => 0,
            Some(n) => u64::try_from(n).map_err(|_| {
                self.field_error(
                    cols.db.unwrap_or_default(),
                    format!("database number {n} is negative"),
                )
            })?,
        };
        let expire_at = match self.int_at(row, cols.expire_at)? {
            Some(at) => Some(at),
            None => self
                .int_at(row, cols.ttl)?
                .map(|ttl| now_ms().saturating_add(ttl)),
        };
        let Some(writer) = self.writer.as_mut() else {
            return Err(FormatError::data(
                Location::file(&self.name),
                "a row was written after finish",
            ));
        };
        writer.write_entry(db, key, expire_at, payload)?;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        if let Some(writer) = self.writer.take() {
            self.done = Some(writer.finish()?);
        }
        Ok(())
    }

    fn started(&self) -> bool {
        self.columns.is_some()
    }
}
