//! Copies of one object across stores: server-side within one S3 client or memory store,
//! streamed (and optionally hashed on the way) otherwise.

use std::io::{self, Write};
use std::sync::Arc;

use super::store::{Backend, Store};
use super::{ErrorKind, Op, StorageError, WriteOptions};

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
pub(super) fn stream_copy(
    src: &Store,
    src_path: &str,
    dst: &Store,
    dst_path: &str,
    also: &mut dyn Write,
) -> Result<u64, StorageError> {
    let mut reader = src.open(src_path)?;
    let mut writer = dst.create(dst_path, WriteOptions::default())?;
    let mut tee = Tee(&mut writer, also);
    let n = super::local::copy_bufread(&mut reader, &mut tee, &dst.waiter).map_err(|k| {
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
