//! JSON (one array of objects) and NDJSON (one object per line), both streaming.
//!
//! The JSON reader cuts the top-level array into its elements with a small scanner that
//! tracks strings and nesting, and parses each element on its own with `serde_json`, so memory
//! stays at one object however long the array is, and errors point at the line and column in
//! the whole input. Objects are read straight into the row buffer (keys looked up by name, no
//! intermediate `serde_json::Value`).
//!
//! Columns are the keys of the first object, unless the `columns` option names them (then
//! other keys are ignored). A key missing from an object is null; a key the first object did
//! not have is an error. Nested arrays and objects are kept as their JSON text.

use std::fmt;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::error::{FormatError, Location, OnError, SkipReport, skip_or_fail};
use super::options::{ReadOptions, TimestampUnit, Type};
use super::row::{RowSink, RowSource, Value};
use super::text::{coerce, encode_hex, parse_typed};

/// Turns one JSON object into a row, learning the columns from the first one.
struct ObjectParser {
    name: String,
    columns: Vec<String>,
    /// Learn columns from the first object (no `columns` option).
    learn: bool,
    learned: bool,
    exclude: Vec<String>,
    types: Vec<Type>,
    read_opts: ReadOptions,
    unit: TimestampUnit,
}

impl ObjectParser {
    fn new(opts: &ReadOptions) -> Self {
        let columns = opts.columns.clone().unwrap_or_default();
        ObjectParser {
            name: opts.name.clone(),
            learn: opts.columns.is_none(),
            learned: false,
            types: opts.types_for(&columns),
            columns,
            exclude: opts.exclude.clone(),
            read_opts: opts.clone(),
            unit: opts.timestamp_unit,
        }
    }

    /// Parses `bytes` (one object that starts at `line`:`col` of the input) into `row`.
    fn parse(
        &mut self,
        bytes: &[u8],
        line: u64,
        col: u64,
        row: &mut Vec<Value>,
    ) -> Result<(), FormatError> {
        let learning = self.learn && !self.learned;
        row.clear();
        row.resize(self.columns.len(), Value::Null);
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let mut state = ParseState {
            parser: self,
            row,
            learning,
            error: None,
        };
        let result = (&mut state).deserialize(&mut de).and_then(|_| de.end());
        if let Some(e) = state.error {
            return Err(e.at_line_of(line));
        }
        if let Err(e) = result {
            let (l, c) = (e.line() as u64, e.column() as u64);
            let (line, column) = if l <= 1 {
                (line, col + c.saturating_sub(1))
            } else {
                (line + l - 1, c)
            };
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            return Err(FormatError::data(
                Location::file(&self.name).at_line(line).at_column(column),
                format!("invalid JSON: {msg}"),
            ));
        }
        if learning {
            self.learned = true;
            for ex in &self.exclude {
                if !self.columns.contains(ex) {
                    return Err(FormatError::Option {
                        format: "json",
                        option: "exclude",
                        message: format!(
                            "{}: no column named `{ex}`; the columns are: {}",
                            self.name,
                            self.columns.join(", ")
                        ),
                    });
                }
            }
            self.read_opts.check_types("json", &self.columns)?;
            self.types = self.read_opts.types_for(&self.columns);
            // Values were stored as they came; type them now that the types are known.
            for (k, slot) in row.iter_mut().enumerate() {
                coerce(slot, self.types[k], self.unit)
                    .map_err(|m| field_error(&self.name, line, k, &self.columns[k], m))?;
            }
        }
        Ok(())
    }

    /// Columns after `exclude`, and a row cut down to them.
    fn visible(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| !self.exclude.contains(c))
            .cloned()
            .collect()
    }
}

fn field_error(name: &str, line: u64, k: usize, col: &str, m: String) -> FormatError {
    FormatError::data(Location::file(name).at_line(line).at_field(k, Some(col)), m)
}

/// A deferred row error raised inside the serde visitor (line filled in later).
struct RowIssue {
    field: Option<(usize, String)>,
    message: String,
    name: String,
}

impl RowIssue {
    fn at_line_of(self, line: u64) -> FormatError {
        let mut at = Location::file(&self.name).at_line(line);
        if let Some((k, col)) = &self.field {
            at = at.at_field(*k, Some(col));
        }
        FormatError::data(at, self.message)
    }
}

struct ParseState<'a> {
    parser: &'a mut ObjectParser,
    row: &'a mut Vec<Value>,
    learning: bool,
    error: Option<RowIssue>,
}

impl<'de> DeserializeSeed<'de> for &mut ParseState<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut ParseState<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (one row)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let idx = match self.parser.columns.iter().position(|c| *c == *key) {
                Some(i) => Some(i),
                None if self.learning => {
                    self.parser.columns.push(key.to_string());
                    self.row.push(Value::Null);
                    Some(self.parser.columns.len() - 1)
                }
                None if !self.parser.learn => None,
                None => {
                    self.error = Some(RowIssue {
                        field: None,
                        message: format!(
                            "unexpected key `{key}`: the columns (the keys of the first object) are {}; name the columns to read with the `columns` option",
                            self.parser.columns.join(", ")
                        ),
                        name: self.parser.name.clone(),
                    });
                    return Err(de::Error::custom("unexpected key"));
                }
            };
            match idx {
                Some(k) => {
                    let ty = if self.learning {
                        Type::Text
                    } else {
                        self.parser.types[k]
                    };
                    let seed = SlotSeed {
                        slot: &mut self.row[k],
                        ty,
                        unit: self.parser.unit,
                        learning: self.learning,
                    };
                    if let Err(m) = map.next_value_seed(seed)? {
                        self.error = Some(RowIssue {
                            field: Some((k, self.parser.columns[k].clone())),
                            message: m,
                            name: self.parser.name.clone(),
                        });
                        return Err(de::Error::custom("bad value"));
                    }
                }
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Stores one JSON value in a row slot, typed as told. The inner `Err` is a typing problem.
struct SlotSeed<'a> {
    slot: &'a mut Value,
    ty: Type,
    unit: TimestampUnit,
    learning: bool,
}

impl<'de> DeserializeSeed<'de> for SlotSeed<'_> {
    type Value = Result<(), String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl SlotSeed<'_> {
    fn store(self, v: Value) -> Result<(), String> {
        *self.slot = v;
        if self.learning {
            return Ok(());
        }
        coerce(self.slot, self.ty, self.unit)
    }
}

impl<'de> Visitor<'de> for SlotSeed<'_> {
    type Value = Result<(), String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        *self.slot = Value::Null;
        Ok(Ok(()))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.store(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.store(Value::Int(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(self.store(Value::Int(i))),
            Err(_) => Ok(Err(format!(
                "the integer {v} is larger than the largest 64-bit integer"
            ))),
        }
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self.store(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        if self.learning || self.ty == Type::Text {
            // While learning, typed once the first object is complete (the types are checked
            // against its keys first).
            self.slot.set_text(v);
            return Ok(Ok(()));
        }
        Ok(parse_typed(v, self.ty, self.unit, self.slot))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v: serde_json::Value =
            de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.slot.set_text(&v.to_string());
        Ok(Ok(()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let v: serde_json::Value =
            de::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.slot.set_text(&v.to_string());
        Ok(Ok(()))
    }
}

/// Reads bytes while counting lines and columns.
struct Scanner<R> {
    inner: BufReader<R>,
    line: u64,
    col: u64,
    name: String,
}

impl<R: Read> Scanner<R> {
    fn peek(&mut self) -> Result<Option<u8>, FormatError> {
        let buf = self
            .inner
            .fill_buf()
            .map_err(|e| FormatError::io(&self.name, e))?;
        Ok(buf.first().copied())
    }

    fn bump(&mut self, b: u8) {
        self.inner.consume(1);
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            self.col += 1;
        }
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, FormatError> {
        while let Some(b) = self.peek()? {
            if !b.is_ascii_whitespace() {
                return Ok(Some(b));
            }
            self.bump(b);
        }
        Ok(None)
    }

    fn here(&self) -> Location {
        Location::file(&self.name)
            .at_line(self.line)
            .at_column(self.col)
    }

    /// Copies one value starting at `{` into `out`, up to its matching `}`.
    fn take_object(&mut self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        out.clear();
        let start = self.here();
        let mut depth = 0u32;
        let mut in_str = false;
        let mut escaped = false;
        loop {
            let buf = self
                .inner
                .fill_buf()
                .map_err(|e| FormatError::io(&self.name, e))?;
            if buf.is_empty() {
                return Err(FormatError::data(
                    start,
                    "unexpected end of input inside this object; expected `}`",
                ));
            }
            let mut used = 0;
            let mut done = false;
            for &b in buf {
                used += 1;
                if b == b'\n' {
                    self.line += 1;
                    self.col = 1;
                } else if b & 0xC0 != 0x80 {
                    self.col += 1;
                }
                if in_str {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_str = false;
                    }
                } else {
                    match b {
                        b'"' => in_str = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                done = true;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            out.extend_from_slice(&buf[..used]);
            self.inner.consume(used);
            if done {
                return Ok(());
            }
        }
    }
}

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
        super::project::assign(slot, &full[i]);
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

/// Writes rows as JSON objects; shared by the JSON and NDJSON writers.
struct ObjectWriter<W: Write> {
    out: BufWriter<W>,
    name: String,
    keys: Vec<Vec<u8>>,
    int: itoa::Buffer,
    float: ryu::Buffer,
    hex: Vec<u8>,
}

impl<W: Write> ObjectWriter<W> {
    fn new(out: W, name: &str) -> Self {
        ObjectWriter {
            out: BufWriter::with_capacity(64 * 1024, out),
            name: name.to_owned(),
            keys: Vec::new(),
            int: itoa::Buffer::new(),
            float: ryu::Buffer::new(),
            hex: Vec::new(),
        }
    }

    fn set_columns(&mut self, columns: &[String]) {
        self.keys = columns
            .iter()
            .map(|c| {
                let mut k = serde_json::to_vec(c).unwrap_or_default();
                k.push(b':');
                k
            })
            .collect();
    }

    fn write_object(&mut self, row: &[Value]) -> std::io::Result<()> {
        let out = &mut self.out;
        out.write_all(b"{")?;
        for (i, (key, v)) in self.keys.iter().zip(row).enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(key)?;
            match v {
                Value::Null => out.write_all(b"null")?,
                Value::Bool(b) => out.write_all(if *b { b"true" } else { b"false" })?,
                Value::Int(n) => out.write_all(self.int.format(*n).as_bytes())?,
                // JSON has no NaN or infinity: they are written as null.
                Value::Float(f) if !f.is_finite() => out.write_all(b"null")?,
                Value::Float(f) => out.write_all(self.float.format_finite(*f).as_bytes())?,
                Value::Text(s) => serde_json::to_writer(&mut *out, s.as_str())?,
                Value::Bytes(b) => {
                    self.hex.clear();
                    self.hex.push(b'"');
                    encode_hex(b, &mut self.hex);
                    self.hex.push(b'"');
                    out.write_all(&self.hex)?;
                }
            }
        }
        out.write_all(b"}")
    }

    fn err(&self, e: std::io::Error) -> FormatError {
        FormatError::io(&self.name, e)
    }
}

/// A row sink writing one JSON array of objects (one object per line).
pub struct JsonWriter<W: Write> {
    w: ObjectWriter<W>,
    rows: u64,
    started: bool,
    finished: bool,
}

impl<W: Write> JsonWriter<W> {
    /// A JSON sink on `out`.
    pub fn new(out: W, name: &str) -> Self {
        JsonWriter {
            w: ObjectWriter::new(out, name),
            rows: 0,
            started: false,
            finished: false,
        }
    }
}

impl<W: Write> RowSink for JsonWriter<W> {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        self.started = true;
        self.w.set_columns(columns);
        self.w.out.write_all(b"[").map_err(|e| self.w.err(e))
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        let sep: &[u8] = if self.rows == 0 { b"\n" } else { b",\n" };
        self.rows += 1;
        self.w
            .out
            .write_all(sep)
            .and_then(|_| self.w.write_object(row))
            .map_err(|e| self.w.err(e))
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if !self.started {
            self.begin(&[])?;
        }
        self.w
            .out
            .write_all(b"\n]\n")
            .and_then(|_| self.w.out.flush())
            .map_err(|e| self.w.err(e))
    }

    fn started(&self) -> bool {
        self.started
    }
}

/// A row sink writing NDJSON: one object per line.
pub struct NdjsonWriter<W: Write> {
    w: ObjectWriter<W>,
    started: bool,
}

impl<W: Write> NdjsonWriter<W> {
    /// An NDJSON sink on `out`.
    pub fn new(out: W, name: &str) -> Self {
        NdjsonWriter {
            w: ObjectWriter::new(out, name),
            started: false,
        }
    }
}

impl<W: Write> RowSink for NdjsonWriter<W> {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        self.started = true;
        self.w.set_columns(columns);
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        self.w
            .write_object(row)
            .and_then(|_| self.w.out.write_all(b"\n"))
            .map_err(|e| self.w.err(e))
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        self.w.out.flush().map_err(|e| self.w.err(e))
    }

    fn started(&self) -> bool {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_json(
        text: &str,
        opts: ReadOptions,
    ) -> Result<(Vec<String>, Vec<Vec<Value>>), FormatError> {
        let mut r = JsonReader::new(text.as_bytes(), &opts)?;
        let mut rows = Vec::new();
        let mut row = Vec::new();
        while r.next_row(&mut row)? {
            rows.push(row.clone());
        }
        Ok((r.columns().to_vec(), rows))
    }

    #[test]
    fn reads_objects_in_key_order() {
        let (cols, rows) = read_json(
            r#"[{"b": 1, "a": "x", "n": {"k": [1]}}, {"a": null, "b": 2.5}]"#,
            ReadOptions::named("t.json"),
        )
        .unwrap();
        assert_eq!(cols, ["b", "a", "n"]);
        assert_eq!(rows[0][2], Value::Text(r#"{"k":[1]}"#.into()));
        assert_eq!(rows[1], vec![Value::Float(2.5), Value::Null, Value::Null]);
    }

    #[test]
    fn error_points_at_line_and_column() {
        let e = read_json(
            "[\n{\"a\": 1},\n{\"a\": tru}\n]",
            ReadOptions::named("t.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("t.json: line 3, column"), "{e}");
    }
}
