//! The JSON and NDJSON row sources.

use std::io::{BufRead, BufReader, Read};

use super::object::ObjectParser;
use super::scanner::Scanner;
use crate::formats::error::{FormatError, Location, OnError, SkipReport, skip_or_fail};
use crate::formats::options::ReadOptions;
use crate::formats::row::{RowSource, Value};

/// What both readers keep: the object parser, the first object read ahead (to learn the
/// columns), the row being read with every column, the visible columns and their positions,
/// and the rows skipped under `on_error = "continue"`.
struct Objects {
    parser: ObjectParser,
    first: Option<Vec<Value>>,
    full: Vec<Value>,
    columns: Vec<String>,
    keep: Vec<usize>,
    policy: OnError,
    skipped: SkipReport,
}

impl Objects {
    fn new(opts: &ReadOptions) -> Objects {
        Objects {
            parser: ObjectParser::new(opts),
            first: None,
            full: Vec::new(),
            columns: Vec::new(),
            keep: Vec::new(),
            policy: opts.on_error,
            skipped: SkipReport::default(),
        }
    }

    /// Checks the declared types (when the columns are given), then reads ahead to the first
    /// object (`read` reads the next one into `full`; false at the end), skipping bad ones
    /// under the error policy once the columns are known, and settles the visible columns.
    fn read_ahead<S>(
        src: &mut S,
        format: &'static str,
        objects: fn(&mut S) -> &mut Objects,
        read: fn(&mut S) -> Result<bool, FormatError>,
    ) -> Result<(), FormatError> {
        let o = objects(src);
        if !o.parser.learn {
            o.parser.read_opts.check_types(format, &o.parser.columns)?;
            o.parser.types = o.parser.read_opts.types_for(&o.parser.columns);
        }
        loop {
            let got = read(src);
            let o = objects(src);
            match got {
                Ok(true) => {
                    o.first = Some(std::mem::take(&mut o.full));
                    break;
                }
                Ok(false) => break,
                Err(e) if o.parser.learned || !o.parser.learn => {
                    skip_or_fail(o.policy, &mut o.skipped, e)?
                }
                Err(e) => return Err(e),
            }
        }
        let o = objects(src);
        o.columns = o.parser.visible();
        o.keep = (0..o.parser.columns.len())
            .filter(|&i| !o.parser.exclude.contains(&o.parser.columns[i]))
            .collect();
        Ok(())
    }

    /// The next row of a reader: the object read ahead first, then the ones `read` reads,
    /// skipping bad ones under the error policy; the visible columns go into `row`.
    fn next_row<S>(
        src: &mut S,
        objects: fn(&mut S) -> &mut Objects,
        read: fn(&mut S) -> Result<bool, FormatError>,
        row: &mut Vec<Value>,
    ) -> Result<bool, FormatError> {
        let o = objects(src);
        if let Some(full) = o.first.take() {
            o.full = full;
        } else {
            loop {
                let got = read(src);
                let o = objects(src);
                match got {
                    Ok(true) => break,
                    Ok(false) => return Ok(false),
                    Err(e) => skip_or_fail(o.policy, &mut o.skipped, e)?,
                }
            }
        }
        let o = objects(src);
        pick(&o.full, &o.keep, row);
        Ok(true)
    }
}

/// A row source over a JSON array of objects.
pub struct JsonReader<R: Read> {
    scan: Scanner<R>,
    obj: Objects,
    buf: Vec<u8>,
    started: bool,
    done: bool,
}

impl<R: Read> JsonReader<R> {
    /// Opens a JSON array source and reads its first object to learn the columns.
    pub fn new(input: R, opts: &ReadOptions) -> Result<Self, FormatError> {
        let mut this = JsonReader {
            scan: Scanner {
                inner: BufReader::with_capacity(64 * 1024, input),
                line: 1,
                col: 1,
                name: opts.name.clone(),
            },
            obj: Objects::new(opts),
            buf: Vec::new(),
            started: false,
            done: false,
        };
        match this.scan.skip_ws()? {
            Some(b'[') => this.scan.bump(b'['),
            Some(_) => {
                return Err(FormatError::data(
                    this.scan.here(),
                    "expected a JSON array of objects (`[`); for one object per line use ndjson",
                ));
            }
            None => {
                return Err(FormatError::data(
                    this.scan.here(),
                    "empty input; expected a JSON array of objects",
                ));
            }
        }
        Objects::read_ahead(&mut this, "json", |r| &mut r.obj, Self::read_object)?;
        Ok(this)
    }

    /// Reads the next object into `self.obj.full` (all columns). False at the closing `]`.
    fn read_object(&mut self) -> Result<bool, FormatError> {
        if self.done {
            return Ok(false);
        }
        let b = self.scan.skip_ws()?;
        if self.started {
            match b {
                Some(b',') => {
                    self.scan.bump(b',');
                }
                Some(b']') => return self.close(),
                Some(_) => {
                    self.done = true;
                    return Err(FormatError::data(
                        self.scan.here(),
                        "expected `,` or `]` after an object",
                    ));
                }
                None => {
                    self.done = true;
                    return Err(FormatError::data(
                        self.scan.here(),
                        "unexpected end of input; expected `,` or `]`",
                    ));
                }
            }
        } else if b == Some(b']') {
            return self.close();
        }
        self.started = true;
        match self.scan.skip_ws()? {
            Some(b'{') => {}
            Some(_) => {
                let at = self.scan.here();
                // Skip the value so that reading can go on under `continue`.
                self.skip_value()?;
                return Err(FormatError::data(at, "expected an object (one row)"));
            }
            None => {
                self.done = true;
                return Err(FormatError::data(
                    self.scan.here(),
                    "unexpected end of input; expected an object",
                ));
            }
        }
        let (line, col) = (self.scan.line, self.scan.col);
        if let Err(e) = self.scan.take_object(&mut self.buf) {
            self.done = true;
            return Err(e);
        }
        let mut full = std::mem::take(&mut self.obj.full);
        let r = self.obj.parser.parse(&self.buf, line, col, &mut full);
        self.obj.full = full;
        r.map(|_| true)
    }

    fn skip_value(&mut self) -> Result<(), FormatError> {
        match self.scan.peek()? {
            Some(b'[') => self.scan.take_object(&mut self.buf),
            _ => {
                while let Some(b) = self.scan.peek()? {
                    if b == b',' || b == b']' {
                        break;
                    }
                    self.scan.bump(b);
                }
                Ok(())
            }
        }
    }

    fn close(&mut self) -> Result<bool, FormatError> {
        self.scan.bump(b']');
        self.done = true;
        if self.scan.skip_ws()?.is_some() {
            return Err(FormatError::data(
                self.scan.here(),
                "unexpected characters after the closing `]`",
            ));
        }
        Ok(false)
    }
}

impl<R: Read> RowSource for JsonReader<R> {
    fn columns(&self) -> &[String] {
        &self.obj.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        Objects::next_row(self, |r| &mut r.obj, Self::read_object, row)
    }

    fn skipped(&self) -> Option<&SkipReport> {
        Some(&self.obj.skipped)
    }

    fn name(&self) -> &str {
        &self.obj.parser.name
    }
}

fn pick(full: &[Value], keep: &[usize], row: &mut Vec<Value>) {
    row.resize(keep.len(), Value::Null);
    for (slot, &i) in row.iter_mut().zip(keep) {
        super::super::projection::assign(slot, &full[i]);
    }
}

/// A row source over NDJSON: one object per line; blank lines are skipped.
pub struct NdjsonReader<R: Read> {
    input: BufReader<R>,
    obj: Objects,
    buf: Vec<u8>,
    line: u64,
}

impl<R: Read> NdjsonReader<R> {
    /// Opens an NDJSON source and reads its first object to learn the columns.
    pub fn new(input: R, opts: &ReadOptions) -> Result<Self, FormatError> {
        let mut this = NdjsonReader {
            input: BufReader::with_capacity(64 * 1024, input),
            obj: Objects::new(opts),
            buf: Vec::new(),
            line: 0,
        };
        Objects::read_ahead(&mut this, "ndjson", |r| &mut r.obj, |r| r.read_line())?;
        Ok(this)
    }

    fn read_line(&mut self) -> Result<bool, FormatError> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| FormatError::io(&self.obj.parser.name, e))?;
            if n == 0 {
                return Ok(false);
            }
            self.line += 1;
            let text = self.buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let col = 1 + (self.buf.len() - self.buf.trim_ascii_start().len()) as u64;
            if text.first() != Some(&b'{') {
                return Err(FormatError::data(
                    Location::file(&self.obj.parser.name)
                        .at_line(self.line)
                        .at_column(col),
                    "expected an object (one row per line)",
                ));
            }
            let mut full = std::mem::take(&mut self.obj.full);
            let start = self.buf.len() - self.buf.trim_ascii_start().len();
            let end = start + text.len();
            let r = self
                .obj
                .parser
                .parse(&self.buf[start..end], self.line, col, &mut full);
            self.obj.full = full;
            return r.map(|_| true);
        }
    }
}

impl<R: Read> RowSource for NdjsonReader<R> {
    fn columns(&self) -> &[String] {
        &self.obj.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        Objects::next_row(self, |r| &mut r.obj, Self::read_line, row)
    }

    fn skipped(&self) -> Option<&SkipReport> {
        Some(&self.obj.skipped)
    }

    fn name(&self) -> &str {
        &self.obj.parser.name
    }
}
