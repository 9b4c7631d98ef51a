//! [`Reader`] and [`Writer`]: streaming access to one object of a local or object store.

use std::io::{self, BufRead, Read, Write};

use super::local::{LocalReader, LocalWriter};
use super::object::{ObjectReader, ObjectWriter};
use super::store::Waiter;
use super::{ErrorKind, Op, StorageError};

pub(super) enum ReaderInner {
    Local(LocalReader),
    Object(ObjectReader),
}

/// A streaming reader of one object; implements `Read` and `BufRead`. Errors carry the store
/// and path (get them back with [`StorageError::from_io`]).
pub struct Reader {
    pub(super) inner: ReaderInner,
    pub(super) store: String,
    pub(super) path: String,
    pub(super) waiter: Waiter,
}

impl Reader {
    fn wrap(&self, e: io::Error) -> io::Error {
        let kind = super::local::kind_from_io(e);
        StorageError::new(self.store.clone(), Op::Read, Some(&self.path), kind).into_io()
    }

    /// The object path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Reader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.waiter.interrupted() {
            return Err(StorageError::new(
                self.store.clone(),
                Op::Read,
                Some(&self.path),
                ErrorKind::Interrupted,
            )
            .into_io());
        }
        // Borrow juggling: map the error after the call, without holding the buffer.
        let failed = match &mut self.inner {
            ReaderInner::Local(r) => r.fill_buf().err(),
            ReaderInner::Object(r) => r.fill_buf().err(),
        };
        if let Some(e) = failed {
            return Err(self.wrap(e));
        }
        match &mut self.inner {
            ReaderInner::Local(r) => r.fill_buf(),
            ReaderInner::Object(r) => r.fill_buf(),
        }
    }

    fn consume(&mut self, amt: usize) {
        match &mut self.inner {
            ReaderInner::Local(r) => r.consume(amt),
            ReaderInner::Object(r) => r.consume(amt),
        }
    }
}

pub(super) enum WriterInner {
    Local(LocalWriter),
    Object(ObjectWriter),
}

/// A streaming writer of one object; implements `Write`. Nothing is visible under the final
/// name until [`Writer::commit`]; dropping the writer without committing discards everything
/// (removes the temp file, aborts the multipart upload).
pub struct Writer {
    pub(super) inner: Option<WriterInner>,
    pub(super) store: String,
    pub(super) path: String,
    pub(super) url: String,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Writer({})", self.url)
    }
}

impl Writer {
    pub(super) fn err(&self, op: Op, kind: ErrorKind) -> StorageError {
        StorageError::new(self.store.clone(), op, Some(&self.path), kind)
    }

    /// The URL of the object being written (no credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Makes the object visible under its name, atomically. On error nothing is visible.
    pub fn commit(mut self) -> Result<(), StorageError> {
        let result = match self.inner.take() {
            Some(WriterInner::Local(w)) => w.commit(),
            Some(WriterInner::Object(w)) => w.commit(),
            None => Err(ErrorKind::Backend("the writer is closed".into())),
        };
        result.map_err(|k| self.err(Op::Commit, k))
    }

    /// Discards what was written. The error only reports a clean-up that could not be done
    /// now (it is journaled and retried later).
    pub fn abort(mut self) -> Result<(), StorageError> {
        let result = match self.inner.take() {
            Some(WriterInner::Local(mut w)) => {
                w.discard();
                Ok(())
            }
            Some(WriterInner::Object(w)) => w.abort(),
            None => Ok(()),
        };
        result.map_err(|k| self.err(Op::Write, k))
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = match &mut self.inner {
            Some(WriterInner::Local(w)) => w.write(buf),
            Some(WriterInner::Object(w)) => w.write(buf),
            None => {
                return Err(self
                    .err(Op::Write, ErrorKind::Backend("the writer is closed".into()))
                    .into_io());
            }
        };
        r.map_err(|e| self.err(Op::Write, super::local::kind_from_io(e)).into_io())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Some(WriterInner::Local(w)) => w.flush(),
            Some(WriterInner::Object(w)) => w.flush(),
            None => Ok(()),
        }
    }
}
