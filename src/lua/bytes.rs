//! Byte streams as the format bindings see them: what a reader argument can be (a string with
//! the content, or a Reader from a store) and what a writer argument can be (a Writer from a
//! store, or a zip entry), behind two small traits so that the format code does not depend on
//! where the bytes come from or go to.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use mlua::{AnyUserData, UserData, UserDataMethods, Value};

/// A destination of bytes that is committed explicitly: until `commit`, nothing is visible;
/// dropped without it, the output is discarded.
pub(crate) trait CommitWrite: Write {
    /// Makes the output visible (renames the temp file, completes the upload, ends the entry).
    fn commit(&mut self) -> io::Result<()>;
    /// Discards the output.
    fn abort(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CommitWrite for super::streams::WriterHandle {
    fn commit(&mut self) -> io::Result<()> {
        super::streams::WriterHandle::commit(self)
    }
    fn abort(&mut self) -> io::Result<()> {
        super::streams::WriterHandle::abort(self)
    }
}

/// A writer shared between a Lua handle and the format sink writing into it. The format sink
/// holds a clone and writes through it; closing the sink commits it.
#[derive(Clone)]
pub(crate) struct SharedWriter {
    inner: Rc<RefCell<Option<Box<dyn CommitWrite>>>>,
    name: Rc<str>,
}

impl SharedWriter {
    /// Wraps a committing writer named `name` in messages.
    pub(crate) fn new(w: Box<dyn CommitWrite>, name: &str) -> Self {
        SharedWriter {
            inner: Rc::new(RefCell::new(Some(w))),
            name: name.into(),
        }
    }

    /// The output's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Commits and closes the writer; a second call does nothing.
    pub(crate) fn commit(&self) -> io::Result<()> {
        let taken = self.inner.borrow_mut().take();
        match taken {
            Some(mut w) => {
                w.flush()?;
                w.commit()
            }
            None => Ok(()),
        }
    }

    /// Drops the writer without committing it: its output is discarded.
    pub(crate) fn abort(&self) {
        let taken = self.inner.borrow_mut().take();
        if let Some(mut w) = taken {
            // Best effort: an output that cannot be discarded is cleaned up at the end of the run.
            let _ = w.abort();
        }
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.borrow_mut().as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other(format!("{} is closed", self.name))),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.inner.borrow_mut().as_mut() {
            Some(w) => w.write_all(buf),
            None => Err(io::Error::other(format!("{} is closed", self.name))),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.inner.borrow_mut().as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// A Lua handle over a [`SharedWriter`]: `write(s)`, `close()`. Used for zip entries; store
/// writers have their own userdata.
pub(crate) struct EntryWriter(pub(crate) SharedWriter);

impl UserData for EntryWriter {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("write", |_, this, s: mlua::String| {
            let mut w = this.0.clone();
            w.write_all(&s.as_bytes())
                .map_err(|e| mlua::Error::runtime(format!("{}: {e}", this.0.name())))
        });
        methods.add_method("close", |_, this, ()| {
            this.0
                .commit()
                .map_err(|e| mlua::Error::runtime(format!("{}: {e}", this.0.name())))
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("Writer({})", this.0.name()))
        });
    }
}

/// Takes a writer argument: a store Writer or a zip entry writer. The error names the
/// function and what it accepts.
pub(crate) fn writer_arg(value: &Value, func: &str) -> mlua::Result<SharedWriter> {
    if let Value::UserData(ud) = value {
        if let Ok(h) = ud.borrow::<EntryWriter>() {
            return Ok(h.0.clone());
        }
        if let Some(w) = storage_writer(ud)? {
            return Ok(w);
        }
    }
    Err(mlua::Error::runtime(format!(
        "{func}: expected a Writer (from store:create(path) or zip:create(name)), got {}",
        value.type_name()
    )))
}

/// A readable input with its name for messages.
pub(crate) struct Input {
    /// The bytes.
    pub(crate) reader: Box<dyn Read>,
    /// Its name (a path, or `<string>`).
    pub(crate) name: String,
}

/// Takes a reader argument: a string holding the content, or a store Reader.
pub(crate) fn reader_arg(value: Value, func: &str) -> mlua::Result<Input> {
    match value {
        Value::String(s) => Ok(Input {
            reader: Box::new(io::Cursor::new(s.as_bytes().to_vec())),
            name: "<string>".into(),
        }),
        Value::UserData(ud) => match storage_reader(&ud)? {
            Some(input) => Ok(input),
            None => Err(not_a_reader(func, &ud)),
        },
        other => Err(mlua::Error::runtime(format!(
            "{func}: expected a Reader (from store:open(path)) or a string, got {}",
            other.type_name()
        ))),
    }
}

fn not_a_reader(func: &str, ud: &AnyUserData) -> mlua::Error {
    let name = ud
        .type_name()
        .ok()
        .flatten()
        .unwrap_or_else(|| "userdata".into());
    mlua::Error::runtime(format!(
        "{func}: expected a Reader (from store:open(path)) or a string, got {name}"
    ))
}

/// A store Writer as a [`SharedWriter`], or `None` when `ud` is not one.
fn storage_writer(ud: &AnyUserData) -> mlua::Result<Option<SharedWriter>> {
    if !ud.is::<super::streams::LuaWriter>() {
        return Ok(None);
    }
    let handle = super::streams::writer_handle(ud)?;
    let label = handle.label();
    Ok(Some(SharedWriter::new(Box::new(handle), &label)))
}

/// A store Reader as an [`Input`], or `None` when `ud` is not one.
fn storage_reader(ud: &AnyUserData) -> mlua::Result<Option<Input>> {
    if !ud.is::<super::streams::LuaReader>() {
        return Ok(None);
    }
    let (reader, name) = super::streams::take_reader(ud)?;
    Ok(Some(Input {
        reader: Box::new(reader),
        name,
    }))
}
