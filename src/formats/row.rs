//! The row model: ordered column names and typed values, and the source and sink traits every
//! format implements.
//!
//! A row is a `Vec<Value>` in column order. Sources fill a row the caller owns and reuses, and
//! [`Value::set_text`] / [`Value::set_bytes`] keep the allocation of a slot that already holds
//! text, so a steady stream of rows allocates nothing per row.

use super::error::{FormatError, SkipReport};

/// One typed value. Every format carries every variant either natively or in a documented text
/// form (bytes as hex, for instance), so a value survives a round trip exactly when the reader
/// is told the column's type.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// SQL `NULL`, JSON `null`, an empty xlsx cell, or the CSV null token.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes (SQLite blobs).
    Bytes(Vec<u8>),
}

impl Value {
    /// Stores text in this slot, reusing its allocation when it already holds text.
    pub fn set_text(&mut self, s: &str) {
        match self {
            Value::Text(t) => {
                t.clear();
                t.push_str(s);
            }
            other => *other = Value::Text(s.to_owned()),
        }
    }

    /// Stores bytes in this slot, reusing its allocation when it already holds bytes.
    pub fn set_bytes(&mut self, b: &[u8]) {
        match self {
            Value::Bytes(v) => {
                v.clear();
                v.extend_from_slice(b);
            }
            other => *other = Value::Bytes(b.to_vec()),
        }
    }

    /// The name of the variant, for messages (`integer`, `text`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// A stream of rows with a fixed list of columns.
pub trait RowSource {
    /// Column names, in row order. Known once the source is constructed.
    fn columns(&self) -> &[String];

    /// Reads the next row into `row` (resized to the number of columns). Returns `false` at the
    /// end of the input.
    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError>;

    /// The rows skipped under [`super::OnError::Continue`], if the source skips any.
    fn skipped(&self) -> Option<&SkipReport> {
        None
    }

    /// The name of the input for messages (a path, `query`, `<string>`).
    fn name(&self) -> &str;

    /// Counters the source keeps (keys seen, duplicates dropped, ...), for summaries.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Bulk path: writes every row as CSV straight into `out` (header included when
    /// `opts.header`), natively (a database's `COPY ... TO STDOUT`), and returns the number of
    /// rows. Asked by [`super::pipe`] before the first row, only when [`RowSource::can_copy_csv`]
    /// said yes. `None`: the rows must go one by one.
    fn copy_csv(
        &mut self,
        _out: &mut dyn std::io::Write,
        _opts: &super::CsvOptions,
    ) -> Option<Result<u64, FormatError>> {
        None
    }

    /// Whether [`RowSource::copy_csv`] can write all the rows with these CSV options.
    fn can_copy_csv(&self, _opts: &super::CsvOptions) -> bool {
        false
    }
}

/// A consumer of rows: `begin` once with the columns, `write_row` per row, `finish` once.
pub trait RowSink {
    /// Receives the column names before the first row. Writers write their header here.
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError>;

    /// Writes one row (same length as the columns given to `begin`).
    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError>;

    /// Completes the output (closing brackets, zip directory, transaction commit) and flushes
    /// it. Calling it twice is harmless.
    fn finish(&mut self) -> Result<(), FormatError>;

    /// Whether `begin` has been called.
    fn started(&self) -> bool;

    /// Counters the sink keeps (rows written, skipped, ...), for summaries.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Takes every remaining row of `src` itself, when the sink has a faster way than row by
    /// row (a database's bulk load), and returns how many it took, having begun; `None` when it
    /// has none, and then the caller begins it and writes row by row. Asked only before
    /// `begin`.
    fn pull(&mut self, _src: &mut dyn RowSource) -> Option<Result<u64, FormatError>> {
        None
    }

    /// Bulk path: a CSV writer that has not begun and writes the rows as they are (no column
    /// choice, renaming or conversion) gives its CSV options (its byte order mark, if any, is
    /// already written).
    fn raw_csv_options(&self) -> Option<super::CsvOptions> {
        None
    }

    /// Bulk path: begins the sink for CSV bytes that a source writes itself (header included)
    /// and returns the output they go to.
    fn raw_csv_begin(&mut self, _columns: &[String]) -> Option<&mut dyn std::io::Write> {
        None
    }
}

impl<T: RowSource + ?Sized> RowSource for Box<T> {
    fn columns(&self) -> &[String] {
        (**self).columns()
    }
    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        (**self).next_row(row)
    }
    fn skipped(&self) -> Option<&SkipReport> {
        (**self).skipped()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn stats(&self) -> Vec<(&'static str, u64)> {
        (**self).stats()
    }
    fn copy_csv(
        &mut self,
        out: &mut dyn std::io::Write,
        opts: &super::CsvOptions,
    ) -> Option<Result<u64, FormatError>> {
        (**self).copy_csv(out, opts)
    }
    fn can_copy_csv(&self, opts: &super::CsvOptions) -> bool {
        (**self).can_copy_csv(opts)
    }
}

impl<T: RowSink + ?Sized> RowSink for Box<T> {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        (**self).begin(columns)
    }
    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        (**self).write_row(row)
    }
    fn finish(&mut self) -> Result<(), FormatError> {
        (**self).finish()
    }
    fn started(&self) -> bool {
        (**self).started()
    }
    fn stats(&self) -> Vec<(&'static str, u64)> {
        (**self).stats()
    }
    fn pull(&mut self, src: &mut dyn RowSource) -> Option<Result<u64, FormatError>> {
        (**self).pull(src)
    }
    fn raw_csv_options(&self) -> Option<super::CsvOptions> {
        (**self).raw_csv_options()
    }
    fn raw_csv_begin(&mut self, columns: &[String]) -> Option<&mut dyn std::io::Write> {
        (**self).raw_csv_begin(columns)
    }
}

/// A source over rows held in memory; for tests and for rows built by a script.
#[derive(Debug, Clone)]
pub struct MemorySource {
    columns: Vec<String>,
    rows: std::vec::IntoIter<Vec<Value>>,
}

impl MemorySource {
    /// A source yielding `rows` under `columns`.
    pub fn new(columns: Vec<String>, rows: Vec<Vec<Value>>) -> Self {
        MemorySource {
            columns,
            rows: rows.into_iter(),
        }
    }
}

impl RowSource for MemorySource {
    fn columns(&self) -> &[String] {
        &self.columns
    }
    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        match self.rows.next() {
            Some(mut r) => {
                r.resize(self.columns.len(), Value::Null);
                *row = r;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn name(&self) -> &str {
        "<memory>"
    }
}

/// A sink collecting rows in memory; for tests.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    /// Columns given to `begin`.
    pub columns: Option<Vec<String>>,
    /// Rows written so far.
    pub rows: Vec<Vec<Value>>,
    /// Whether `finish` was called.
    pub finished: bool,
}

impl RowSink for MemorySink {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        self.columns = Some(columns.to_vec());
        Ok(())
    }
    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        self.rows.push(row.to_vec());
        Ok(())
    }
    fn finish(&mut self) -> Result<(), FormatError> {
        self.finished = true;
        Ok(())
    }
    fn started(&self) -> bool {
        self.columns.is_some()
    }
}
