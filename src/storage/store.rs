//! [`Store`]: one open store (local folder, S3 bucket or memory) and its object operations.

use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::local::LocalBackend;
use super::object::ObjectBackend;
use super::runtime;
use super::stream::{Reader, ReaderInner, Writer, WriterInner};
use super::{ErrorKind, Interrupt, Op, StorageError, StoreSpec, validate_path, validate_prefix};

/// What a store knows about an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// The path inside the store.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, when known.
    pub modified: Option<DateTime<Utc>>,
    /// The entity tag (S3 and memory stores).
    pub etag: Option<String>,
}

/// An entry a listing found but could not list as an object: its path in the store and why
/// (a dangling symlink, a fifo, a device, permission denied, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The path inside the store.
    pub path: String,
    /// Why it is not listed.
    pub reason: String,
}

impl Unreadable {
    pub(crate) fn new(path: String, reason: String) -> Unreadable {
        Unreadable { path, reason }
    }
}

/// Options of `write` and `create`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Fail with [`ErrorKind::AlreadyExists`] when the object exists (S3 `If-None-Match: *`;
    /// locally a hard link that cannot replace a name). For catalogs and lock objects. On S3 and
    /// memory stores an object written this way must fit in one part (5 MiB).
    pub if_absent: bool,
}

/// Blocks on the storage runtime and honours the interrupt.
#[derive(Clone, Default)]
pub(crate) struct Waiter {
    pub(super) interrupt: Option<Interrupt>,
}

impl Waiter {
    pub(crate) fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|f| f())
    }

    pub(crate) fn wait<F: Future>(&self, fut: F) -> Result<F::Output, ErrorKind> {
        runtime::block_on(fut, self.interrupt.as_ref()).map_err(|w| match w {
            runtime::Wait::Interrupted => ErrorKind::Interrupted,
            runtime::Wait::Runtime(e) => ErrorKind::Io(e),
        })
    }
}

pub(super) enum Backend {
    Local(LocalBackend),
    Object(Arc<ObjectBackend>),
}

pub(super) struct Inner {
    pub(super) spec: StoreSpec,
    pub(super) label: String,
    pub(super) backend: Backend,
}

/// An open store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(super) inner: Arc<Inner>,
    /// Gives up blocking calls when the caller is being stopped (see [`Store::uninterruptible`]).
    pub(super) waiter: Waiter,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.inner.label)
    }
}

impl Store {
    pub(super) fn err(&self, op: Op, path: Option<&str>, kind: ErrorKind) -> StorageError {
        StorageError::new(self.inner.label.clone(), op, path, kind)
    }

    pub(super) fn check(&self, op: Op, path: &str) -> Result<(), StorageError> {
        validate_path(path).map_err(|m| self.err(op, Some(path), ErrorKind::InvalidPath(m)))
    }

    /// The same store, whose calls are never interrupted: for the clean-up after a run that is
    /// being stopped (deleting what it must not leave behind), which must not be cut short by
    /// the very stop it follows.
    pub fn uninterruptible(&self) -> Store {
        Store {
            inner: self.inner.clone(),
            waiter: Waiter::default(),
        }
    }

    /// The store's URL, without credentials: what artifacts record.
    pub fn url(&self) -> String {
        self.inner.spec.url.to_url_string()
    }

    /// The URL of one object of the store, without credentials.
    pub fn object_url(&self, path: &str) -> Result<String, StorageError> {
        self.check(Op::Stat, path)?;
        Ok(self.inner.spec.url.object_url(path))
    }

    /// How the store is named in messages: `NAME (URL)` or the URL.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The config name, for a store from `[stores.NAME]`.
    pub fn name(&self) -> Option<&str> {
        self.inner.spec.name.as_deref()
    }

    /// Every object under `prefix` (a folder-like prefix: `a/b` lists `a/b/...`; empty for all),
    /// sorted by path. Listing is recursive.
    pub fn list(&self, prefix: &str) -> Result<Vec<Meta>, StorageError> {
        let p = validate_prefix(prefix)
            .map_err(|m| self.err(Op::List, Some(prefix), ErrorKind::InvalidPath(m)))?;
        let mut out = match &self.inner.backend {
            Backend::Local(b) => b.list(p),
            Backend::Object(b) => b.list(p, &self.waiter),
        }
        .map_err(|k| self.err(Op::List, Some(prefix), k))?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Like [`Store::list`], and the entries that could not be listed, with the reason (local
    /// stores: dangling symlinks, fifos, sockets, devices, unreadable files and folders; object
    /// stores have none). A local folder that does not exist is [`ErrorKind::NotFound`] here,
    /// where `list` lists nothing: for a backup, a missing source is an error.
    pub fn walk(&self, prefix: &str) -> Result<(Vec<Meta>, Vec<Unreadable>), StorageError> {
        let p = validate_prefix(prefix)
            .map_err(|m| self.err(Op::List, Some(prefix), ErrorKind::InvalidPath(m)))?;
        let (mut out, mut skipped) = match &self.inner.backend {
            Backend::Local(b) => b.walk(p, true),
            Backend::Object(b) => b.list(p, &self.waiter).map(|l| (l, Vec::new())),
        }
        .map_err(|k| self.err(Op::List, Some(prefix), k))?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((out, skipped))
    }

    /// An object's metadata, or `None` when there is no object at `path`.
    pub fn stat(&self, path: &str) -> Result<Option<Meta>, StorageError> {
        self.check(Op::Stat, path)?;
        match &self.inner.backend {
            Backend::Local(b) => b.stat(path),
            Backend::Object(b) => b.stat(path, &self.waiter),
        }
        .map_err(|k| self.err(Op::Stat, Some(path), k))
    }

    /// Whether an object exists at `path`.
    pub fn exists(&self, path: &str) -> Result<bool, StorageError> {
        Ok(self.stat(path)?.is_some())
    }

    /// The whole object, refused with [`ErrorKind::TooLarge`] past `max` bytes (read big objects
    /// with [`Store::open`]).
    pub fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, StorageError> {
        let mut r = self.open(path)?;
        let mut out = Vec::new();
        let n = (&mut r)
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| self.io_err(Op::Read, path, e))?;
        if n as u64 > max {
            return Err(self.err(
                Op::Read,
                Some(path),
                ErrorKind::TooLarge(format!(
                    "the object is larger than {max} bytes; stream it with open() instead"
                )),
            ));
        }
        Ok(out)
    }

    fn io_err(&self, op: Op, path: &str, e: io::Error) -> StorageError {
        self.err(op, Some(path), super::local::kind_from_io(e))
    }

    /// Writes a whole object atomically.
    pub fn write(&self, path: &str, data: &[u8], opts: WriteOptions) -> Result<(), StorageError> {
        self.check(Op::Write, path)?;
        match &self.inner.backend {
            Backend::Local(_) => {
                let mut w = self.create(path, opts)?;
                w.write_all(data)
                    .map_err(|e| self.io_err(Op::Write, path, e))?;
                w.commit()
            }
            Backend::Object(b) => b
                .put(
                    path,
                    Bytes::copy_from_slice(data),
                    opts.if_absent,
                    &self.waiter,
                )
                .map_err(|k| self.err(Op::Write, Some(path), k)),
        }
    }

    /// A streaming reader of an object.
    pub fn open(&self, path: &str) -> Result<Reader, StorageError> {
        self.check(Op::Read, path)?;
        let inner = match &self.inner.backend {
            Backend::Local(b) => b.open_read(path).map(ReaderInner::Local),
            Backend::Object(b) => b.open_read(path, &self.waiter).map(ReaderInner::Object),
        }
        .map_err(|k| self.err(Op::Read, Some(path), k))?;
        Ok(Reader {
            inner,
            store: self.inner.label.clone(),
            path: path.to_string(),
            waiter: self.waiter.clone(),
        })
    }

    /// A streaming writer: nothing is visible under `path` until [`Writer::commit`].
    pub fn create(&self, path: &str, opts: WriteOptions) -> Result<Writer, StorageError> {
        self.check(Op::Write, path)?;
        let inner = match &self.inner.backend {
            Backend::Local(b) => b.create(path, opts.if_absent).map(WriterInner::Local),
            Backend::Object(b) => b
                .create(path, opts.if_absent, &self.waiter)
                .map(WriterInner::Object),
        }
        .map_err(|k| self.err(Op::Write, Some(path), k))?;
        Ok(Writer {
            inner: Some(inner),
            store: self.inner.label.clone(),
            path: path.to_string(),
            url: self.inner.spec.url.object_url(path),
        })
    }

    /// Deletes an object; deleting a missing object is not an error (as on S3).
    pub fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.check(Op::Delete, path)?;
        match &self.inner.backend {
            Backend::Local(b) => b.delete(path),
            Backend::Object(b) => b.delete(path, &self.waiter),
        }
        .map_err(|k| self.err(Op::Delete, Some(path), k))
    }

    /// Deletes every object under `prefix` (a folder-like prefix, as for [`Store::list`]) and,
    /// in a local store, the folders left empty; returns how many objects were deleted. An empty
    /// prefix is refused: a whole store is never deleted by one call.
    pub fn delete_prefix(&self, prefix: &str) -> Result<u64, StorageError> {
        if prefix.trim_matches('/').is_empty() {
            return Err(self.err(
                Op::Delete,
                Some(prefix),
                ErrorKind::InvalidPath("refusing to delete a whole store (empty prefix)".into()),
            ));
        }
        let mut n = 0;
        for obj in self.list(prefix)? {
            self.delete(&obj.path)?;
            n += 1;
        }
        if let Backend::Local(b) = &self.inner.backend {
            b.remove_empty_dirs(prefix)
                .map_err(|k| self.err(Op::Delete, Some(prefix), k))?;
        }
        Ok(n)
    }

    /// Copies an object within the store (server-side where the store can), atomically at the
    /// destination.
    pub fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.check(Op::Copy, from)?;
        self.check(Op::Copy, to)?;
        let shown = format!("{from} -> {to}");
        match &self.inner.backend {
            Backend::Local(b) => b.copy(from, to, &self.waiter).map(|_| ()),
            Backend::Object(b) => b.copy(from, to, &self.waiter),
        }
        .map_err(|k| self.err(Op::Copy, Some(&shown), k))
    }
}
