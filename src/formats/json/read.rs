//! The JSON and NDJSON row sources.

use std::io::{BufRead, BufReader, Read};

use super::object::ObjectParser;
use super::scanner::Scanner;
use crate::formats::error::{FormatError, Location, OnError, SkipReport, skip_or_fail};
use crate::formats::options::ReadOptions;
use crate::formats::row::{RowSource, Value};

/// A row source over a JSON array of objects.
pub struct JsonReader<R: Read> {
    scan: Scanner<R>,
    parser: ObjectParser,
    buf: Vec<u8>,
    first: Option<Vec<Value>>,
    columns: Vec<String>,
    started: bool,
    done: bool,
    policy: OnError,
    skipped: SkipReport,
    full: Vec<Value>,
    keep: Vec<usize>,
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
            parser: ObjectParser::new(opts),
            buf: Vec::new(),
            first: None,
            columns: Vec::new(),
            started: false,
            done: false,
            policy: opts.on_error,
            skipped: SkipReport::default(),
            full: Vec::new(),
            keep: Vec::new(),
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
        if !this.parser.learn {
            this.parser
                .read_opts
                .check_types("json", &this.parser.columns)?;
            this.parser.types = this.parser.read_opts.types_for(&this.parser.columns);
        }
        let mut row = Vec::new();
        loop {
            match this.read_object(&mut row) {
                Ok(true) => {
                    this.first = Some(std::mem::take(&mut this.full));
                    break;
                }
                Ok(false) => break,
                Err(e) if this.parser.learned || !this.parser.learn => {
                    skip_or_fail(this.policy, &mut this.skipped, e)?
                }
                Err(e) => return Err(e),
            }
        }
        this.columns = this.parser.visible();
        this.keep = (0..this.parser.columns.len())
            .filter(|&i| !this.parser.exclude.contains(&this.parser.columns[i]))
            .collect();
        Ok(this)
    }

    /// Reads the next object into `self.full` (all columns). False at the closing `]`.
    fn read_object(&mut self, _row: &mut Vec<Value>) -> Result<bool, FormatError> {
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
        let mut full = std::mem::take(&mut self.full);
        let r = self.parser.parse(&self.buf, line, col, &mut full);
        self.full = full;
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
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        if let Some(full) = self.first.take() {
            self.full = full;
        } else {
            loop {
                match self.read_object(row) {
                    Ok(true) => break,
                    Ok(false) => return Ok(false),
                    Err(e) => skip_or_fail(self.policy, &mut self.skipped, e)?,
                }
            }
        }
        pick(&self.full, &self.keep, row);
        Ok(true)
    }

    fn skipped(&self) -> Option<&SkipReport> {
        Some(&self.skipped)
    }

    fn name(&self) -> &str {
        &self.parser.name
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
    parser: ObjectParser,
    buf: Vec<u8>,
    line: u64,
    first: Option<Vec<Value>>,
    full: Vec<Value>,
    columns: Vec<String>,
    keep: Vec<usize>,
    policy: OnError,
    skipped: SkipReport,
}

impl<R: Read> NdjsonReader<R> {
    /// Opens an NDJSON source and reads its first object to learn the columns.
    pub fn new(input: R, opts: &ReadOptions) -> Result<Self, FormatError> {
        let mut this = NdjsonReader {
            input: BufReader::with_capacity(64 * 1024, input),
            parser: ObjectParser::new(opts),
            buf: Vec::new(),
            line: 0,
            first: None,
            full: Vec::new(),
            columns: Vec::new(),
            keep: Vec::new(),
            policy: opts.on_error,
            skipped: SkipReport::default(),
        };
        if !this.parser.learn {
            this.parser
                .read_opts
                .check_types("ndjson", &this.parser.columns)?;
            this.parser.types = this.parser.read_opts.types_for(&this.parser.columns);
        }
        loop {
            match this.read_line() {
                Ok(true) => {
                    this.first = Some(std::mem::take(&mut this.full));
                    break;
                }
                Ok(false) => break,
                Err(e) if this.parser.learned || !this.parser.learn => {
                    skip_or_fail(this.policy, &mut this.skipped, e)?
                }
                Err(e) => return Err(e),
            }
        }
        this.columns = this.parser.visible();
        this.keep = (0..this.parser.columns.len())
            .filter(|&i| !this.parser.exclude.contains(&this.parser.columns[i]))
            .collect();
        Ok(this)
    }

    fn read_line(&mut self) -> Result<bool, FormatError> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| FormatError::io(&self.parser.name, e))?;
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
                    Location::file(&self.parser.name)
                        .at_line(self.line)
                        .at_column(col),
                    "expected an object (one row per line)",
                ));
            }
            let mut full = std::mem::take(&mut self.full);
            let start = self.buf.len() - self.buf.trim_ascii_start().len();
            let end = start + text.len();
            let r = self
                .parser
                .parse(&self.buf[start..end], self.line, col, &mut full);
            self.full = full;
            return r.map(|_| true);
        }
    }
}

impl<R: Read> RowSource for NdjsonReader<R> {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        if let Some(full) = self.first.take() {
            self.full = full;
        } else {
            loop {
                match self.read_line() {
                    Ok(true) => break,
                    Ok(false) => return Ok(false),
                    Err(e) => skip_or_fail(self.policy, &mut self.skipped, e)?,
                }
            }
        }
        pick(&self.full, &self.keep, row);
        Ok(true)
    }

    fn skipped(&self) -> Option<&SkipReport> {
        Some(&self.skipped)
    }

    fn name(&self) -> &str {
        &self.parser.name
    }
}
