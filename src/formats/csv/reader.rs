//! The CSV reader: plain lines are split where they lie in the buffer, lines with quotes go
//! through `csv_core`, which also says (field by field) which fields were quoted.
//!
//! `csv_core` accepts an unterminated quoted field by running it to the end of the input.
//! The reader catches that case: it counts the quote characters of the quoted lines, and a
//! record that ends at the end of the input with an odd count so far is reported as an
//! unbalanced quote instead of being returned.

use std::io::{self, Read};

use super::number::parse_number;
use super::split::{Stops, split_line};
use crate::formats::error::{FormatError, Location, OnError, SkipReport, skip_or_fail};
use crate::formats::options::{CsvOptions, ReadOptions, TimestampUnit, Type};
use crate::formats::projection::Projection;
use crate::formats::row::{RowSource, Value};
use crate::formats::text::parse_typed;

/// Bytes read from the input at a time (the buffer grows for a longer record).
const READ_SIZE: usize = 256 * 1024;

/// What a byte means to the plain-line splitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
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
/// (one pass over their bytes finds the delimiters and the line end) without copying them. A
/// line with a quote, a lone carriage return or anything else unusual goes through `csv_core`,
/// the state machine under the `csv` crate, so quoting follows the `csv` crate's rules exactly.
/// Integers and floats in their common forms are parsed from the field's bytes; the record's
/// bytes are checked for UTF-8 once, when a field first needs text.
///
/// A field equal to the null marker (option `null`, default the empty string) is null unless
/// it was quoted: `a,,""` reads as `a`, null, the empty string.
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
    /// The slow path's record: whether each field was quoted (a quoted field is never null).
    /// Empty when no field equals the null marker (then it does not matter).
    quoted: Vec<bool>,
    /// Where the raw bytes of the record the slow path reads start in `buf` (`usize::MAX`
    /// outside the slow path): `refill` keeps them.
    keep: usize,
    /// A second `csv_core` reader, which reads a record again field by field to learn which
    /// fields were quoted (built on first use: building costs as much as reading a few
    /// hundred lines), and room for its output.
    requote: Option<csv_core::Reader>,
    scratch: Vec<u8>,
    /// The current record: where its bytes are and each field's span in them.
    held: Held,
    spans: Vec<(usize, usize)>,
    /// The line the current record starts on, and the line the input is at (1-based).
    record_line: u64,
    line: u64,
    /// Each byte's role in a plain line.
    roles: [Role; 256],
    quote: u8,
    delimiter: u8,
    /// The bytes that stop the splitter, for its 16-byte compares.
    stops: Stops,
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
    /// The null marker: a field equal to it that was not quoted is null.
    null: String,
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
        let core = parser(csv_opts.delimiter, csv_opts.quote);
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
            quoted: Vec::new(),
            keep: usize::MAX,
            requote: None,
            scratch: Vec::new(),
            held: Held::Unquoted,
            spans: Vec::new(),
            record_line: 1,
            line: 1,
            roles: roles(csv_opts),
            quote: csv_opts.quote,
            delimiter: csv_opts.delimiter,
            stops: Stops::new(csv_opts.delimiter, csv_opts.quote),
            quotes: 0,
            name: opts.name.clone(),
            file_columns: Vec::new(),
            columns: Vec::new(),
            indices: Vec::new(),
            types: Vec::new(),
            unit: opts.timestamp_unit,
            null: csv_opts.null.clone().unwrap_or_default(),
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
        // The slow path keeps the raw bytes of the record it reads (`keep`).
        let from = self.keep.min(self.pos);
        if from > 0 {
            self.buf.copy_within(from..self.filled, 0);
            self.filled -= from;
            self.pos -= from;
            self.keep = self.keep.saturating_sub(from);
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
    /// One pass over a plain line finds its delimiters and its end, 16 bytes at a time
    /// ([`split_line`]).
    fn read_next(&mut self) -> Result<bool, FormatError> {
        loop {
            let start = self.pos;
            let buf = &self.buf[..self.filled];
            self.spans.clear();
            let (j, field) = split_line(buf, start, &self.stops, &self.roles, &mut self.spans);
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

    /// Reads the next record through `csv_core` (a line with quotes or a lone `\r`), and when a
    /// field equals the null marker, which of the fields were quoted ([`Self::find_quoted`]).
    fn read_quoted(&mut self) -> Result<bool, FormatError> {
        use csv_core::ReadRecordResult as R;
        let (mut nout, mut nend) = (0, 0);
        self.record_line = self.line;
        self.keep = self.pos;
        // The bytes consumed from here on are not counted yet (see `tally`).
        let mut from = self.pos;
        loop {
            if self.pos == self.filled && !self.eof {
                self.tally(from);
                self.refill()?;
                from = self.pos;
                continue;
            }
            let input = &self.buf[self.pos..self.filled];
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut self.unquoted[nout..], &mut self.ends[nend..]);
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
                R::End => {
                    self.tally(from);
                    self.keep = usize::MAX;
                    return Ok(false);
                }
            }
        }
        self.tally(from);
        let mut start = 0;
        let marker = self.null.as_bytes();
        let has_marker = self.ends[..nend].iter().any(|&end| {
            let hit = &self.unquoted[start..end] == marker;
            start = end;
            hit
        });
        self.quoted.clear();
        if has_marker {
            self.find_quoted(nend);
        }
        self.keep = usize::MAX;
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

    /// Reads the raw bytes of the record just read (`buf[keep..pos]`) again, one field end per
    /// `csv_core` call, and notes in `quoted` whether each of its `fields` was quoted.
    ///
    /// `csv_core` does not say whether a field was quoted, but it reads a field as quoted
    /// exactly when the field's first byte is the quote. Given room for one field end, each
    /// call starts at a field's first byte or inside a field, so the first byte a field
    /// consumes is looked at (past the line ends `csv_core` skips before a record).
    fn find_quoted(&mut self, fields: usize) {
        use csv_core::ReadRecordResult as R;
        // Built, not cloned: csv_core 0.1.13's `Clone` copies only part of the parser's tables.
        let delimiter = self.delimiter;
        let quote = self.quote;
        let requote = self.requote.get_or_insert_with(|| parser(delimiter, quote));
        requote.reset();
        if self.scratch.len() < self.unquoted.len() {
            self.scratch.resize(self.unquoted.len(), 0);
        }
        let mut input = &self.buf[self.keep..self.pos];
        let mut end = [0usize; 1];
        let mut nend = 0;
        let mut starting = true;
        while nend < fields {
            // The output is not needed: every call may write from the start of `scratch`,
            // which holds the whole record.
            let (res, nin, _, e) = requote.read_record(input, &mut self.scratch, &mut end);
            let consumed = &input[..nin];
            input = &input[nin..];
            if starting {
                let first = if nend == 0 {
                    consumed.iter().find(|&&b| b != b'\n' && b != b'\r')
                } else {
                    consumed.first()
                };
                if let Some(&b) = first {
                    self.quoted.push(b == self.quote);
                    starting = false;
                }
            }
            if e > 0 {
                // A field ended. One that consumed no byte (empty, at the end of the input)
                // was not quoted.
                nend += e;
                self.quoted.resize(nend, false);
                starting = true;
            }
            if matches!(res, R::Record | R::End) || (nin == 0 && e == 0 && !input.is_empty()) {
                break;
            }
        }
    }

    /// Counts the quotes and line ends in the bytes the slow path consumed from `from` on
    /// (once per record or buffer, not once per `csv_core` call).
    fn tally(&mut self, from: usize) {
        let consumed = &self.buf[from..self.pos];
        self.quotes += memchr::memchr_iter(self.quote, consumed).count() as u64;
        self.line += memchr::memchr_iter(b'\n', consumed).count() as u64;
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
        if row.len() != self.columns.len() {
            row.resize(self.columns.len(), Value::Null);
        }
        let record = self.record();
        let end = self.spans.last().map_or(0, |s| s.1);
        // One UTF-8 check for the whole record, made when a field first needs text (numbers
        // in their common forms are read from the bytes); fields are cut from it.
        let mut text: Option<Option<&str>> = None;
        // Plain lines have no quoted field.
        let quoted: &[bool] = match self.held {
            Held::Line(_) => &[],
            Held::Unquoted => &self.quoted,
        };
        for (k, slot) in row.iter_mut().enumerate() {
            let i = self.indices[k];
            let (a, b) = self.spans[i];
            let bytes = &record[a..b];
            if bytes == self.null.as_bytes() && quoted.get(i) != Some(&true) {
                *slot = Value::Null;
                continue;
            }
            let ty = self.types[k];
            // Numbers in their common forms are read from the bytes: they need no UTF-8 check.
            if parse_number(bytes, ty, slot) {
                continue;
            }
            let whole = *text.get_or_insert_with(|| record_text(&record[..end]));
            let field = match whole.and_then(|t| t.get(a..b)) {
                Some(f) => f,
                None => std::str::from_utf8(bytes).map_err(|e| {
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
            if ty == Type::Text {
                // As `Value::set_text`, inlined in this loop.
                match slot {
                    Value::Text(t) => {
                        t.clear();
                        t.push_str(field);
                    }
                    other => other.set_text(field),
                }
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

/// `csv_core`'s parser for this delimiter and quote.
fn parser(delimiter: u8, quote: u8) -> csv_core::Reader {
    csv_core::ReaderBuilder::new()
        .delimiter(delimiter)
        .quote(quote)
        .build()
}

/// The record's bytes as text, `None` when they are not UTF-8. Most records are ASCII, which
/// `is_ascii` checks a word at a time, much faster than the general check on short lines.
fn record_text(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

fn preview(cols: &[String]) -> String {
    if cols.len() <= 6 {
        cols.join(", ")
    } else {
        format!("{}, …", cols[..6].join(", "))
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
