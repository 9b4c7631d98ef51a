//! S3 and memory stores over object_store: readers that stream the response body chunk by
//! chunk, and writers that upload in parts.
//!
//! A writer buffers one part (5 MiB, growing for very large objects to stay under S3's 10,000
//! parts) and keeps at most [`MAX_IN_FLIGHT`] parts uploading, so its memory stays near
//! `part × (1 + MAX_IN_FLIGHT)` whatever the object's size. An object that fits in one part is
//! sent with a single PUT at commit, so small writes create no multipart upload. The multipart
//! upload completes at commit; on every other path (an error, a drop without commit) it is
//! aborted, because object_store does not abort on drop. Uploads are journaled so that an abort
//! that could not happen (the server is down, the process was killed) is retried later.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::task::JoinHandle;

use super::error::{ErrorKind, Op, StorageError};
use super::journal::{EntryHandle, Journal, Pending};
use super::{Meta, Waiter};

/// The first part size; S3's minimum for every part but the last.
pub(crate) const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts uploading at the same time while the writer fills the next one.
pub(crate) const MAX_IN_FLIGHT: usize = 2;
/// Every this many parts the part size grows by [`PART_SIZE`]: 1,000 parts of 5 MiB, then
/// 1,000 of 10 MiB, and so on, which reaches S3's 5 TiB object limit before its 10,000-part one.
const PARTS_PER_STEP: usize = 1000;
/// How long an abort may take while a run ends.
const ABORT_LIMIT: Duration = Duration::from_secs(10);

/// What the journal needs to find an S3 store again.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// The store URL (no credentials).
    pub(crate) url: String,
    /// The config name, if any.
    pub(crate) name: Option<String>,
    /// The endpoint, if not AWS.
    pub(crate) endpoint: Option<String>,
    /// The journal.
    pub(crate) journal: Journal,
}

/// An object_store-backed store with a key prefix.
pub(crate) struct ObjectBackend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) multipart: Arc<dyn MultipartStore>,
    /// Key prefix (no leading or trailing `/`), empty for none.
    pub(crate) prefix: String,
    /// Set for S3 stores: where and how to journal uploads. `None` for memory stores, which
    /// vanish with the process anyway.
    pub(crate) remote: Option<Remote>,
}

impl std::fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Maps an object_store error to a kind: not found, already exists, denied, unreachable.
pub(crate) fn map_error(e: object_store::Error, endpoint: Option<&str>) -> ErrorKind {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => ErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => ErrorKind::AlreadyExists,
        E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
            ErrorKind::Denied(format!(
                "the server refused the request; check the credentials and the bucket's permissions ({})",
                short(&*source)
            ))
        }
        E::InvalidPath { source } => ErrorKind::InvalidPath(source.to_string()),
        E::NotSupported { source } => ErrorKind::Unsupported(source.to_string()),
        other => {
            if let Some(cause) = connection_failure(&other) {
                let at = endpoint.unwrap_or("the S3 endpoint");
                ErrorKind::Unreachable(format!("cannot reach {at}: {cause}"))
            } else {
                ErrorKind::Backend(other.to_string())
            }
        }
    }
}

/// The innermost cause of a connection-level failure (connect, timeout, reset), if that is
/// what the error is.
fn connection_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut found = false;
    let mut last = String::new();
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>()
            && matches!(
                h.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
                    | HttpErrorKind::Request
            )
        {
            found = true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::TimedOut
            )
        {
            found = true;
        }
        last = err.to_string();
        cur = err.source();
    }
    found.then_some(last)
}

/// The first line of an error, shortened.
fn short(e: &(dyn std::error::Error + Send + Sync)) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("").to_string();
    if line.len() > 300 {
        let mut cut = 300;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &line[..cut])
    } else {
        line
    }
}

impl ObjectBackend {
    fn endpoint(&self) -> Option<&str> {
        self.remote.as_ref().and_then(|r| r.endpoint.as_deref())
    }

    pub(crate) fn err(&self, e: object_store::Error) -> ErrorKind {
        map_error(e, self.endpoint())
    }

    /// The full key of an object path (already validated).
    pub(crate) fn key(&self, path: &str) -> Result<ObjPath, ErrorKind> {
        let full = if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        };
        ObjPath::parse(&full).map_err(|e| ErrorKind::InvalidPath(e.to_string()))
    }

    fn relative(&self, key: &ObjPath) -> Option<String> {
        let k = key.as_ref();
        if self.prefix.is_empty() {
            Some(k.to_string())
        } else {
            k.strip_prefix(self.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .map(str::to_string)
        }
    }

    fn meta(&self, m: object_store::ObjectMeta) -> Option<Meta> {
        Some(Meta {
            path: self.relative(&m.location)?,
            size: m.size,
            modified: Some(m.last_modified),
            etag: m.e_tag,
        })
    }

    pub(crate) fn list(&self, prefix: &str, w: &Waiter) -> Result<Vec<Meta>, ErrorKind> {
        let full = match (self.prefix.is_empty(), prefix.is_empty()) {
            (true, true) => None,
            (false, true) => Some(ObjPath::parse(&self.prefix)),
            (true, false) => Some(ObjPath::parse(prefix)),
            (false, false) => Some(ObjPath::parse(format!("{}/{prefix}", self.prefix))),
        }
        .transpose()
        .map_err(|e| ErrorKind::InvalidPath(e.to_string()))?;
        let mut stream = self.store.list(full.as_ref());
        let mut out = Vec::new();
        loop {
            match w.wait(stream.next())? {
                None => break,
                Some(Ok(m)) => out.extend(self.meta(m)),
                Some(Err(e)) => return Err(self.err(e)),
            }
        }
        Ok(out)
    }

    pub(crate) fn stat(&self, path: &str, w: &Waiter) -> Result<Option<Meta>, ErrorKind> {
        let key = self.key(path)?;
        match w.wait(self.store.head(&key))? {
            Ok(m) => Ok(self.meta(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    pub(crate) fn open_read(&self, path: &str, w: &Waiter) -> Result<ObjectReader, ErrorKind> {
        let key = self.key(path)?;
        let got = w.wait(self.store.get(&key))?.map_err(|e| self.err(e))?;
        Ok(ObjectReader {
            stream: got.into_stream(),
            chunk: Bytes::new(),
            done: false,
            waiter: w.clone(),
            endpoint: self.endpoint().map(str::to_string),
        })
    }

    pub(crate) fn put(
        &self,
        path: &str,
        data: Bytes,
        if_absent: bool,
        w: &Waiter,
    ) -> Result<(), ErrorKind> {
        let key = self.key(path)?;
        let opts = PutOptions::from(if if_absent {
            PutMode::Create
        } else {
            PutMode::Overwrite
        });
        w.wait(self.store.put_opts(&key, PutPayload::from(data), opts))?
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(crate) fn delete(&self, path: &str, w: &Waiter) -> Result<(), ErrorKind> {
        let key = self.key(path)?;
        match w.wait(self.store.delete(&key))? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    pub(crate) fn copy(&self, from: &str, to: &str, w: &Waiter) -> Result<(), ErrorKind> {
        let (a, b) = (self.key(from)?, self.key(to)?);
        w.wait(self.store.copy(&a, &b))?.map_err(|e| self.err(e))
    }

    /// Copies from another path of the same underlying store (possibly under another prefix).
    pub(crate) fn copy_from(
        &self,
        src: &ObjectBackend,
        from: &str,
        to: &str,
        w: &Waiter,
    ) -> Result<(), ErrorKind> {
        let (a, b) = (src.key(from)?, self.key(to)?);
        w.wait(self.store.copy(&a, &b))?.map_err(|e| self.err(e))
    }

    pub(crate) fn create(
        self: &Arc<Self>,
        path: &str,
        if_absent: bool,
        w: &Waiter,
    ) -> Result<ObjectWriter, ErrorKind> {
        Ok(ObjectWriter {
            backend: self.clone(),
            key: self.key(path)?,
            buf: Vec::with_capacity(PART_SIZE),
            part_size: PART_SIZE,
            if_absent,
            upload: None,
            waiter: w.clone(),
            finished: false,
        })
    }

    /// Aborts journaled uploads of this store whose owner is gone. Returns how many.
    pub(crate) fn recover_uploads(&self) -> usize {
        let Some(remote) = &self.remote else {
            return 0;
        };
        let mut aborted = 0;
        for (file, pending) in remote.journal.entries() {
            let Pending::Upload {
                store,
                endpoint,
                key,
                upload_id,
                ..
            } = &pending
            else {
                continue;
            };
            if *store != remote.url || *endpoint != remote.endpoint || !pending.is_stale() {
                continue;
            }
            let Ok(path) = ObjPath::parse(key) else {
                let _ = std::fs::remove_file(&file);
                continue;
            };
            let fut = self.multipart.abort_multipart(&path, upload_id);
            match super::runtime::block_on_for(fut, ABORT_LIMIT) {
                Some(Ok(())) | Some(Err(object_store::Error::NotFound { .. })) => {
                    aborted += 1;
                    let _ = std::fs::remove_file(&file);
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        "cannot abort the unfinished upload of {key} in {store}: {}",
                        self.err(e)
                    );
                }
                None => tracing::warn!(
                    "cannot abort the unfinished upload of {key} in {store}: timed out"
                ),
            }
        }
        aborted
    }
}

/// A streaming reader of an object: one response body chunk in memory at a time.
pub(crate) struct ObjectReader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    done: bool,
    waiter: Waiter,
    endpoint: Option<String>,
}

impl BufRead for ObjectReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.chunk.is_empty() && !self.done {
            match self.waiter.wait(self.stream.next()) {
                Err(kind) => return Err(io_error(kind)),
                Ok(None) => self.done = true,
                Ok(Some(Ok(b))) => self.chunk = b,
                Ok(Some(Err(e))) => {
                    return Err(io_error(map_error(e, self.endpoint.as_deref())));
                }
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.chunk.len());
        let _ = self.chunk.split_to(amt);
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// An io::Error carrying a kind; the Store wrapper adds the store and path.
pub(crate) fn io_error(kind: ErrorKind) -> io::Error {
    StorageError::new("", Op::Read, None, kind).into_io()
}

struct Upload {
    id: String,
    parts: Vec<PartId>,
    in_flight: VecDeque<JoinHandle<object_store::Result<PartId>>>,
    entry: Option<EntryHandle>,
}

/// A writer that uploads in parts and completes the upload at commit.
pub(crate) struct ObjectWriter {
    backend: Arc<ObjectBackend>,
    key: ObjPath,
    buf: Vec<u8>,
    part_size: usize,
    if_absent: bool,
    upload: Option<Upload>,
    waiter: Waiter,
    finished: bool,
}

impl ObjectWriter {
    /// Sends the full buffer as the next part, starting the multipart upload if needed, and
    /// waits while too many parts are in flight.
    fn send_part(&mut self) -> Result<(), ErrorKind> {
        if self.if_absent {
            return Err(ErrorKind::Unsupported(format!(
                "create-if-absent writes to S3 and memory stores are limited to {} MiB (one request)",
                PART_SIZE / (1024 * 1024)
            )));
        }
        if self.upload.is_none() {
            let id = self
                .waiter
                .wait(self.backend.multipart.create_multipart(&self.key))?
                .map_err(|e| self.backend.err(e))?;
            let entry = self.backend.remote.as_ref().and_then(|r| {
                r.journal.record(Pending::Upload {
                    store: r.url.clone(),
                    name: r.name.clone(),
                    endpoint: r.endpoint.clone(),
                    key: self.key.to_string(),
                    upload_id: id.clone(),
                    pid: Some(std::process::id()),
                })
            });
            self.upload = Some(Upload {
                id,
                parts: Vec::new(),
                in_flight: VecDeque::new(),
                entry,
            });
        }
        let next_size = {
            let upload = self
                .upload
                .as_ref()
                .map(|u| u.parts.len() + u.in_flight.len());
            PART_SIZE * (1 + (upload.unwrap_or(0) + 1) / PARTS_PER_STEP)
        };
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(next_size));
        self.part_size = next_size;
        let rt = super::runtime::runtime().map_err(ErrorKind::Io)?;
        let Some(upload) = self.upload.as_mut() else {
            return Err(ErrorKind::Backend("no upload".into()));
        };
        let idx = upload.parts.len() + upload.in_flight.len();
        let (ms, key, id) = (
            self.backend.multipart.clone(),
            self.key.clone(),
            upload.id.clone(),
        );
        let payload = PutPayload::from(Bytes::from(data));
        upload
            .in_flight
            .push_back(rt.spawn(async move { ms.put_part(&key, &id, idx, payload).await }));
        while upload.in_flight.len() > MAX_IN_FLIGHT {
            Self::finish_one(upload, &self.waiter, &self.backend)?;
        }
        Ok(())
    }

    fn finish_one(
        upload: &mut Upload,
        waiter: &Waiter,
        backend: &ObjectBackend,
    ) -> Result<(), ErrorKind> {
        let Some(handle) = upload.in_flight.pop_front() else {
            return Ok(());
        };
        match waiter.wait(handle)? {
            Ok(Ok(part)) => {
                upload.parts.push(part);
                Ok(())
            }
            Ok(Err(e)) => Err(backend.err(e)),
            Err(join) => Err(ErrorKind::Backend(format!("upload task failed: {join}"))),
        }
    }

    /// Makes the object visible: a single PUT for a small object, else the last part and the
    /// completion of the multipart upload. On error, the upload is aborted.
    pub(crate) fn commit(mut self) -> Result<(), ErrorKind> {
        let result = self.commit_inner();
        if result.is_err() {
            // The abort's own failure is logged and journaled; the commit error is what counts.
            let _ = self.abort_upload();
        }
        self.finished = true;
        result
    }

    fn commit_inner(&mut self) -> Result<(), ErrorKind> {
        if self.upload.is_none() {
            let data = Bytes::from(std::mem::take(&mut self.buf));
            let mode = if self.if_absent {
                PutMode::Create
            } else {
                PutMode::Overwrite
            };
            self.waiter
                .wait(self.backend.store.put_opts(
                    &self.key,
                    PutPayload::from(data),
                    PutOptions::from(mode),
                ))?
                .map_err(|e| self.backend.err(e))?;
            return Ok(());
        }
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(ErrorKind::Backend("no upload".into()));
        };
        while !upload.in_flight.is_empty() {
            Self::finish_one(upload, &self.waiter, &self.backend)?;
        }
        let parts = std::mem::take(&mut upload.parts);
        self.waiter
            .wait(
                self.backend
                    .multipart
                    .complete_multipart(&self.key, &upload.id, parts),
            )?
            .map_err(|e| self.backend.err(e))?;
        if let Some(h) = upload.entry.take() {
            h.done();
        }
        self.upload = None;
        Ok(())
    }

    /// Discards everything written: aborts the multipart upload, if one was started.
    pub(crate) fn abort(mut self) -> Result<(), ErrorKind> {
        self.finished = true;
        self.abort_upload()
    }

    fn abort_upload(&mut self) -> Result<(), ErrorKind> {
        self.buf = Vec::new();
        let Some(mut upload) = self.upload.take() else {
            return Ok(());
        };
        // A part whose request is already on its way can land after the abort and leave the
        // upload behind (seen with s3s-fs under load): let in-flight parts settle first, and
        // cancel only those that take longer than the abort itself may.
        for h in upload.in_flight.drain(..) {
            let cancel = h.abort_handle();
            if super::runtime::block_on_for(h, ABORT_LIMIT).is_none() {
                cancel.abort();
            }
        }
        let fut = self
            .backend
            .multipart
            .abort_multipart(&self.key, &upload.id);
        let outcome = super::runtime::block_on_for(fut, ABORT_LIMIT);
        let result = match outcome {
            Some(Ok(())) | Some(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Some(Err(e)) => Err(self.backend.err(e)),
            None => Err(ErrorKind::Unreachable(format!(
                "the abort did not finish within {}s",
                ABORT_LIMIT.as_secs()
            ))),
        };
        match (result.is_ok(), upload.entry.take()) {
            (true, Some(h)) => h.done(),
            (false, Some(h)) => h.abandon(),
            _ => {}
        }
        if let Err(e) = &result {
            tracing::warn!(
                "cannot abort the multipart upload of {}: {e}; it will be retried when the store is next opened",
                self.key
            );
        }
        result
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::other("the writer is closed"));
        }
        let room = self.part_size.saturating_sub(self.buf.len());
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.part_size
            && let Err(kind) = self.send_part()
        {
            // A failed part poisons the writer: discard what was sent and refuse more.
            let _ = self.abort_upload();
            self.finished = true;
            return Err(io_error(kind));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.abort_upload();
        }
    }
}
