//! XLSX: written with `rust_xlsxwriter` in constant-memory mode (rows go to a temporary file
//! as they come), read with `calamine`'s streaming cell reader.
//!
//! An xlsx file is a zip archive and both libraries need to seek, so the reader first copies
//! its input into an anonymous temporary file, and the writer assembles the workbook in one
//! before copying it out. The calamine cell reader borrows the workbook, so it runs on a helper
//! thread that sends rows over a small bounded channel: memory stays at a few batches of rows.
//!
//! Cells carry their own types. Integers beyond ±2^53 do not fit an xlsx number exactly and are
//! written as text; read them back with `types = { col = "integer" }`. Bytes are written as hex
//! text. A row whose values are all null has no cells; such rows in the middle of a sheet read
//! back as null rows, at the very end they are not seen.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use calamine::{DataRef, Reader, Xlsx};
use rust_xlsxwriter::{Workbook, XlsxError};

use super::error::{FormatError, Location, OnError, SkipReport, skip_or_fail};
use super::options::{ReadOptions, TimestampUnit, Type};
use super::projection::Projection;
use super::row::{RowSink, RowSource, Value};
use super::text::{coerce, encode_hex};

/// Most rows an xlsx sheet holds.
pub const MAX_ROWS: u32 = 1_048_576;
/// Most columns an xlsx sheet holds.
pub const MAX_COLUMNS: usize = 16_384;
/// Largest integer magnitude an xlsx number holds exactly.
const EXACT_INT: i64 = 1 << 53;
/// Rows per message from the reading thread.
const BATCH: usize = 512;

/// XLSX options for both directions.
#[derive(Debug, Clone)]
pub struct XlsxOptions {
    /// Sheet to read (default: the first) or the name of the sheet to write (default `Sheet1`).
    pub sheet: Option<String>,
    /// The first row holds the column names (reading) / write a header row (writing).
    pub header: bool,
}

impl Default for XlsxOptions {
    fn default() -> Self {
        XlsxOptions {
            sheet: None,
            header: true,
        }
    }
}

/// Copies `input` into an anonymous temporary file and rewinds it.
pub(crate) fn spool(mut input: impl Read, name: &str) -> Result<File, FormatError> {
    let mut file = tempfile::tempfile().map_err(|e| FormatError::io(name, e))?;
    io::copy(&mut input, &mut file).map_err(|e| FormatError::io(name, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| FormatError::io(name, e))?;
    Ok(file)
}

/// A message from the reading thread: a batch of (sheet row number, cells) or an error.
type Batch = Result<Vec<(u32, Vec<Value>)>, FormatError>;

/// A row source over one sheet of an xlsx workbook.
pub struct XlsxReader {
    rx: Receiver<Batch>,
    thread: Option<JoinHandle<()>>,
    name: String,
    columns: Vec<String>,
    indices: Vec<usize>,
    types: Vec<Type>,
    unit: TimestampUnit,
    policy: OnError,
    skipped: SkipReport,
    pending: std::vec::IntoIter<(u32, Vec<Value>)>,
    /// A row read ahead (after a gap, or the first row when there is no header).
    held: Option<(u32, Vec<Value>)>,
    /// Row number of the last row returned, to fill gaps with null rows.
    last_row: Option<u32>,
    width: usize,
    done: bool,
}

impl XlsxReader {
    /// Opens a workbook from `input` and reads the header row of the sheet.
    pub fn new(
        input: impl Read,
        xlsx: &XlsxOptions,
        opts: &ReadOptions,
    ) -> Result<XlsxReader, FormatError> {
        let name = opts.name.clone();
        let file = spool(input, &name)?;
        let book: Xlsx<File> = Xlsx::new(file).map_err(|e| {
            FormatError::data(
                Location::file(&name),
                format!("not a readable xlsx workbook ({e}); expected an .xlsx file"),
            )
        })?;
        let sheets = book.sheet_names();
        let sheet = match &xlsx.sheet {
            Some(s) if sheets.contains(s) => s.clone(),
            Some(s) => {
                return Err(FormatError::Option {
                    format: "xlsx",
                    option: "sheet",
                    message: format!(
                        "{name}: no sheet named `{s}`; the sheets are: {}",
                        sheets.join(", ")
                    ),
                });
            }
            None => sheets.first().cloned().ok_or_else(|| {
                FormatError::data(Location::file(&name), "the workbook has no sheet")
            })?,
        };
        let (tx, rx) = sync_channel::<Batch>(4);
        let thread_name = name.clone();
        let thread = std::thread::Builder::new()
            .name("ferry-xlsx".into())
            .spawn(move || read_sheet(book, &sheet, &thread_name, &tx))
            .map_err(|e| FormatError::io(&name, e))?;
        let mut this = XlsxReader {
            rx,
            thread: Some(thread),
            name,
            columns: Vec::new(),
            indices: Vec::new(),
            types: Vec::new(),
            unit: opts.timestamp_unit,
            policy: opts.on_error,
            skipped: SkipReport::default(),
            pending: Vec::new().into_iter(),
            held: None,
            last_row: None,
            width: 0,
            done: false,
        };
        let file_columns: Vec<String> = if xlsx.header {
            match this.next_raw()? {
                Some((r, cells)) => {
                    this.last_row = Some(r);
                    cells
                        .iter()
                        .enumerate()
                        .map(|(i, v)| match v {
                            Value::Null => format!("c{}", i + 1),
                            Value::Text(s) => s.clone(),
                            Value::Int(n) => n.to_string(),
                            Value::Float(f) => f.to_string(),
                            Value::Bool(b) => b.to_string(),
                            Value::Bytes(_) => format!("c{}", i + 1),
                        })
                        .collect()
                }
                None => Vec::new(),
            }
        } else {
            // Without a header the first row's width names the columns.
            match this.next_raw()? {
                Some((row, cells)) => {
                    let n = cells.len();
                    this.held = Some((row, cells));
                    (1..=n).map(|i| format!("c{i}")).collect()
                }
                None => Vec::new(),
            }
        };
        let projection = Projection::for_reader(&file_columns, opts)?;
        opts.check_types("xlsx", projection.columns())?;
        this.indices = projection
            .columns()
            .iter()
            .map(|c| file_columns.iter().position(|f| f == c).unwrap_or(0))
            .collect();
        this.types = opts.types_for(projection.columns());
        this.columns = projection.columns().to_vec();
        this.width = file_columns.len();
        Ok(this)
    }

    /// The next non-empty sheet row as (0-based row number, cells).
    fn next_raw(&mut self) -> Result<Option<(u32, Vec<Value>)>, FormatError> {
        loop {
            if let Some(r) = self.pending.next() {
                return Ok(Some(r));
            }
            if self.done {
                return Ok(None);
            }
            match self.rx.recv() {
                Ok(Ok(batch)) => self.pending = batch.into_iter(),
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    if let Some(t) = self.thread.take()
                        && t.join().is_err()
                    {
                        return Err(FormatError::data(
                            Location::file(&self.name),
                            "the xlsx reader failed unexpectedly (the workbook may be corrupt)",
                        ));
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn convert(
        &self,
        row_no: u32,
        cells: &mut [Value],
        row: &mut Vec<Value>,
    ) -> Result<(), FormatError> {
        if cells.len() > self.width {
            return Err(FormatError::data(
                Location::file(&self.name).at_line(u64::from(row_no) + 1),
                format!(
                    "expected at most {} cells (the header's width), found a value in column {}",
                    self.width,
                    cells.len()
                ),
            ));
        }
        row.resize(self.columns.len(), Value::Null);
        for (k, slot) in row.iter_mut().enumerate() {
            let i = self.indices[k];
            *slot = match cells.get_mut(i) {
                Some(v) => std::mem::take(v),
                None => Value::Null,
            };
            coerce(slot, self.types[k], self.unit).map_err(|m| {
                FormatError::data(
                    Location::file(&self.name)
                        .at_line(u64::from(row_no) + 1)
                        .at_field(i, Some(&self.columns[k])),
                    m,
                )
            })?;
        }
        Ok(())
    }
}

impl RowSource for XlsxReader {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn next_row(&mut self, row: &mut Vec<Value>) -> Result<bool, FormatError> {
        loop {
            let (row_no, mut cells) = match self.held.take() {
                Some(r) => r,
                None => match self.next_raw()? {
                    Some(r) => r,
                    None => return Ok(false),
                },
            };
            if let Some(last) = self.last_row
                && row_no > last + 1
            {
                // A gap in the row numbers is a row without cells: all null.
                self.held = Some((row_no, cells));
                self.last_row = Some(last + 1);
                row.clear();
                row.resize(self.columns.len(), Value::Null);
                return Ok(true);
            }
            self.last_row = Some(row_no);
            match self.convert(row_no, &mut cells, row) {
                Ok(()) => return Ok(true),
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

impl Drop for XlsxReader {
    fn drop(&mut self) {
        // Dropping the receiver makes the thread's next send fail, so it ends promptly.
        let (_, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs on the helper thread: streams the sheet's cells and sends rows in batches.
fn read_sheet(mut book: Xlsx<File>, sheet: &str, name: &str, tx: &SyncSender<Batch>) {
    let fail = |e: String| {
        let _ = tx.send(Err(FormatError::data(Location::file(name), e)));
    };
    let mut cells = match book.worksheet_cells_reader(sheet) {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot read sheet `{sheet}`: {e}")),
    };
    let mut batch: Vec<(u32, Vec<Value>)> = Vec::with_capacity(BATCH);
    let mut current: Option<(u32, Vec<Value>)> = None;
    loop {
        let cell = match cells.next_cell() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return fail(format!("corrupt sheet `{sheet}`: {e}")),
        };
        let (r, c) = cell.get_position();
        let value = match cell.get_value() {
            DataRef::Empty => continue,
            DataRef::Int(i) => Value::Int(*i),
            DataRef::Float(f) => Value::Float(*f),
            DataRef::String(s) => Value::Text(s.clone()),
            DataRef::SharedString(s) => Value::Text((*s).to_owned()),
            DataRef::Bool(b) => Value::Bool(*b),
            DataRef::DateTime(d) => match d.as_datetime() {
                Some(t) => Value::Text(t.format("%Y-%m-%dT%H:%M:%S").to_string()),
                None => Value::Float(d.as_f64()),
            },
            DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => Value::Text(s.clone()),
            DataRef::Error(e) => Value::Text(e.to_string()),
        };
        if current.as_ref().is_some_and(|(row, _)| *row != r)
            && let Some(done) = current.take()
        {
            batch.push(done);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if tx.send(Ok(full)).is_err() {
                    return;
                }
            }
        }
        let (_, row) = current.get_or_insert_with(|| (r, Vec::new()));
        let c = c as usize;
        if c >= MAX_COLUMNS {
            return fail(format!(
                "row {}: column {} is past the xlsx limit",
                r + 1,
                c + 1
            ));
        }
        if row.len() <= c {
            row.resize(c + 1, Value::Null);
        }
        row[c] = value;
    }
    if let Some(done) = current {
        batch.push(done);
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch));
    }
}

/// A row sink writing one sheet of an xlsx workbook.
pub struct XlsxWriter<W: Write> {
    book: Workbook,
    out: Option<W>,
    name: String,
    header: bool,
    row: u32,
    hex: Vec<u8>,
    started: bool,
}

impl<W: Write> XlsxWriter<W> {
    /// An xlsx sink on `out`; the workbook is copied to `out` by `finish`.
    pub fn new(out: W, opts: &XlsxOptions, name: &str) -> Result<Self, FormatError> {
        let mut book = Workbook::new();
        let sheet = book
            .add_worksheet_with_constant_memory()
            .map_err(|e| FormatError::Other(Box::new(e)))?;
        if let Some(s) = &opts.sheet {
            sheet.set_name(s).map_err(|e| FormatError::Option {
                format: "xlsx",
                option: "sheet",
                message: format!("{name}: {e}"),
            })?;
        }
        Ok(XlsxWriter {
            book,
            out: Some(out),
            name: name.to_owned(),
            header: opts.header,
            row: 0,
            hex: Vec::new(),
            started: false,
        })
    }

    fn cell_error(&self, col: usize, e: XlsxError) -> FormatError {
        FormatError::data(
            Location::file(&self.name)
                .at_line(u64::from(self.row) + 1)
                .at_field(col, None),
            format!("cannot write the cell: {e}"),
        )
    }

    fn next_row(&mut self) -> Result<u32, FormatError> {
        if self.row >= MAX_ROWS {
            return Err(FormatError::Limit {
                file: self.name.clone(),
                message: format!("an xlsx sheet holds at most {MAX_ROWS} rows"),
            });
        }
        self.row += 1;
        Ok(self.row - 1)
    }
}

impl<W: Write> RowSink for XlsxWriter<W> {
    fn begin(&mut self, columns: &[String]) -> Result<(), FormatError> {
        self.started = true;
        if columns.len() > MAX_COLUMNS {
            return Err(FormatError::Limit {
                file: self.name.clone(),
                message: format!(
                    "{} columns; an xlsx sheet holds at most {MAX_COLUMNS}",
                    columns.len()
                ),
            });
        }
        if self.header {
            let r = self.next_row()?;
            for (c, name) in columns.iter().enumerate() {
                let res = self
                    .book
                    .worksheet_from_index(0)
                    .and_then(|s| s.write_string(r, c as u16, name).map(|_| ()));
                res.map_err(|e| self.cell_error(c, e))?;
            }
        }
        Ok(())
    }

    fn write_row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        let r = self.next_row()?;
        for (c, v) in row.iter().enumerate() {
            let col = c as u16;
            let sheet = self
                .book
                .worksheet_from_index(0)
                .map_err(|e| FormatError::Other(Box::new(e)))?;
            let res = match v {
                Value::Null => continue,
                Value::Bool(b) => sheet.write_boolean(r, col, *b).map(|_| ()),
                Value::Int(i) if (-EXACT_INT..=EXACT_INT).contains(i) => {
                    sheet.write_number(r, col, *i as f64).map(|_| ())
                }
                Value::Int(i) => sheet.write_string(r, col, i.to_string()).map(|_| ()),
                Value::Float(f) if f.is_finite() => sheet.write_number(r, col, *f).map(|_| ()),
                Value::Float(f) => sheet
                    .write_string(
                        r,
                        col,
                        super::text::format_float(*f, &mut ryu::Buffer::new()),
                    )
                    .map(|_| ()),
                Value::Text(s) => sheet.write_string(r, col, s).map(|_| ()),
                Value::Bytes(b) => {
                    self.hex.clear();
                    encode_hex(b, &mut self.hex);
                    let text = String::from_utf8_lossy(&self.hex).into_owned();
                    sheet.write_string(r, col, text).map(|_| ())
                }
            };
            if let Err(e) = res {
                self.row = r;
                return Err(self.cell_error(c, e));
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), FormatError> {
        let Some(mut out) = self.out.take() else {
            return Ok(());
        };
        if !self.started {
            self.begin(&[])?;
        }
        let name = self.name.clone();
        let mut file = tempfile::tempfile().map_err(|e| FormatError::io(&name, e))?;
        self.book
            .save_to_writer(&mut file)
            .map_err(|e| FormatError::Other(Box::new(e)))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| io::copy(&mut file, &mut out))
            .and_then(|_| out.flush())
            .map_err(|e| FormatError::io(&name, e))?;
        Ok(())
    }

    fn started(&self) -> bool {
        self.started
    }
}
