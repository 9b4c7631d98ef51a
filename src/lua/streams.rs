//! Byte streams for scripts: [`LuaReader`] (`read(n)`, `lines()`, `close()`) and [`LuaWriter`]
//! (`write(s, ...)`, `close()`, `abort()`), general over any Rust reader or committing writer.
//!
//! Stores produce them (`store:open(path)`, `store:create(path)`); other bindings consume them.
//! The interface for those bindings (formats, zip, hashing):
//!
//! - **Reading.** Take the byte stream out of a reader userdata with [`take_reader`] (or
//!   [`LuaReader::take`]): you get a `Box<dyn BufRead + Send>` positioned where the script left
//!   off (bytes the reader buffered are not lost), and the Lua reader becomes consumed (its methods
//!   then raise "already handed over"). Build a reader for a script with [`LuaReader::new`] from
//!   anything `Read + Send`.
//! - **Writing.** Get a [`WriterHandle`] from a writer userdata with [`writer_handle`]: it is a
//!   `std::io::Write` plus [`WriterHandle::commit`] (make the data visible: `close()` of a format
//!   sink should call it) and [`WriterHandle::abort`]. The handle shares the writer with the
//!   script's userdata, so the script's `w:close()` and the host's end-of-run clean-up still see
//!   it. Wrap your own committing sink (say, a zip writer over another writer) with
//!   [`LuaWriter::new`] by implementing [`Sink`].
//!
//! Nothing half-written becomes visible: a writer that is never committed is aborted when the run
//! ends ([`discard_open_writers`], called by `run_job`; a warning is logged if the run succeeded)
//! and, at the latest, when its last handle is dropped.

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex, Weak};

use mlua::{AnyUserData, Lua, MultiValue, UserData, UserDataMethods, Value};

use super::limits::Guard;
use crate::sync::LockExt;

/// Read buffer of a [`LuaReader`] made with [`LuaReader::new`].
const READ_BUFFER: usize = 64 * 1024;

/// A byte stream a script reads from.
pub struct LuaReader {
    inner: Option<Box<dyn BufRead + Send>>,
    label: String,
}

impl LuaReader {
    /// A reader over any `Read`, buffered. `label` names the source in errors (a URL, say).
    pub fn new<R: Read + Send + 'static>(reader: R, label: impl Into<String>) -> LuaReader {
        LuaReader::from_buf_read(
            Box::new(BufReader::with_capacity(READ_BUFFER, reader)),
            label,
        )
    }

    /// A reader over something already buffered. Reading it stops with an error once the
    /// run is being stopped (see [`crate::cancel`]), whoever consumes it: a script, a format
    /// reader, a zip, a hash.
    pub fn from_buf_read(reader: Box<dyn BufRead + Send>, label: impl Into<String>) -> LuaReader {
        LuaReader {
            inner: Some(Box::new(crate::cancel::CheckedRead::new(reader))),
            label: label.into(),
        }
    }

    /// What the reader reads (for messages).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Takes the stream out, leaving the Lua reader consumed.
    pub fn take(&mut self) -> mlua::Result<Box<dyn BufRead + Send>> {
        self.inner.take().ok_or_else(|| self.gone())
    }

    fn gone(&self) -> mlua::Error {
        mlua::Error::runtime(format!(
            "reader {} is closed or already handed over to another reader",
            self.label
        ))
    }

    fn stream(&mut self) -> mlua::Result<&mut Box<dyn BufRead + Send>> {
        if self.inner.is_none() {
            return Err(self.gone());
        }
        self.inner
            .as_mut()
            .ok_or_else(|| mlua::Error::runtime("reader is closed"))
    }
}

/// Takes the byte stream out of a reader userdata (see the module docs); returns it with the
/// reader's label.
pub fn take_reader(ud: &AnyUserData) -> mlua::Result<(Box<dyn BufRead + Send>, String)> {
    let mut r = ud.borrow_mut::<LuaReader>().map_err(|_| {
        mlua::Error::runtime("expected a reader (from store:open(path))".to_string())
    })?;
    let label = r.label.clone();
    Ok((r.take()?, label))
}

/// The largest single string a script may ask for: the Lua memory limit, since the string will
/// live in Lua. Rust buffers are not counted by Lua's allocator, so refuse before allocating.
fn max_chunk(lua: &Lua) -> u64 {
    lua.app_data_ref::<Guard>()
        .map(|g| g.memory_limit())
        .unwrap_or(u64::MAX)
}

fn io_err(label: &str, what: &str, e: io::Error) -> mlua::Error {
    use super::host_error::{Classify, Kind, host_err};
    // Storage errors already name their store and path.
    match crate::storage::StorageError::from_io(&e) {
        Some(s) => s.to_lua_err(),
        None => host_err(Kind::Io, format!("{what} {label}: {e}")),
    }
}

fn read_line(
    r: &mut Box<dyn BufRead + Send>,
    max: u64,
    label: &str,
) -> mlua::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = r
        .take(max.saturating_add(1))
        .read_until(b'\n', &mut line)
        .map_err(|e| io_err(label, "reading", e))?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() as u64 > max {
        return Err(mlua::Error::runtime(format!(
            "reading {label}: a line is longer than the run's memory limit ({max} bytes)"
        )));
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(Some(line))
}

impl UserData for LuaReader {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // read(n): up to n bytes (fewer only at the end), nil at the end.
        // read("a"): everything left ("" at the end), like Lua's file:read("a").
        methods.add_method_mut("read", |lua, this, what: Value| {
            let max = max_chunk(lua);
            let label = this.label.clone();
            let r = this.stream()?;
            match what {
                Value::Integer(_) | Value::Number(_) => {
                    let n = match what {
                        Value::Integer(i) => i,
                        Value::Number(f) if f.fract() == 0.0 => f as i64,
                        _ => -1,
                    };
                    let n = u64::try_from(n).map_err(|_| {
                        mlua::Error::runtime("reader:read(n): n must be a non-negative integer")
                    })?;
                    if n > max {
                        return Err(mlua::Error::runtime(format!(
                            "reader:read({n}): more than the run's memory limit ({max} bytes); read smaller chunks"
                        )));
                    }
                    let mut buf = Vec::with_capacity(n.min(READ_BUFFER as u64 * 16) as usize);
                    r.take(n)
                        .read_to_end(&mut buf)
                        .map_err(|e| io_err(&label, "reading", e))?;
                    if buf.is_empty() && n > 0 {
                        return Ok(Value::Nil);
                    }
                    Ok(Value::String(lua.create_string(&buf)?))
                }
                Value::String(s) if matches!(&*s.to_str()?, "a" | "*a") => {
                    let mut buf = Vec::new();
                    let got = r
                        .take(max.saturating_add(1))
                        .read_to_end(&mut buf)
                        .map_err(|e| io_err(&label, "reading", e))?;
                    if got as u64 > max {
                        return Err(mlua::Error::runtime(format!(
                            "reader:read(\"a\") on {label}: the rest is larger than the run's memory limit ({max} bytes); read chunks with read(n) or lines()"
                        )));
                    }
                    Ok(Value::String(lua.create_string(&buf)?))
                }
                Value::String(s) if matches!(&*s.to_str()?, "l" | "*l") => {
                    match read_line(r, max, &label)? {
                        Some(line) => Ok(Value::String(lua.create_string(&line)?)),
                        None => Ok(Value::Nil),
                    }
                }
                other => Err(mlua::Error::runtime(format!(
                    "reader:read(what): expected a byte count, \"a\" or \"l\", got {}",
                    other.type_name()
                ))),
            }
        });
        // lines(): an iterator over the lines, without the line end (`\n` or `\r\n`).
        methods.add_function("lines", |lua, ud: AnyUserData| {
            ud.borrow_mut::<LuaReader>()?.stream()?;
            lua.create_function(move |lua, ()| {
                let max = max_chunk(lua);
                let mut this = ud.borrow_mut::<LuaReader>()?;
                let label = this.label.clone();
                let r = this.stream()?;
                match read_line(r, max, &label)? {
                    Some(line) => Ok(Value::String(lua.create_string(&line)?)),
                    None => Ok(Value::Nil),
                }
            })
        });
        methods.add_method_mut("close", |_, this, ()| {
            this.inner = None;
            Ok(())
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("reader {}", this.label))
        });
    }
}

/// A destination that becomes visible only when committed: a store writer, or a format sink
/// over one.
pub trait Sink: Write + Send {
    /// Makes what was written visible (atomically, where the destination can).
    fn commit(self: Box<Self>) -> io::Result<()>;
    /// Discards what was written. An error only reports a clean-up that could not be done now.
    fn abort(self: Box<Self>) -> io::Result<()>;
}

impl Sink for crate::storage::Writer {
    fn commit(self: Box<Self>) -> io::Result<()> {
        crate::storage::Writer::commit(*self).map_err(|e| e.into_io())
    }

    fn abort(self: Box<Self>) -> io::Result<()> {
        crate::storage::Writer::abort(*self).map_err(|e| e.into_io())
    }
}

struct Slot {
    sink: Option<Box<dyn Sink>>,
    label: String,
    /// Where a writer dropped while open (collected by Lua's GC) reports itself, so the end of
    /// the run can warn about it like about any other unclosed writer.
    orphans: Option<Arc<Mutex<Vec<String>>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            if let Some(o) = &self.orphans {
                o.lock_unpoisoned().push(self.label.clone());
            }
            if let Err(e) = sink.abort() {
                tracing::warn!("{e}");
            }
        }
    }
}

/// A shared handle on a writer: `Write`, plus commit and abort. Cheap to clone; every clone
/// refers to the same writer.
#[derive(Clone)]
pub struct WriterHandle {
    slot: Arc<Mutex<Slot>>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriterHandle({})", self.label())
    }
}

impl WriterHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock_unpoisoned()
    }

    /// What the writer writes (a URL, say).
    pub fn label(&self) -> String {
        self.lock().label.clone()
    }

    /// Whether the writer is neither committed nor aborted.
    pub fn is_open(&self) -> bool {
        self.lock().sink.is_some()
    }

    fn closed(&self) -> io::Error {
        io::Error::other(format!("writer {} is already closed", self.label()))
    }

    /// Commits: the data becomes visible. Fails if the writer is already closed.
    pub fn commit(&self) -> io::Result<()> {
        let sink = self.lock().sink.take();
        match sink {
            Some(s) => s.commit(),
            None => Err(self.closed()),
        }
    }

    /// Aborts: the data is discarded. Aborting a closed writer does nothing.
    pub fn abort(&self) -> io::Result<()> {
        let sink = self.lock().sink.take();
        match sink {
            Some(s) => s.abort(),
            None => Ok(()),
        }
    }
}

impl Write for WriterHandle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut slot = self.lock();
        match slot.sink.as_mut() {
            Some(s) => s.write(buf),
            None => Err(io::Error::other(format!(
                "writer {} is already closed",
                slot.label
            ))),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut slot = self.lock();
        match slot.sink.as_mut() {
            Some(s) => s.write_all(buf),
            None => Err(io::Error::other(format!(
                "writer {} is already closed",
                slot.label
            ))),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.lock().sink.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

/// The writers created in a VM, so that the end of a run can abort those never closed, and the
/// labels of those the garbage collector already discarded.
#[derive(Default)]
struct OpenWriters {
    live: RefCell<Vec<Weak<Mutex<Slot>>>>,
    orphans: Arc<Mutex<Vec<String>>>,
}

/// A byte stream a script writes to, visible at `close()`.
pub struct LuaWriter {
    handle: WriterHandle,
}

impl LuaWriter {
    /// Wraps a sink for a script and registers it with the VM, so that it is aborted at the end
    /// of the run if nobody commits it. `label` names the destination in messages.
    pub fn new(lua: &Lua, sink: Box<dyn Sink>, label: impl Into<String>) -> LuaWriter {
        if lua.app_data_ref::<OpenWriters>().is_none() {
            lua.set_app_data(OpenWriters::default());
        }
        let open = lua.app_data_ref::<OpenWriters>();
        let slot = Arc::new(Mutex::new(Slot {
            sink: Some(sink),
            label: label.into(),
            orphans: open.as_ref().map(|o| o.orphans.clone()),
        }));
        if let Some(open) = open {
            let mut list = open.live.borrow_mut();
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(&slot));
        }
        LuaWriter {
            handle: WriterHandle { slot },
        }
    }

    /// A handle on the same writer.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }
}

/// The writer handle of a writer userdata (see the module docs).
pub fn writer_handle(ud: &AnyUserData) -> mlua::Result<WriterHandle> {
    ud.borrow::<LuaWriter>()
        .map(|w| w.handle())
        .map_err(|_| mlua::Error::runtime("expected a writer (from store:create(path))"))
}

/// Aborts every writer of the VM that is still open and returns their labels, with those of
/// writers the garbage collector discarded while open. Called when a run ends, before the VM
/// is dropped.
pub fn discard_open_writers(lua: &Lua) -> Vec<String> {
    let (slots, mut labels): (Vec<Arc<Mutex<Slot>>>, Vec<String>) =
        match lua.app_data_ref::<OpenWriters>() {
            Some(open) => (
                open.live
                    .borrow_mut()
                    .drain(..)
                    .filter_map(|w| w.upgrade())
                    .collect(),
                std::mem::take(&mut *open.orphans.lock_unpoisoned()),
            ),
            None => return Vec::new(),
        };
    for slot in slots {
        let handle = WriterHandle { slot };
        if handle.is_open() {
            labels.push(handle.label());
            if let Err(e) = handle.abort() {
                tracing::warn!("{e}");
            }
        }
    }
    labels
}

fn write_values(handle: &WriterHandle, args: &MultiValue) -> mlua::Result<()> {
    let mut h = handle.clone();
    for v in args.iter() {
        let res = match v {
            Value::String(s) => h.write_all(&s.as_bytes()),
            Value::Integer(i) => h.write_all(i.to_string().as_bytes()),
            Value::Number(n) => h.write_all(Value::Number(*n).to_string()?.as_bytes()),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "writer:write(...): expected strings or numbers, got {}",
                    other.type_name()
                )));
            }
        };
        if let Err(e) = res {
            // A failed write leaves nothing usable: discard the rest now.
            let _ = handle.abort();
            return Err(io_err(&handle.label(), "writing", e));
        }
    }
    Ok(())
}

impl UserData for LuaWriter {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // write(s, ...): appends strings (numbers are written as text); returns the writer.
        methods.add_function("write", |_, (ud, args): (AnyUserData, MultiValue)| {
            let handle = ud.borrow::<LuaWriter>()?.handle();
            write_values(&handle, &args)?;
            Ok(ud)
        });
        // close(): commits; the data becomes visible under its name.
        methods.add_method("close", |_, this, ()| {
            let label = this.handle.label();
            this.handle
                .commit()
                .map_err(|e| io_err(&label, "committing", e))
        });
        // abort(): discards what was written.
        methods.add_method("abort", |_, this, ()| {
            let label = this.handle.label();
            this.handle
                .abort()
                .map_err(|e| io_err(&label, "aborting", e))
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("writer {}", this.handle.label()))
        });
    }
}
