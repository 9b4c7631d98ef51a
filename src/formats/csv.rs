//! CSV on the `csv` crate: a streaming reader over byte records (no allocation per row once
//! the buffers have grown) and a writer that formats numbers without allocating.
//!
//! The `csv` crate accepts an unterminated quoted field by running it to the end of the input.
//! The reader catches that case: it counts quote characters as the bytes go by, and a record
//! that ends at the end of the input with an odd count so far is reported as an unbalanced
//! quote instead of being returned.

use std::io::{self, Read, Write};

use super::error::{FormatError, Location, OnError, SkipReport, skip_or_fail};
use super::options::{CsvOptions, ReadOptions, TimestampUnit, Type};
use super::project::Projection;
use super::row::{RowSink, RowSource, Value};
use super::text::{TextFormatter, parse_typed};

/// Counts quote bytes and notes the end of the input as the CSV parser reads.
struct QuoteCounter<R> {
    inner: R,
    quote: u8,
    quotes: u64,
    eof: bool,
}

impl<R: Read> Read for QuoteCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.eof = true;
        } else {
            self.quotes += memchr::memchr_iter(self.quote, &buf[..n]).count() as u64;
        }
        Ok(n)
    }
}

/// A CSV row source.
pub struct CsvReader<R: Read> {
    rdr: csv::Reader<QuoteCounter<R>>,
    record: csv::ByteRecord,
    name: String,
    /// Names of the fields in the file.
    file_columns: Vec<String>,
    /// Names of the columns kept, in output order.
    columns: Vec<String>,
    /// For each output column, its field index in the file.
    indices: Vec<usize>,
    types: Vec<Type>,
    unit: TimestampUnit,
    null: Option<String>,
    policy: OnError,
    skipped: SkipReport,
    /// A first record read to learn the field count when there is no header line.
    pending: Option<csv::ByteRecord>,
    quoting: bool,
}

impl<R: Read> CsvReader<R> {
    /// Opens a CSV source: reads the header line (when `csv.header`) and checks the options
    /// against the columns.
    pub fn new(input: R, csv_opts: &CsvOptions, opts: &ReadOptions) -> Result<Self, FormatError> {
        let counter = QuoteCounter {
            inner: input,
            quote: csv_opts.quote,
            quotes: 0,
            eof: false,
        };
        let rdr = csv::ReaderBuilder::new()
            .delimiter(csv_opts.delimiter)
            .quote(csv_opts.quote)
            .has_headers(false)
            .flexible(true)
            .from_reader(counter);
        let mut this = CsvReader {
            rdr,
            record: csv::ByteRecord::new(),
            name: opts.name.clone(),
            file_columns: Vec::new(),
            columns: Vec::new(),
            indices: Vec::new(),
            types: Vec::new(),
            unit: opts.timestamp_unit,
            null: csv_opts.null.clone(),
            policy: opts.on_error,
            skipped: SkipReport::default(),
            pending: None,
            quoting: true,
        };
        let first = this.read_raw()?;
        let file_columns = match (&csv_opts.names, first) {
            (Some(names), Some(rec)) => {
                if !csv_opts.header {
                    this.pending = Some(rec);
                }
                names.clone()
            }
            (Some(names), None) => names.clone(),
            (None, Some(rec)) if csv_opts.header => this.header_names(&rec)?,
            (None, Some(rec)) => {
                let n = rec.len();
                this.pending = Some(rec);
                (1..=n).map(|i| format!("c{i}")).collect()
            }
            (None, None) => Vec::new(),
        };
        let projection = Projection::for_reader(&file_columns, opts)?;
        let indices: Vec<usize> = projection
            .columns()
            .iter()
            .map(|c| file_columns.iter().position(|f| f == c).unwrap_or(0))
            .collect();
        opts.check_types("csv", projection.columns())?;
        this.types = opts.types_for(projection.columns());
        this.columns = projection.columns().to_vec();
        this.indices = indices;
        this.file_columns = file_columns;
        Ok(this)
    }

    fn header_names(&self, rec: &csv::ByteRecord) -> Result<Vec<String>, FormatError> {
        let line = rec.position().map_or(1, |p| p.line());
        rec.iter()
            .enumerate()
            .map(|(i, f)| {
                let f = if i == 0 {
                    f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
                } else {
                    f
                };
                std::str::from_utf8(f).map(str::to_owned).map_err(|e| {
                    FormatError::data(
                        Location::file(&self.name).at_line(line).at_field(i, None),
                        format!(
                            "the header is not valid UTF-8 (invalid byte at offset {})",
                            e.valid_up_to()
                        ),
                    )
                })
            })
            .collect()
    }

    /// Reads the next raw record; an unterminated quoted field at the end is an error.
    fn read_raw(&mut self) -> Result<Option<csv::ByteRecord>, FormatError> {
        self.read_next()
            .map(|ok| ok.then(|| std::mem::take(&mut self.record)))
    }

    /// Reads the next record into `self.record` (reusing its buffers).
    fn read_next(&mut self) -> Result<bool, FormatError> {
        let rec = &mut self.record;
        let more = self
            .rdr
            .read_byte_record(rec)
            .map_err(|e| csv_error(&self.name, e))?;
        if !more {
            return Ok(false);
        }
        let counter = self.rdr.get_ref();
        if self.quoting && counter.eof && !counter.quotes.is_multiple_of(2) {
            // Once reported, the rest of the input is that one field: stop checking.
            self.quoting = false;
            let line = rec.position().map_or(0, |p| p.line());
            let field = rec.len().saturating_sub(1);
            return Err(FormatError::data(
                Location::file(&self.name)
                    .at_line(line)
                    .at_field(field, self.file_columns.get(field).map(String::as_str)),
                format!(
                    "unbalanced quote: a field opened with {} is not closed before the end of the input",
                    char::from(counter.quote)
                ),
            ));
        }
        Ok(true)
    }

    fn convert(&mut self, row: &mut Vec<Value>) -> Result<(), FormatError> {
        let line = self.record.position().map_or(0, |p| p.line());
        if self.record.len() != self.file_columns.len() {
            return Err(FormatError::data(
                Location::file(&self.name).at_line(line),
                format!(
                    "expected {} fields ({}), found {}",
                    self.file_columns.len(),
                    preview(&self.file_columns),
                    self.record.len()
                ),
            ));
        }
        row.resize(self.columns.len(), Value::Null);
        for (k, slot) in row.iter_mut().enumerate() {
            let i = self.indices[k];
            let raw = &self.record[i];
            let text = std::str::from_utf8(raw).map_err(|e| {
                FormatError::data(
                    Location::file(&self.name)
                        .at_line(line)
                        .at_field(i, Some(&self.columns[k])),
                    format!(
                        "invalid UTF-8 (byte {} of the field); expected UTF-8 text",
                        e.valid_up_to() + 1
                    ),
                )
            })?;
            if self.null.as_deref() == Some(text) {
                *slot = Value::Null;
                continue;
            }
            parse_typed(text, self.types[k], self.unit, slot).map_err(|m| {
                FormatError::data(
                    Location::file(&self.name)
                        .at_line(line)
                        .at_field(i, Some(&self.columns[k])),
                    m,
                )
            })?;
        }
        Ok(())
    }
}

fn preview(cols: &[String]) -> String {
    if cols.len() <= 6 {
        cols.join(", ")
    } else {
        format!("{}, …", cols[..6].join(", "))
    }
}

fn csv_error(name: &str, e: csv::Error) -> FormatError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => FormatError::io(name, io),
        other => FormatError::data(Location::file(name), format!("{other:?}")),
    }
}

impl<R: Read> RowSource for CsvReader<R> {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        loop {
            let got = match self.pending.take() {
                Some(rec) => {
                    self.record = rec;
                    Ok(true)
                }
                None => self.read_next(),
            };
            let result = got.and_then(|more| {
                if more {
                    self.convert(row).map(|_| true)
                } else {
                    Ok(false)
                }
            });
            match result {
                Ok(more) => return Ok(more),
                Err(e) => skip_or_fail(self.policy, &mut self.skipped, e)?,
            }
        }
    }

    fn skipped(&self) -> Option<&SkipReport> {
        Some(&self.skipped)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// A CSV row sink. Column choice, renaming and timestamps are applied by wrapping it in a
/// [`super::ProjectedSink`].
pub struct CsvWriter<W: Write> {
    /// `None` once the output went to a source's bulk path (`raw`).
    wtr: Option<csv::Writer<W>>,
    /// The output, when a source writes CSV into it itself (`raw_csv_begin`).
    raw: Option<W>,
    /// The options, for the bulk path (`raw_csv_options`).
    opts: CsvOptions,
    name: String,
    header: bool,
    null: Vec<u8>,
    fmt: TextFormatter,
    started: bool,
    finished: bool,
}

impl<W: Write> CsvWriter<W> {
    /// A CSV sink on `out` named `name` in messages.
    pub fn new(mut out: W, opts: &CsvOptions, name: &str) -> Result<Self, FormatError> {
        if opts.bom {
            out.write_all(b"\xEF\xBB\xBF")
                .map_err(|e| FormatError::io(name, e))?;
        }
        let wtr = csv::WriterBuilder::new()
            .delimiter(opts.delimiter)
            .quote(opts.quote)
            .terminator(if opts.crlf {
                csv::Terminator::CRLF
            } else {
                csv::Terminator::Any(b'\n')
            })
            .buffer_capacity(64 * 1024)
            .from_writer(out);
        Ok(CsvWriter {
            wtr: Some(wtr),
            raw: None,
            opts: CsvOptions {
                bom: false,
                ..opts.clone()
            },
            name: name.to_owned(),
            header: opts.header,
            null: opts.null.clone().unwrap_or_default().into_bytes(),
            fmt: TextFormatter::default(),
            started: false,
            finished: false,
        })
    }

    fn err(&self, e: csv::Error) -> FormatError {
        csv_error(&self.name, e)
    }

    fn wtr(&mut self) -> Result<&mut csv::Writer<W>, FormatError> {
        self.wtr.as_mut().ok_or_else(|| FormatError::Option {
            format: "csv",
            option: "writer",
            message: format!("{}: a row was written after a bulk copy", self.name),
        })
    }
}

impl<W: Write> RowSink for CsvWriter<W> {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        self.started = true;
        if self.header {
            let r = self.wtr()?.write_record(columns);
            r.map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        let Some(wtr) = self.wtr.as_mut() else {
            return Err(FormatError::Option {
                format: "csv",
                option: "writer",
                message: format!("{}: a row was written after a bulk copy", self.name),
            });
        };
        for v in row {
            let r = match self.fmt.format(v) {
                Some(bytes) => wtr.write_field(bytes),
                None => wtr.write_field(&self.null),
            };
            r.map_err(|e| csv_error(&self.name, e))?;
        }
        wtr.write_record(None::<&[u8]>)
            .map_err(|e| csv_error(&self.name, e))
    }

    fn raw_csv_options(&self) -> Option<CsvOptions> {
        (!self.started).then(|| self.opts.clone())
    }

    fn raw_csv_begin(&mut self, _columns: &[String]) -> Option<&mut dyn Write> {
        if self.started {
            return None;
        }
        // Nothing is buffered yet (a byte order mark went straight to the output).
        let out = self.wtr.take()?.into_inner().ok()?;
        self.started = true;
        self.raw = Some(out);
        self.raw.as_mut().map(|w| w as &mut dyn Write)
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        if !self.finished {
            self.finished = true;
            let r = match (self.wtr.as_mut(), self.raw.as_mut()) {
                (Some(w), _) => w.flush(),
                (None, Some(raw)) => raw.flush(),
                (None, None) => Ok(()),
            };
            r.map_err(|e| FormatError::io(&self.name, e))?;
        }
        Ok(())
    }

    fn started(&self) -> bool {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::pipe;

    fn read_all(
        text: &str,
        csv: CsvOptions,
        opts: ReadOptions,
    ) -> Result<Vec<Vec<Value>>, FormatError> {
        let mut r = CsvReader::new(text.as_bytes(), &csv, &opts)?;
        let mut out = Vec::new();
        let mut row = Vec::new();
        while r.next_row(&mut row)? {
            out.push(row.clone());
        }
        Ok(out)
    }

    #[test]
    fn reads_typed_fields() {
        let mut opts = ReadOptions::named("t.csv");
        opts.types.insert("n".into(), Type::Integer);
        let rows = read_all("n,s\n1,\"a,b\"\n,\"x\ny\"\n", CsvOptions::default(), opts).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Value::Int(1), Value::Text("a,b".into())],
                vec![Value::Null, Value::Text("x\ny".into())],
            ]
        );
    }

    #[test]
    fn writes_with_null_token_and_quotes() {
        let mut out = Vec::new();
        let mut w = CsvWriter::new(
            &mut out,
            &CsvOptions {
                null: Some("\\N".into()),
                ..CsvOptions::default()
            },
            "o.csv",
        )
        .unwrap();
        let mut src = crate::formats::row::MemorySource::new(
            vec!["a".into(), "b".into()],
            vec![vec![Value::Null, Value::Text("q\"x".into())]],
        );
        pipe(&mut src, &mut w).unwrap();
        w.finish().unwrap();
        drop(w);
        assert_eq!(String::from_utf8(out).unwrap(), "a,b\n\\N,\"q\"\"x\"\n");
    }
}
