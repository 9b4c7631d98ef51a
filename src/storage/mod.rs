//! Stores: local folders, S3 buckets and memory, behind one synchronous API that streams,
//! writes atomically and keeps local stores confined.
//!
//! Plain Rust: nothing here knows Lua or jobs. The Lua binding is `lua/store.rs`.
//!
//! - [`StorageConfig`] is what `ferry.toml` says (allowed roots, named stores); a
//!   [`StoreRegistry`] opens stores by name or URL ([`StoreUrl`]) for one run, keeping memory
//!   stores alive for the run and reusing clients.
//! - [`Store`] offers `list`, `stat`, `exists`, `read`, `write`, `open` ([`Reader`]), `create`
//!   ([`Writer`]), `delete`, `copy`; [`copy`] copies across stores, streaming.
//! - Local stores live in `local.rs` (std::fs, temp file + fsync + rename); S3 and memory stores
//!   in `object.rs` (object_store, multipart uploads). [`copy_files`] (`bulk.rs`) copies many
//!   files at once for backups and restores: hashed while copied, on a few threads, and into a
//!   local store made durable per batch (temp files, one `syncfs`, renames, one `syncfs`) rather
//!   than per file. Every blocking wait goes through the one
//!   runtime in `runtime.rs` and gives up when the caller's [`Interrupt`] fires.
//! - Pending writes are journaled (`journal.rs`) so that [`recover`] can remove temp files and
//!   abort uploads left behind by a process that died.
//! - `confine.rs` is the one confinement check of local paths ([`confine_path`],
//!   [`confine_dir`], [`Confinement`]): local stores use it, and so do the
//!   other layers for every file a script or job spec names.
//!
//! Invariants: nothing half-written is visible under a final name; a [`Writer`] that is dropped
//! without [`Writer::commit`] discards its data; memory use of a read, write or copy is bounded
//! by a few buffers whatever the object's size; no message contains a credential.

mod bulk;
mod config;
mod confine;
mod error;
mod journal;
mod local;
mod object;
mod runtime;
mod url;

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::aws::AmazonS3Builder;
use object_store::memory::InMemory;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

pub use bulk::{BulkItem, BulkOptions, Conflict, FileError, Outcome, copy_files, hex};
pub use config::{S3Options, Secret, StorageConfig, StoreSpec};
pub use confine::{Confinement, confine_dir, confine_path};
pub use error::{ErrorKind, Op, StorageError};
pub use journal::{TEMP_MARKER, is_temp_name, sweep_temp_files};
pub use runtime::Interrupt;
pub(crate) use runtime::{block_on_interruptible, runtime_handle};
pub use url::{StoreUrl, validate_path, validate_prefix};

use journal::{Journal, Pending};
use local::{LocalBackend, LocalReader, LocalWriter};
use object::{ObjectBackend, ObjectReader, ObjectWriter, Remote};

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
    interrupt: Option<Interrupt>,
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

enum Backend {
    Local(LocalBackend),
    Object(Arc<ObjectBackend>),
}

struct Inner {
    spec: StoreSpec,
    label: String,
    backend: Backend,
}

/// An open store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Gives up blocking calls when the caller is being stopped (see [`Store::uninterruptible`]).
    waiter: Waiter,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.inner.label)
    }
}

impl Store {
    fn err(&self, op: Op, path: Option<&str>, kind: ErrorKind) -> StorageError {
        StorageError::new(self.inner.label.clone(), op, path, kind)
    }

    fn check(&self, op: Op, path: &str) -> Result<(), StorageError> {
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
        self.err(op, Some(path), local::kind_from_io(e))
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

/// The area where runs keep their own copies of their artifacts (`artifacts_dir`), as a local
/// store: writable here, though scripts cannot reach it (it is a protected path). A run's
/// copies live under `RUN_ID/NAME`, so what a run recorded stays what it recorded whatever later
/// runs write to the same store path.
pub fn artifact_area(config: &StorageConfig) -> Result<Store, StorageError> {
    let dir = &config.artifacts_dir;
    let label = format!("artifacts ({})", dir.display());
    std::fs::create_dir_all(dir)
        .map_err(|e| StorageError::new(label.clone(), Op::Open, None, ErrorKind::Io(e)))?;
    let mut own = StorageConfig::new(config.root.clone(), vec![dir.clone()]);
    own.state_dir = config.state_dir.clone();
    own.artifacts_dir = dir.clone();
    own.protected = vec![config.state_dir.clone()];
    let path = dir.to_str().ok_or_else(|| {
        StorageError::new(
            label.clone(),
            Op::Open,
            None,
            ErrorKind::Config("the artifacts folder's path is not UTF-8".into()),
        )
    })?;
    StoreRegistry::new(own).open(path, S3Options::default())
}

/// Copies an object from one store to another, streaming (bounded memory), atomically at the
/// destination. Within one S3 client or one memory store the copy is server-side. Returns the
/// bytes copied, when known (a server-side copy reports the source size).
pub fn copy(src: &Store, src_path: &str, dst: &Store, dst_path: &str) -> Result<u64, StorageError> {
    src.check(Op::Copy, src_path)?;
    dst.check(Op::Copy, dst_path)?;
    if let (Backend::Object(a), Backend::Object(b)) = (&src.inner.backend, &dst.inner.backend)
        && Arc::ptr_eq(&a.store, &b.store)
    {
        let size = src.stat(src_path)?.map(|m| m.size).unwrap_or(0);
        b.copy_from(a, src_path, dst_path, &dst.waiter)
            .map_err(|k| dst.err(Op::Copy, Some(dst_path), k))?;
        return Ok(size);
    }
    stream_copy(src, src_path, dst, dst_path, &mut std::io::sink())
}

/// Copies like [`copy`], always streaming through this process, and returns the bytes copied
/// with the SHA-256 of the content, computed on the way: one read of the source where hashing
/// and copying separately would take two.
pub fn copy_hashed(
    src: &Store,
    src_path: &str,
    dst: &Store,
    dst_path: &str,
) -> Result<(u64, [u8; 32]), StorageError> {
    use sha2::Digest;
    src.check(Op::Copy, src_path)?;
    dst.check(Op::Copy, dst_path)?;
    let mut hasher = HashWrite(sha2::Sha256::new());
    let n = stream_copy(src, src_path, dst, dst_path, &mut hasher)?;
    Ok((n, hasher.0.finalize().into()))
}

/// A writer that only hashes.
struct HashWrite(sha2::Sha256);

impl Write for HashWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sha2::Digest::update(&mut self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes into `a` and `b`.
struct Tee<'a, A: Write, B: Write + ?Sized>(&'a mut A, &'a mut B);

impl<A: Write, B: Write + ?Sized> Write for Tee<'_, A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.write_all(&buf[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Streams `src_path` to `dst_path` (atomic at the destination), every byte also given to
/// `also`.
fn stream_copy(
    src: &Store,
    src_path: &str,
    dst: &Store,
    dst_path: &str,
    also: &mut dyn Write,
) -> Result<u64, StorageError> {
    let mut reader = src.open(src_path)?;
    let mut writer = dst.create(dst_path, WriteOptions::default())?;
    let mut tee = Tee(&mut writer, also);
    let n = local::copy_bufread(&mut reader, &mut tee, &dst.waiter).map_err(|k| {
        // Errors while reading name the source, others the destination.
        match k {
            ErrorKind::Interrupted => dst.err(Op::Copy, Some(dst_path), k),
            k => StorageError::new(
                format!("{} -> {}", src.label(), dst.label()),
                Op::Copy,
                Some(&format!("{src_path} -> {dst_path}")),
                k,
            ),
        }
    })?;
    writer.commit()?;
    Ok(n)
}

enum ReaderInner {
    Local(LocalReader),
    Object(ObjectReader),
}

/// A streaming reader of one object; implements `Read` and `BufRead`. Errors carry the store
/// and path (get them back with [`StorageError::from_io`]).
pub struct Reader {
    inner: ReaderInner,
    store: String,
    path: String,
    waiter: Waiter,
}

impl Reader {
    fn wrap(&self, e: io::Error) -> io::Error {
        let kind = local::kind_from_io(e);
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

enum WriterInner {
    Local(LocalWriter),
    Object(ObjectWriter),
}

/// A streaming writer of one object; implements `Write`. Nothing is visible under the final
/// name until [`Writer::commit`]; dropping the writer without committing discards everything
/// (removes the temp file, aborts the multipart upload).
pub struct Writer {
    inner: Option<WriterInner>,
    store: String,
    path: String,
    url: String,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Writer({})", self.url)
    }
}

impl Writer {
    fn err(&self, op: Op, kind: ErrorKind) -> StorageError {
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
        r.map_err(|e| self.err(Op::Write, local::kind_from_io(e)).into_io())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Some(WriterInner::Local(w)) => w.flush(),
            Some(WriterInner::Object(w)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// Opens stores for one run (or one daemon task): by config name or URL, with memory stores
/// shared by name for the registry's life and clients reused for identical specs.
pub struct StoreRegistry {
    config: StorageConfig,
    waiter: Waiter,
    memory: Mutex<HashMap<String, Arc<InMemory>>>,
    cache: Mutex<HashMap<String, Store>>,
}

impl std::fmt::Debug for StoreRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreRegistry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Retries of S3 requests: a few quick ones, so an unreachable server fails a run within
/// seconds rather than object_store's default three minutes.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

fn cache_key(spec: &StoreSpec) -> String {
    let s = &spec.s3;
    let secret = |v: &Option<Secret>| v.as_ref().map(|x| x.expose().to_string());
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        spec.name,
        spec.url,
        s.endpoint,
        s.region,
        secret(&s.access_key_id),
        secret(&s.secret_access_key),
        secret(&s.session_token),
        s.allow_http,
        s.path_style
    )
}

impl StoreRegistry {
    /// A registry over a configuration.
    pub fn new(config: StorageConfig) -> StoreRegistry {
        StoreRegistry {
            config,
            waiter: Waiter::default(),
            memory: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Makes every blocking call of the stores it opens give up once `interrupt` returns true.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> StoreRegistry {
        self.waiter = Waiter {
            interrupt: Some(interrupt),
        };
        self
    }

    /// The configuration.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// Opens a store by config name or URL; `opts` (S3 options) override the named store's.
    /// Opening a store also cleans up what an earlier, dead process left behind in it.
    pub fn open(&self, name_or_url: &str, opts: S3Options) -> Result<Store, StorageError> {
        let spec = self.config.resolve(name_or_url, opts).map_err(|m| {
            StorageError::new(
                name_or_url_shown(name_or_url),
                Op::Open,
                None,
                ErrorKind::Config(m),
            )
        })?;
        let key = cache_key(&spec);
        if let Some(s) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(s.clone());
        }
        let store = self.open_spec(spec)?;
        match &store.inner.backend {
            Backend::Local(_) => {
                Journal::new(&self.config.state_dir).clean_temp_files();
            }
            Backend::Object(b) => {
                b.recover_uploads();
            }
        }
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, store.clone());
        Ok(store)
    }

    fn open_spec(&self, spec: StoreSpec) -> Result<Store, StorageError> {
        let label = spec.label();
        let fail = |k: ErrorKind| StorageError::new(label.clone(), Op::Open, None, k);
        let backend = match &spec.url {
            StoreUrl::Local(root) => {
                let confinement = Confinement::new(&self.config.allowed, &self.config.protected);
                Backend::Local(
                    LocalBackend::open(root, confinement, Journal::new(&self.config.state_dir))
                        .map_err(fail)?,
                )
            }
            StoreUrl::Memory { name } => {
                let mem = self
                    .memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(InMemory::new()))
                    .clone();
                Backend::Object(Arc::new(ObjectBackend {
                    store: mem.clone(),
                    multipart: mem,
                    prefix: String::new(),
                    remote: None,
                }))
            }
            StoreUrl::S3 { bucket, prefix } => {
                let s3 = build_s3(bucket, &spec.s3).map_err(fail)?;
                let s3 = Arc::new(s3);
                Backend::Object(Arc::new(ObjectBackend {
                    store: s3.clone(),
                    multipart: s3,
                    prefix: prefix.clone(),
                    remote: Some(Remote {
                        url: spec.url.to_url_string(),
                        name: spec.name.clone(),
                        endpoint: spec.s3.endpoint.clone(),
                        journal: Journal::new(&self.config.state_dir),
                    }),
                }))
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                spec,
                label,
                backend,
            }),
            waiter: self.waiter.clone(),
        })
    }
}

/// A name or URL as it may appear in a message: a URL with userinfo is cut down to its scheme.
fn name_or_url_shown(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) if rest.split('/').next().is_some_and(|h| h.contains('@')) => {
            format!("{scheme}://…")
        }
        _ => text.to_string(),
    }
}

fn build_s3(bucket: &str, o: &S3Options) -> Result<object_store::aws::AmazonS3, ErrorKind> {
    let http_endpoint = o
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout_disabled()
        .with_read_timeout(Duration::from_secs(60))
        .with_allow_http(o.allow_http.unwrap_or(http_endpoint));
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(client)
        .with_retry(retry_config());
    if let Some(e) = &o.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &o.region {
        b = b.with_region(r);
    }
    if let (Some(k), Some(s)) = (&o.access_key_id, &o.secret_access_key) {
        b = b
            .with_access_key_id(k.expose())
            .with_secret_access_key(s.expose());
    }
    if let Some(t) = &o.session_token {
        b = b.with_token(t.expose());
    }
    if let Some(p) = o.path_style {
        b = b.with_virtual_hosted_style_request(!p);
    }
    // object_store's builder errors name the option, never its value.
    b.build().map_err(|e| ErrorKind::Config(e.to_string()))
}

/// What [`recover`] cleaned up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Temp files removed.
    pub temp_files: usize,
    /// Multipart uploads aborted.
    pub uploads: usize,
}

/// Cleans up after processes that died mid-write: removes their temp files and aborts their
/// multipart uploads on the named S3 stores (uploads to stores opened with inline credentials
/// are aborted when such a store is next opened). For the daemon's start; safe while other
/// processes write, since only entries of dead processes are touched.
pub fn recover(config: &StorageConfig) -> Recovery {
    let journal = Journal::new(&config.state_dir);
    let temp_files = journal.clean_temp_files();
    let mut uploads = 0;
    let registry = StoreRegistry::new(config.clone());
    let mut seen = std::collections::HashSet::new();
    for (_, pending) in journal.entries() {
        let Pending::Upload {
            store,
            name,
            endpoint,
            ..
        } = &pending
        else {
            continue;
        };
        if !pending.is_stale() || !seen.insert((store.clone(), endpoint.clone())) {
            continue;
        }
        let target = name
            .as_deref()
            .filter(|n| config.stores.contains_key(*n))
            .unwrap_or(store.as_str());
        let Ok(spec) = config.resolve(target, S3Options::default()) else {
            continue;
        };
        if spec.s3.endpoint != *endpoint {
            continue;
        }
        match registry.open_spec(spec) {
            Ok(s) => {
                if let Backend::Object(b) = &s.inner.backend {
                    uploads += b.recover_uploads();
                }
            }
            Err(e) => tracing::warn!("cannot open {store} to abort unfinished uploads: {e}"),
        }
    }
    Recovery {
        temp_files,
        uploads,
    }
}
