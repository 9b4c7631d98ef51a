//! The JSON and NDJSON row sinks.

use std::io::{BufWriter, Write};

use crate::formats::error::FormatError;
use crate::formats::row::{RowSink, Value};
use crate::formats::text::encode_hex;

/// Writes rows as JSON objects; shared by the JSON and NDJSON writers.
pub(super) struct ObjectWriter<W: Write> {
    pub(super) out: BufWriter<W>,
    pub(super) name: String,
    pub(super) keys: Vec<Vec<u8>>,
    pub(super) int: itoa::Buffer,
    pub(super) float: ryu::Buffer,
    pub(super) hex: Vec<u8>,
}

impl<W: Write> ObjectWriter<W> {
    pub(super) fn new(out: W, name: &str) -> Self {
        ObjectWriter {
            out: BufWriter::with_capacity(64 * 1024, out),
            name: name.to_owned(),
            keys: Vec::new(),
            int: itoa::Buffer::new(),
            float: ryu::Buffer::new(),
            hex: Vec::new(),
        }
    }

    pub(super) fn set_columns(&mut self, columns: &[String]) {
        self.keys = columns
            .iter()
            .map(|c| {
                let mut k = serde_json::to_vec(c).unwrap_or_default();
                k.push(b':');
                k
            })
            .collect();
    }

    pub(super) fn write_object(&mut self, row: &[Value]) -> std::io::Result<()> {
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

    pub(super) fn err(&self, e: std::io::Error) -> FormatError {
        FormatError::io(&self.name, e)
    }
}

/// A row sink writing one JSON array of objects (one object per line).
pub struct JsonWriter<W: Write> {
    pub(super) w: ObjectWriter<W>,
    pub(super) rows: u64,
    pub(super) started: bool,
    pub(super) finished: bool,
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
    pub(super) w: ObjectWriter<W>,
    pub(super) started: bool,
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
