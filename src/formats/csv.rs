//! CSV: a streaming reader that splits plain lines where they lie in its buffer and hands
//! quoted ones to `csv_core` (the `csv` crate's parser), with no allocation per row once the
//! buffers have grown, and a writer on the `csv` crate that formats numbers without allocating.
//!
//! `csv_core` accepts an unterminated quoted field by running it to the end of the input.
//! The reader catches that case: it counts the quote characters of the quoted lines, and a
//! record that ends at the end of the input with an odd count so far is reported as an
//! unbalanced quote instead of being returned.

use std::io::{self, Read, Write};

use super::error::{FormatError, Location, OnError, SkipReport, skip_or_fail};
use super::options::{CsvOptions, ReadOptions, TimestampUnit, Type};
use super::projection::Projection;
use super::row::{RowSink, RowSource, Value};
use super::text::{TextFormatter, parse_typed};

/// Bytes read from the input at a time (the buffer grows for a longer record).
const READ_SIZE: usize = 256 * 1024;

/// What a byte means to the plain-line splitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Part of a field.
    Plain,
    /// Ends a field.
    Delimiter,
    /// Ends the line, or needs `csv_core` (a quote, a carriage return).
    Special,
}

/// The role of every byte for these options.
fn roles(opts: &CsvOptions) -> [Role; 256] {
    let mut roles = [Role::Plain; 256];
    roles[usize::from(opts.delimiter)] = Role::Delimiter;
    for b in [b'\n', b'\r', opts.quote] {
        roles[usize::from(b)] = Role::Special;
    }
    roles
}

/// Where the current record's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// In the input buffer from this offset: a line without quotes, whose fields are the
    /// spans between delimiters.
    Line(usize),
    /// In `unquoted`, as `csv_core` wrote it with quotes and doubled quotes resolved.
    Unquoted,
}

/// A CSV row source.
///
/// Most lines of most files hold no quote: those are split where they lie in the input buffer
/// (one pass over their bytes finds the delimiters and the line end) without copying them. A line with a quote, a lone carriage return or anything else unusual goes
/// through `csv_core`, the state machine under the `csv` crate, so quoting follows the `csv`
/// crate's rules exactly. A record's bytes are checked for UTF-8 once, and typed fields are
/// parsed from them without an intermediate string.
pub struct CsvReader<R: Read> {
    input: R,
    buf: Vec<u8>,
    /// Start of the bytes not consumed yet.
    pos: usize,
    /// End of the bytes read into `buf`.
    filled: usize,
    /// Whether the input has ended.
    eof: bool,
    /// Whether the input's first bytes were looked at for a byte-order mark.
    started: bool,
    core: csv_core::Reader,
    /// The slow path's output: fields without their quotes.
    unquoted: Vec<u8>,
    /// The slow path's field ends in `unquoted`.
    ends: Vec<usize>,
    /// The current record: where its bytes are and each field's span in them.
    held: Held,
    spans: Vec<(usize, usize)>,
    /// The line the current record starts on, and the line the input is at (1-based).
    record_line: u64,
    line: u64,
    /// Each byte's role in a plain line.
    roles: [Role; 256],
    delimiter: u8,
    quote: u8,
    /// Whether the buffer holds a `\r` (then lines are split byte by byte).
    has_cr: bool,
    /// Quote bytes the slow path has consumed, for the unbalanced-quote check.
    quotes: u64,
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
    /// The first record, read to learn the field count when there is no header line, is
    /// still to be returned.
    replay: bool,
    quoting: bool,
}

impl<R: Read> CsvReader<R> {
    /// Opens a CSV source: reads the header line (when `csv.header`) and checks the options
    /// against the columns.
    pub fn new(input: R, csv_opts: &CsvOptions, opts: &ReadOptions) -> Result<Self, FormatError> {
        let core = csv_core::ReaderBuilder::new()
            .delimiter(csv_opts.delimiter)
            .quote(csv_opts.quote)
            .build();
        let mut this = CsvReader {
            input,
            buf: vec![0; READ_SIZE],
            pos: 0,
            filled: 0,
            eof: false,
            started: false,
            core,
            unquoted: vec![0; 1024],
            ends: vec![0; 64],
            held: Held::Unquoted,
            spans: Vec::new(),
            record_line: 1,
            line: 1,
            roles: roles(csv_opts),
            delimiter: csv_opts.delimiter,
            quote: csv_opts.quote,
            has_cr: true,
            quotes: 0,
            name: opts.name.clone(),
            file_columns: Vec::new(),
            columns: Vec::new(),
            indices: Vec::new(),
            types: Vec::new(),
            unit: opts.timestamp_unit,
            null: csv_opts.null.clone(),
            policy: opts.on_error,
            skipped: SkipReport::default(),
            replay: false,
            quoting: true,
        };
        let first = this.read_next()?;
        let file_columns = match (&csv_opts.names, first) {
            (Some(names), true) => {
                this.replay = !csv_opts.header;
                names.clone()
            }
            (Some(names), false) => names.clone(),
            (None, true) if csv_opts.header => this.header_names()?,
            (None, true) => {
                this.replay = true;
                (1..=this.spans.len()).map(|i| format!("c{i}")).collect()
            }
            (None, false) => Vec::new(),
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

    /// The current record's bytes.
    fn record(&self) -> &[u8] {
        match self.held {
            Held::Line(start) => &self.buf[start..],
            Held::Unquoted => &self.unquoted,
        }
    }

    /// Field `i` of the current record.
    fn field(&self, i: usize) -> &[u8] {
        let (a, b) = self.spans[i];
        &self.record()[a..b]
    }

    fn header_names(&self) -> Result<Vec<String>, FormatError> {
        (0..self.spans.len())
            .map(|i| {
                std::str::from_utf8(self.field(i))
                    .map(str::to_owned)
                    .map_err(|e| {
                        FormatError::data(
                            Location::file(&self.name)
                                .at_line(self.record_line)
                                .at_field(i, None),
                            format!(
                                "the header is not valid UTF-8 (invalid byte at offset {})",
                                e.valid_up_to()
                            ),
                        )
                    })
            })
            .collect()
    }

    /// Reads more input after the bytes not consumed yet (moved to the front of the buffer,
    /// which doubles when they fill it).
    fn refill(&mut self) -> Result<(), FormatError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.filled += n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FormatError::io(&self.name, e)),
            }
        }
        self.has_cr = memchr::memchr(b'\r', &self.buf[self.pos..self.filled]).is_some();
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let head = &self.buf[..self.filled];
        if !self.started && (head.len() >= 3 || self.eof || !BOM.starts_with(head)) {
            // A byte-order mark is not part of the first field (as `csv_core` strips it).
            // Until three bytes are in, nothing is consumed: a BOM's bytes end no line.
            self.started = true;
            if head.starts_with(BOM) {
                self.pos = 3;
            }
        }
        Ok(())
    }

    /// Reads the next record; `false` at the end of the input. An unterminated quoted field
    /// at the end is an error.
    ///
    /// One pass over a plain line finds its delimiters and its end: a table gives each byte
    /// its role, so the loop does one load and one compare per byte.
    fn read_next(&mut self) -> Result<bool, FormatError> {
        loop {
            let start = self.pos;
            let buf = &self.buf[..self.filled];
            self.spans.clear();
            let mut field = start;
            let mut j = start;
            if self.has_cr {
                while j < buf.len() {
                    match self.roles[usize::from(buf[j])] {
                        Role::Plain => j += 1,
                        Role::Delimiter => {
                            self.spans.push((field - start, j - start));
                            j += 1;
                            field = j;
                        }
                        Role::Special => break,
                    }
                }
            } else {
                // Without a `\r` in the buffer the special bytes are three: memchr finds them
                // 32 bytes at a time.
                j = buf.len();
                for k in memchr::memchr3_iter(self.delimiter, b'\n', self.quote, &buf[start..]) {
                    let k = start + k;
                    if self.roles[usize::from(buf[k])] == Role::Delimiter {
                        self.spans.push((field - start, k - start));
                        field = k + 1;
                    } else {
                        j = k;
                        break;
                    }
                }
            }
            if j == buf.len() {
                if !self.eof {
                    self.refill()?;
                    continue;
                }
                if j == start {
                    return Ok(false);
                }
                // The last line, without a line end.
                self.spans.push((field - start, j - start));
                self.pos = j;
                self.held = Held::Line(start);
                self.record_line = self.line;
                return Ok(true);
            }
            let next = match buf[j] {
                b'\n' => j + 1,
                b'\r' if j + 1 < buf.len() && buf[j + 1] == b'\n' => j + 2,
                b'\r' if j + 1 == buf.len() && !self.eof => {
                    // Whether a `\n` follows is in the next read.
                    self.refill()?;
                    continue;
                }
                // A quote or a lone `\r`.
                _ => return self.read_quoted(),
            };
            self.pos = next;
            self.record_line = self.line;
            self.line += 1;
            if j == start {
                // Empty lines are skipped, as the `csv` crate does.
                continue;
            }
            self.spans.push((field - start, j - start));
            self.held = Held::Line(start);
            return Ok(true);
        }
    }

    /// Reads the next record through `csv_core` (a line with quotes or a lone `\r`).
    fn read_quoted(&mut self) -> Result<bool, FormatError> {
        use csv_core::ReadRecordResult as R;
        let (mut nout, mut nend) = (0, 0);
        self.record_line = self.line;
        loop {
            if self.pos == self.filled && !self.eof {
                self.refill()?;
                continue;
            }
            let input = &self.buf[self.pos..self.filled];
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut self.unquoted[nout..], &mut self.ends[nend..]);
            let consumed = &input[..nin];
            self.quotes += memchr::memchr_iter(self.quote, consumed).count() as u64;
            self.line += memchr::memchr_iter(b'\n', consumed).count() as u64;
            self.pos += nin;
            nout += o;
            nend += e;
            match res {
                R::InputEmpty => {}
                R::OutputFull => {
                    let n = self.unquoted.len() * 2;
                    self.unquoted.resize(n, 0);
                }
                R::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                R::Record => break,
                R::End => return Ok(false),
            }
        }
        self.held = Held::Unquoted;
        self.spans.clear();
        let mut a = 0;
        for &b in &self.ends[..nend] {
            self.spans.push((a, b));
            a = b;
        }
        let at_end = self.eof && self.pos == self.filled;
        if self.quoting && at_end && !self.quotes.is_multiple_of(2) {
            // Once reported, the rest of the input is that one field: stop checking.
            self.quoting = false;
            let field = self.spans.len().saturating_sub(1);
            return Err(FormatError::data(
                Location::file(&self.name)
                    .at_line(self.record_line)
                    .at_field(field, self.file_columns.get(field).map(String::as_str)),
                format!(
                    "unbalanced quote: a field opened with {} is not closed before the end of the input",
                    char::from(self.quote)
                ),
            ));
        }
        Ok(true)
    }

    fn convert(&mut self, row: &mut Vec<Value>) -> Result<(), FormatError> {
        let line = self.record_line;
        if self.spans.len() != self.file_columns.len() {
            return Err(FormatError::data(
                Location::file(&self.name).at_line(line),
                format!(
                    "expected {} fields ({}), found {}",
                    self.file_columns.len(),
                    preview(&self.file_columns),
                    self.spans.len()
                ),
            ));
        }
        row.resize(self.columns.len(), Value::Null);
        let record = self.record();
        let end = self.spans.last().map_or(0, |s| s.1);
        // One UTF-8 check for the whole record; fields are cut from it at their spans.
        let text = std::str::from_utf8(&record[..end]).ok();
        for (k, slot) in row.iter_mut().enumerate() {
            let i = self.indices[k];
            let (a, b) = self.spans[i];
            let field = match text.and_then(|t| t.get(a..b)) {
                Some(f) => f,
                None => std::str::from_utf8(&record[a..b]).map_err(|e| {
                    FormatError::data(
                        Location::file(&self.name)
                            .at_line(line)
                            .at_field(i, Some(&self.columns[k])),
                        format!(
                            "invalid UTF-8 (byte {} of the field); expected UTF-8 text",
                            e.valid_up_to() + 1
                        ),
                    )
                })?,
            };
            if self.null.as_deref() == Some(field) {
                *slot = Value::Null;
                continue;
            }
            let ty = self.types[k];
            if parse_fast(field, ty, slot) {
                continue;
            }
            parse_typed(field, ty, self.unit, slot).map_err(|m| {
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

/// Parses the common forms of text, integers and floats straight into `slot`; `false` leaves
/// the field to [`parse_typed`] (every other type, spaces, exponents, long numbers, errors).
fn parse_fast(s: &str, ty: Type, slot: &mut Value) -> bool {
    match ty {
        Type::Text => {
            slot.set_text(s);
            true
        }
        Type::Integer => match parse_int(s.as_bytes()) {
            Some(i) => {
                *slot = Value::Int(i);
                true
            }
            None => false,
        },
        Type::Float => match parse_float(s.as_bytes()) {
            Some(f) => {
                *slot = Value::Float(f);
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// An optional sign and 1–18 digits (never overflows an `i64`).
fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + i64::from(d);
    }
    Some(if neg { -n } else { n })
}

/// Exact powers of ten as `f64` (all up to 10^22 are).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `[sign]digits[.digits]` with at most 15 digits in all: the digits as an integer are exact
/// in an `f64`, and so is the power of ten, so one division rounds correctly (Clinger's fast
/// path, the first step of every exact float parser).
fn parse_float(b: &[u8]) -> Option<f64> {
    let (neg, rest) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    let mut m: u64 = 0;
    let mut digits = 0usize;
    let mut frac: Option<usize> = None;
    for &c in rest {
        match c {
            b'0'..=b'9' => {
                m = m * 10 + u64::from(c - b'0');
                digits += 1;
                if digits > 15 {
                    return None;
                }
                if let Some(f) = frac.as_mut() {
                    *f += 1;
                }
            }
            b'.' if frac.is_none() => frac = Some(0),
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    let v = m as f64 / POW10[frac.unwrap_or(0)];
    Some(if neg { -v } else { v })
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
            let got = if std::mem::take(&mut self.replay) {
                Ok(true)
            } else {
                self.read_next()
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

    /// Hands out its bytes a few at a time, so records straddle every buffer boundary.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The fast path (plain lines split in place) and the quoted path (`csv_core`) together
    /// give exactly the records the `csv` crate gives, whatever the read sizes.
    #[test]
    fn splits_like_the_csv_crate() {
        let cases: &[&str] = &[
            "a,b\n1,2\n",
            "a,b\n1,2",
            "a,b\r\n1,2\r\n3,4",
            "a,b\n\n\n1,2\n\r\n3,4\n",
            "a,b\n\"x,y\",2\n\"q\"\"q\",\"\"\n",
            "a,b\n\"multi\nline\",2\nplain,3\n",
            "a,b\n1,x\"y\n\"a\"b,c\n",
            "a,b\rc,d\r1,2\n",
            "a,b\n1,\"ends with cr\r\"\r\n3,4",
            "\u{feff}a,b\nv,w\n",
            "a,b\n,\n\"\",\"\"\n",
            "h1,h2\n\u{e9}t\u{e9},\"\u{e9},\"\n",
        ];
        for case in cases {
            let mut want = Vec::new();
            let mut raw = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(case.as_bytes());
            let mut rec = csv::ByteRecord::new();
            while raw.read_byte_record(&mut rec).unwrap() {
                want.push(
                    rec.iter()
                        .map(|f| Value::Text(String::from_utf8(f.to_vec()).unwrap()))
                        .collect::<Vec<_>>(),
                );
            }
            let csv_opts = CsvOptions {
                header: false,
                ..CsvOptions::default()
            };
            for step in [1, 2, 3, 7, 4096] {
                let mut r = CsvReader::new(
                    Trickle(case.as_bytes(), step),
                    &csv_opts,
                    &ReadOptions::named("t.csv"),
                )
                .unwrap();
                let mut got = Vec::new();
                let mut row = Vec::new();
                while r.next_row(&mut row).unwrap() {
                    got.push(row.clone());
                }
                assert_eq!(got, want, "{case:?} read {step} bytes at a time");
            }
        }
    }

    /// The fast number parsers agree with `str::parse` wherever they answer, and leave the
    /// rest (signs and spaces aside) to it.
    #[test]
    fn fast_numbers_parse_like_std() {
        for s in [
            "0",
            "-0",
            "+7",
            "42",
            "-9223372036854775",
            "123456789012345678",
            "1234567890123456789",
            "",
            "-",
            "1a",
            " 1",
            "1 ",
            "0x10",
            "١",
        ] {
            if let Some(i) = parse_int(s.as_bytes()) {
                assert_eq!(Some(i), s.parse::<i64>().ok(), "{s:?}");
            }
        }
        assert_eq!(
            parse_int(b"123456789012345678"),
            Some(123_456_789_012_345_678)
        );
        assert_eq!(parse_int(b"1234567890123456789"), None);
        for s in [
            "0",
            "-0",
            "0.1",
            "1428.57",
            "-3.25",
            ".5",
            "5.",
            "+1.5",
            "123456789012345",
            "0.000000000000001",
            "1234567890123456",
            "1e5",
            ".",
            "",
            "-",
            "1.2.3",
            "nan",
            "inf",
            "9007199254740993",
        ] {
            if let Some(f) = parse_float(s.as_bytes()) {
                let want: f64 = s.parse().unwrap();
                assert_eq!(f.to_bits(), want.to_bits(), "{s:?}");
            }
        }
        assert_eq!(parse_float(b"1428.57"), Some(1428.57));
        assert_eq!(parse_float(b"."), None);
        assert_eq!(parse_float(b"1e5"), None);
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
