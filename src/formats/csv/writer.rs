//! The CSV writer: fields quoted when the `csv` crate would quote them (`csv_core`'s rule), and
//! also when a value's text equals the null marker, so that it does not read back as null.

use std::io::{self, Write};

use crate::formats::error::FormatError;
use crate::formats::options::CsvOptions;
use crate::formats::row::{RowSink, Value};
use crate::formats::text::TextFormatter;

/// Bytes gathered before they are written to the output.
const BLOCK: usize = 64 * 1024;

/// CSV records into a buffer that goes to the output in blocks of [`BLOCK`] bytes.
///
/// The `csv` crate's writer cannot quote one field on demand, which a value equal to the null
/// marker needs; this one writes the fields itself and asks `csv_core` only whether a field
/// needs quotes, so the output stays byte for byte the `csv` crate's otherwise.
struct Records<W: Write> {
    out: W,
    buf: Vec<u8>,
    /// Where the current record starts in `buf`.
    record: usize,
    /// Fields written in the current record.
    fields: usize,
    /// Which fields need quotes (`csv_core`'s `QuoteStyle::Necessary`).
    rules: csv_core::Writer,
    delimiter: u8,
    quote: u8,
    terminator: &'static [u8],
}

impl<W: Write> Records<W> {
    fn new(out: W, opts: &CsvOptions) -> Self {
        let rules = csv_core::WriterBuilder::new()
            .delimiter(opts.delimiter)
            .quote(opts.quote)
            .terminator(if opts.crlf {
                csv_core::Terminator::CRLF
            } else {
                csv_core::Terminator::Any(b'\n')
            })
            .build();
        Records {
            out,
            buf: Vec::with_capacity(BLOCK + 4096),
            record: 0,
            fields: 0,
            rules,
            delimiter: opts.delimiter,
            quote: opts.quote,
            terminator: if opts.crlf { b"\r\n" } else { b"\n" },
        }
    }

    /// Adds a field to the current record, in quotes when `quote` or when its bytes need them.
    fn field(&mut self, bytes: &[u8], quote: bool) {
        if self.fields > 0 {
            self.buf.push(self.delimiter);
        }
        self.fields += 1;
        if !quote && !self.rules.should_quote(bytes) {
            self.buf.extend_from_slice(bytes);
            return;
        }
        self.buf.push(self.quote);
        let mut rest = bytes;
        // A quote inside the field is doubled.
        while let Some(i) = memchr::memchr(self.quote, rest) {
            self.buf.extend_from_slice(&rest[..=i]);
            self.buf.push(self.quote);
            rest = &rest[i + 1..];
        }
        self.buf.extend_from_slice(rest);
        self.buf.push(self.quote);
    }

    /// Ends the current record, and writes the buffer out once it holds a block.
    fn end_record(&mut self) -> io::Result<()> {
        if self.buf.len() == self.record {
            // A record without a byte would be a blank line, which readers skip: like the
            // `csv` crate, write one empty quoted field.
            self.buf.extend_from_slice(&[self.quote, self.quote]);
        }
        self.buf.extend_from_slice(self.terminator);
        self.fields = 0;
        if self.buf.len() >= BLOCK {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.record = self.buf.len();
        Ok(())
    }

    /// Writes out what is buffered and flushes the output.
    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.record = 0;
        self.out.flush()
    }

    /// The output, after what is buffered was written to it.
    fn into_inner(mut self) -> io::Result<W> {
        self.out.write_all(&self.buf)?;
        Ok(self.out)
    }
}

/// A CSV row sink. Column choice, renaming and timestamps are applied by wrapping it in a
/// [`crate::formats::ProjectedSink`].
///
/// Null is written as the null marker (option `null`, default empty) without quotes; any other
/// value whose text equals the marker is quoted (`""` for an empty string), as PostgreSQL's
/// `COPY ... (FORMAT csv)` does, so the two read back apart.
pub struct CsvWriter<W: Write> {
    /// `None` once the output went to a source's bulk path (`raw`).
    wtr: Option<Records<W>>,
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
        Ok(CsvWriter {
            wtr: Some(Records::new(out, opts)),
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

    fn wtr(&mut self) -> Result<&mut Records<W>, FormatError> {
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
            let wtr = self.wtr()?;
            for c in columns {
                wtr.field(c.as_bytes(), false);
            }
            let r = wtr.end_record();
            r.map_err(|e| FormatError::io(&self.name, e))?;
        }
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        let Some(wtr) = self.wtr.as_mut() else {
            return self.wtr().map(|_| ());
        };
        for v in row {
            match self.fmt.format(v) {
                Some(bytes) => wtr.field(bytes, bytes == self.null.as_slice()),
                None => wtr.field(&self.null, false),
            }
        }
        wtr.end_record().map_err(|e| FormatError::io(&self.name, e))
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

impl<W: Write> Drop for CsvWriter<W> {
    /// A writer dropped without `finish` still writes out what it buffered, as the `csv`
    /// crate's writer does (errors cannot be reported here).
    fn drop(&mut self) {
        if let Some(w) = self.wtr.as_mut()
            && !self.finished
        {
            let _ = w.flush();
        }
    }
}
