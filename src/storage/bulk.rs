//! Bulk copies: many files from one store to another in one call, hashed on the way, for
//! backups and restores ([`copy_files`]).
//!
//! Each file is read once: its SHA-256 is computed while it is copied, and when the caller
//! gives the digest it expects, a file whose bytes differ never reaches its final name.
//!
//! Into a local store, a batch is made durable as a whole instead of file by file: every file
//! is written to a temp name next to its final name (`.NAME.ferry-tmp-PID-N-NANOS-I`) without an
//! fsync, and its write-back is started at once; when all are written, one `syncfs` makes the
//! data durable, the temp files are renamed to their final names, and a second `syncfs` makes
//! the renames durable. One journal entry lists the temp files of the batch, so a process that
//! dies at any point leaves only temp files that recovery removes, never a partial file under a
//! final name. Folders are resolved against the confinement once per call ([`DirChecker`]).
//!
//! Into other stores (S3, memory) each file is uploaded on its own and committed only once its
//! digest is checked (an upload is atomic). Files are spread over a few threads (the machine's
//! cores, at most [`MAX_THREADS`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::confine::DirChecker;
use super::journal::{Pending, TEMP_MARKER, is_temp_name, unique_suffix};
use super::local::{LocalBackend, io_kind};
use super::store::Backend;
use super::{ErrorKind, Op, StorageError, Store, WriteOptions};
use crate::sync::LockExt;

/// At most this many threads copy at once.
pub const MAX_THREADS: usize = 4;

/// The copy buffer of each thread.
const BUFFER: usize = 1024 * 1024;

/// One file of a bulk copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    /// The path in the source store.
    pub from: String,
    /// The path in the destination store.
    pub to: String,
    /// The SHA-256 the content must have: a file that differs is not written.
    pub expect: Option<[u8; 32]>,
}

/// What to do with a file that exists at the destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Conflict {
    /// Replace it.
    #[default]
    Overwrite,
    /// Keep it and leave the file out ([`Outcome::Skipped`]).
    Skip,
    /// Keep it and fail the file ([`FileError::Exists`]).
    Fail,
}

/// Options of [`copy_files`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkOptions {
    /// Files that exist at the destination.
    pub on_conflict: Conflict,
    /// Stop starting files after the first failure (the rest are [`Outcome::NotAttempted`]).
    pub fail_fast: bool,
}

/// Why one file was not copied.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading, writing or committing failed, or the path is refused.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The content's digest is not the expected one; nothing was written.
    #[error("checksum mismatch (expected {}, got {})", hex(.expected), hex(.got))]
    Mismatch {
        /// What the caller expected.
        expected: [u8; 32],
        /// What the content has.
        got: [u8; 32],
    },
    /// The file exists at the destination and [`Conflict::Fail`] was asked for.
    #[error("exists at the target (on_conflict = \"fail\")")]
    Exists,
}

/// What became of one file.
#[derive(Debug)]
pub enum Outcome {
    /// Copied: its size and SHA-256.
    Copied {
        /// Bytes copied.
        size: u64,
        /// The SHA-256 of what was copied.
        sha256: [u8; 32],
    },
    /// Left out: it exists at the destination ([`Conflict::Skip`]).
    Skipped,
    /// Not copied, and why.
    Failed(FileError),
    /// Not started: an earlier file failed with [`BulkOptions::fail_fast`].
    NotAttempted,
}

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies `items` from `src` to `dst`, hashing each file as it is copied, and returns one
/// [`Outcome`] per item, in order. Each file is atomic at its destination; into a local store
/// the whole batch is made durable by two `syncfs` (see the module documentation). The error
/// is for the call as a whole: the run is being stopped (nothing of this call is left but
/// what was already committed), or the batch could not be made durable.
pub fn copy_files(
    src: &Store,
    dst: &Store,
    items: &[BulkItem],
    opts: BulkOptions,
) -> Result<Vec<Outcome>, StorageError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_THREADS)
        .min(items.len().max(1));
    let job = Job {
        src,
        dst,
        items,
        opts,
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        interrupted: AtomicBool::new(false),
        src_checker: match &src.inner.backend {
            Backend::Local(b) => Some(Mutex::new(DirChecker::new(b.confinement()))),
            Backend::Object(_) => None,
        },
        local: match &dst.inner.backend {
            Backend::Local(b) => Some(LocalDst::new(b, items)),
            Backend::Object(_) => None,
        },
        outcomes: Mutex::new((0..items.len()).map(|_| None).collect()),
    };
    // One journal entry for every temp file of the batch, removed once they are all gone.
    let mut batch = Batch {
        entry: job.local.as_ref().and_then(|l| {
            l.backend.journal().record(Pending::Batch {
                paths: l
                    .temps
                    .iter()
                    .filter(|p| !p.as_os_str().is_empty())
                    .cloned()
                    .collect(),
                pid: Some(std::process::id()),
            })
        }),
        ready: Vec::new(),
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(|| job.work());
        }
        job.work();
    });
    let mut outcomes: Vec<Outcome> = job
        .outcomes
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::NotAttempted))
        .collect();
    if let Some(l) = &job.local {
        batch.ready = std::mem::take(&mut *l.ready.lock_unpoisoned());
        batch.ready.sort_by_key(|r| r.0);
    }
    if job.interrupted.load(Ordering::Relaxed) {
        // `batch` removes the temp files when dropped.
        return Err(dst.err(Op::Copy, None, ErrorKind::Interrupted));
    }
    if let Some(l) = &job.local
        && !batch.ready.is_empty()
    {
        let root =
            File::open(&l.backend.root).map_err(|e| dst.err(Op::Commit, None, io_kind(e)))?;
        syncfs(&root).map_err(|e| dst.err(Op::Commit, None, ErrorKind::Io(e)))?;
        for (i, temp, dest) in std::mem::take(&mut batch.ready) {
            if let Err(e) = std::fs::rename(&temp, &dest) {
                let _ = std::fs::remove_file(&temp);
                outcomes[i] = Outcome::Failed(FileError::Storage(dst.err(
                    Op::Commit,
                    Some(&items[i].to),
                    io_kind(e),
                )));
            }
        }
        syncfs(&root).map_err(|e| dst.err(Op::Commit, None, ErrorKind::Io(e)))?;
    }
    Ok(outcomes)
}

/// Flushes the file system that holds `f` (data and metadata of every file on it).
fn syncfs(f: &File) -> io::Result<()> {
    // SAFETY: the descriptor is open for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Starts writing a file's dirty pages back to disk without waiting for it, so the batch's
/// `syncfs` has less left to wait for.
fn start_write_back(f: &File) {
    // SAFETY: the descriptor is open for the duration of the call; the call only schedules I/O.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// The temp files of a batch: those written and not yet renamed are removed when it is
/// dropped, and its journal entry with them.
struct Batch {
    entry: Option<super::journal::EntryHandle>,
    /// (item, temp file, final name) of the files written.
    ready: Vec<(usize, PathBuf, PathBuf)>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        let mut all_gone = true;
        for (_, temp, _) in self.ready.drain(..) {
            match std::fs::remove_file(&temp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!("cannot remove temp file {}: {e}", temp.display());
                    all_gone = false;
                }
            }
        }
        if let Some(h) = self.entry.take() {
            if all_gone { h.done() } else { h.abandon() }
        }
    }
}

/// A local destination: its temp names, fixed before the copy starts (they go into the
/// journal), and the folders made and checked so far.
struct LocalDst<'a> {
    backend: &'a LocalBackend,
    temps: Vec<PathBuf>,
    checker: Mutex<DirChecker<'a>>,
    ready: Mutex<Vec<(usize, PathBuf, PathBuf)>>,
}

impl<'a> LocalDst<'a> {
    fn new(backend: &'a LocalBackend, items: &[BulkItem]) -> LocalDst<'a> {
        let suffix = unique_suffix();
        let temps = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                // A path that is refused gets no temp file (its item fails before one is made).
                if super::validate_path(&item.to).is_err() {
                    return PathBuf::new();
                }
                let dest = backend.root.join(&item.to);
                let name = dest
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("object");
                let dir = dest.parent().unwrap_or(&backend.root);
                dir.join(format!(".{}{TEMP_MARKER}{suffix}-{i}", short_name(name)))
            })
            .collect();
        LocalDst {
            backend,
            temps,
            checker: Mutex::new(DirChecker::new(backend.confinement())),
            ready: Mutex::new(Vec::new()),
        }
    }
}

/// `name` cut so that a temp name stays within the usual 255-byte limit.
pub(crate) fn short_name(name: &str) -> &str {
    let mut short = name;
    while short.len() > 180 {
        let mut cut = short.len() - 1;
        while !short.is_char_boundary(cut) {
            cut -= 1;
        }
        short = &short[..cut];
    }
    short
}

/// The shared state of the threads of one call.
struct Job<'a> {
    src: &'a Store,
    dst: &'a Store,
    items: &'a [BulkItem],
    opts: BulkOptions,
    next: AtomicUsize,
    /// No new file is started (a failure with fail_fast, or an interrupt).
    stop: AtomicBool,
    interrupted: AtomicBool,
    src_checker: Option<Mutex<DirChecker<'a>>>,
    local: Option<LocalDst<'a>>,
    outcomes: Mutex<Vec<Option<Outcome>>>,
}

/// Where a copy failed, for the message.
enum Side {
    Read(ErrorKind),
    Write(ErrorKind),
}

impl Job<'_> {
    fn work(&self) {
        let mut buf = vec![0u8; BUFFER];
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = self.items.get(i) else {
                return;
            };
            let outcome = self.one(i, item, &mut buf);
            match &outcome {
                Outcome::Failed(FileError::Storage(e)) if e.is_interrupted() => {
                    self.interrupted.store(true, Ordering::Relaxed);
                    self.stop.store(true, Ordering::Relaxed);
                }
                Outcome::Failed(_) if self.opts.fail_fast => {
                    self.stop.store(true, Ordering::Relaxed);
                }
                _ => {}
            }
            if let Some(slot) = self.outcomes.lock_unpoisoned().get_mut(i) {
                *slot = Some(outcome);
            }
        }
    }

    fn interrupted(&self) -> bool {
        self.src.waiter.interrupted() || self.dst.waiter.interrupted()
    }

    fn one(&self, i: usize, item: &BulkItem, buf: &mut [u8]) -> Outcome {
        if let Err(e) = self
            .src
            .check(Op::Copy, &item.from)
            .and_then(|()| self.dst.check(Op::Copy, &item.to))
        {
            return Outcome::Failed(e.into());
        }
        if self.interrupted() {
            return Outcome::Failed(
                self.dst
                    .err(Op::Copy, Some(&item.to), ErrorKind::Interrupted)
                    .into(),
            );
        }
        match &self.local {
            Some(local) => self.copy_into_local(local, i, item, buf),
            None => self.copy_into_object(item, buf),
        }
    }

    /// Opens the source, reading a local file directly (its folder checked once per call).
    fn open_source(&self, item: &BulkItem) -> Result<Box<dyn Read + '_>, StorageError> {
        let (Backend::Local(b), Some(checker)) = (&self.src.inner.backend, &self.src_checker)
        else {
            return Ok(Box::new(self.src.open(&item.from)?));
        };
        let fail = |k| self.src.err(Op::Read, Some(&item.from), k);
        let path = b.root.join(&item.from);
        if is_temp_name(&path) {
            return Err(fail(ErrorKind::InvalidPath(format!(
                "{:?}: names containing {TEMP_MARKER:?} are reserved for ferry's temp files",
                item.from
            ))));
        }
        checker
            .lock_unpoisoned()
            .file_not_symlink(&path)
            .map_err(fail)?;
        // Not following a symlink here; a symlinked file gets the full check, then is opened.
        let mut open = OpenOptions::new();
        open.read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let file = match open.open(&path) {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                checker.lock_unpoisoned().full(&path).map_err(fail)?;
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&path)
            }
            other => other,
        }
        .map_err(|e| fail(io_kind(e)))?;
        let m = file.metadata().map_err(|e| fail(io_kind(e)))?;
        if !m.is_file() {
            return Err(fail(ErrorKind::NotFound));
        }
        Ok(Box::new(file))
    }

    /// Streams `r` into `w`, hashing; checks the interrupt between chunks.
    fn pump(
        &self,
        r: &mut dyn Read,
        w: &mut dyn Write,
        buf: &mut [u8],
    ) -> Result<(u64, [u8; 32]), Side> {
        let mut hasher = Sha256::new();
        let mut n = 0u64;
        loop {
            if self.interrupted() {
                return Err(Side::Write(ErrorKind::Interrupted));
            }
            let got = match r.read(buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Side::Read(super::local::kind_from_io(e))),
            };
            hasher.update(&buf[..got]);
            w.write_all(&buf[..got])
                .map_err(|e| Side::Write(super::local::kind_from_io(e)))?;
            n += got as u64;
        }
        Ok((n, hasher.finalize().into()))
    }

    /// The error of a failed pump, naming the source for reads and the destination otherwise.
    fn side_err(&self, item: &BulkItem, side: Side) -> StorageError {
        match side {
            Side::Write(ErrorKind::Interrupted) => {
                self.dst
                    .err(Op::Copy, Some(&item.to), ErrorKind::Interrupted)
            }
            Side::Read(k) => StorageError::new(
                format!("{} -> {}", self.src.label(), self.dst.label()),
                Op::Copy,
                Some(&format!("{} -> {}", item.from, item.to)),
                k,
            ),
            Side::Write(k) => self.dst.err(Op::Write, Some(&item.to), k),
        }
    }

    fn check_digest(item: &BulkItem, got: [u8; 32]) -> Result<(), FileError> {
        match item.expect {
            Some(expected) if expected != got => Err(FileError::Mismatch { expected, got }),
            _ => Ok(()),
        }
    }

    fn copy_into_local(
        &self,
        local: &LocalDst<'_>,
        i: usize,
        item: &BulkItem,
        buf: &mut [u8],
    ) -> Outcome {
        let fail = |k| Outcome::Failed(self.dst.err(Op::Write, Some(&item.to), k).into());
        let dest = local.backend.root.join(&item.to);
        if is_temp_name(&dest) {
            return fail(ErrorKind::InvalidPath(format!(
                "{:?}: names containing {TEMP_MARKER:?} are reserved for ferry's temp files",
                item.to
            )));
        }
        let Some(dir) = dest.parent() else {
            return fail(ErrorKind::InvalidPath(format!(
                "{:?} has no folder",
                item.to
            )));
        };
        {
            let mut checker = local.checker.lock_unpoisoned();
            if checker.known(dir).is_none() {
                if let Err(e) = std::fs::create_dir_all(dir) {
                    return fail(io_kind(e));
                }
                if let Err(k) = checker.dir(dir) {
                    return fail(k);
                }
            }
            // The final name is replaced by a rename, which never follows a symlink there.
            if let Err(k) = checker.file_not_symlink(&dest) {
                return fail(k);
            }
        }
        if self.opts.on_conflict != Conflict::Overwrite
            && std::fs::metadata(&dest).is_ok_and(|m| m.is_file())
        {
            return match self.opts.on_conflict {
                Conflict::Skip => Outcome::Skipped,
                _ => Outcome::Failed(FileError::Exists),
            };
        }
        let mut reader = match self.open_source(item) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e.into()),
        };
        let temp = &local.temps[i];
        let mut file = match OpenOptions::new().write(true).create_new(true).open(temp) {
            Ok(f) => f,
            Err(e) => return fail(io_kind(e)),
        };
        let pumped = self.pump(&mut reader, &mut file, buf);
        let result = match pumped {
            Err(side) => Err(FileError::Storage(self.side_err(item, side))),
            Ok((size, sha256)) => Self::check_digest(item, sha256).map(|()| (size, sha256)),
        };
        match result {
            Ok((size, sha256)) => {
                start_write_back(&file);
                drop(file);
                local.ready.lock_unpoisoned().push((i, temp.clone(), dest));
                Outcome::Copied { size, sha256 }
            }
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(temp);
                Outcome::Failed(e)
            }
        }
    }

    fn copy_into_object(&self, item: &BulkItem, buf: &mut [u8]) -> Outcome {
        if self.opts.on_conflict != Conflict::Overwrite {
            match self.dst.exists(&item.to) {
                Ok(false) => {}
                Ok(true) if self.opts.on_conflict == Conflict::Skip => return Outcome::Skipped,
                Ok(true) => return Outcome::Failed(FileError::Exists),
                Err(e) => return Outcome::Failed(e.into()),
            }
        }
        let mut reader = match self.open_source(item) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e.into()),
        };
        let mut writer = match self.dst.create(&item.to, WriteOptions::default()) {
            Ok(w) => w,
            Err(e) => return Outcome::Failed(e.into()),
        };
        let result = match self.pump(&mut reader, &mut writer, buf) {
            Err(side) => Err(FileError::Storage(self.side_err(item, side))),
            Ok((size, sha256)) => Self::check_digest(item, sha256).map(|()| (size, sha256)),
        };
        match result {
            Ok((size, sha256)) => match writer.commit() {
                Ok(()) => Outcome::Copied { size, sha256 },
                Err(e) => Outcome::Failed(e.into()),
            },
            Err(e) => {
                if let Err(a) = writer.abort() {
                    tracing::warn!("{a}");
                }
                Outcome::Failed(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{S3Options, StorageConfig, StoreRegistry};
    use std::path::Path;

    fn stores(dir: &Path) -> (StoreRegistry, Store, Store) {
        let config = StorageConfig::new(dir.to_path_buf(), vec![dir.join("data")]);
        std::fs::create_dir_all(dir.join("data/src/a/b")).unwrap();
        std::fs::create_dir_all(dir.join("data/dst")).unwrap();
        let reg = StoreRegistry::new(config);
        let src = reg.open("data/src", S3Options::default()).unwrap();
        let dst = reg.open("data/dst", S3Options::default()).unwrap();
        (reg, src, dst)
    }

    fn item(from: &str, to: &str) -> BulkItem {
        BulkItem {
            from: from.into(),
            to: to.into(),
            expect: None,
        }
    }

    fn digest(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    #[test]
    fn copies_hash_verify_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_reg, src, dst) = stores(dir.path());
        std::fs::write(dir.path().join("data/src/a/b/x.txt"), b"hello").unwrap();
        std::fs::write(dir.path().join("data/src/y.txt"), b"world").unwrap();
        let mut bad = item("y.txt", "bad/y.txt");
        bad.expect = Some(digest(b"not world"));
        let mut good = item("y.txt", "good/y.txt");
        good.expect = Some(digest(b"world"));
        let items = vec![
            item("a/b/x.txt", "deep/a/b/x.txt"),
            bad,
            good,
            item("missing.txt", "m.txt"),
        ];
        let out = copy_files(&src, &dst, &items, BulkOptions::default()).unwrap();
        assert!(
            matches!(&out[0], Outcome::Copied { size: 5, sha256 } if *sha256 == digest(b"hello"))
        );
        assert!(
            matches!(&out[1], Outcome::Failed(FileError::Mismatch { got, .. }) if *got == digest(b"world"))
        );
        assert!(matches!(&out[2], Outcome::Copied { size: 5, .. }));
        match &out[3] {
            Outcome::Failed(FileError::Storage(e)) => assert!(e.is_not_found(), "{e}"),
            other => panic!("{other:?}"),
        }
        let d = dir.path().join("data/dst");
        assert_eq!(std::fs::read(d.join("deep/a/b/x.txt")).unwrap(), b"hello");
        assert_eq!(std::fs::read(d.join("good/y.txt")).unwrap(), b"world");
        assert!(!d.join("bad/y.txt").exists(), "a mismatch is never written");
        let leftovers: Vec<_> = walk(&d).into_iter().filter(|p| is_temp_name(p)).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let journal = dir.path().join("data/.ferry/pending");
        assert_eq!(
            std::fs::read_dir(&journal).map(|d| d.count()).unwrap_or(0),
            0,
            "the batch's journal entry is gone"
        );
    }

    #[test]
    fn conflicts_fail_fast_and_refused_paths() {
        let dir = tempfile::tempdir().unwrap();
        let (_reg, src, dst) = stores(dir.path());
        std::fs::write(dir.path().join("data/src/y.txt"), b"new").unwrap();
        std::fs::write(dir.path().join("data/dst/y.txt"), b"old").unwrap();
        let items = vec![item("y.txt", "y.txt")];
        let skip = BulkOptions {
            on_conflict: Conflict::Skip,
            fail_fast: false,
        };
        assert!(matches!(
            copy_files(&src, &dst, &items, skip).unwrap()[0],
            Outcome::Skipped
        ));
        let fail = BulkOptions {
            on_conflict: Conflict::Fail,
            fail_fast: true,
        };
        let many = vec![item("y.txt", "y.txt"), item("y.txt", "z.txt")];
        let out = copy_files(&src, &dst, &many, fail).unwrap();
        assert!(matches!(out[0], Outcome::Failed(FileError::Exists)));
        // One thread per core: the second may have started before the first failed.
        assert!(matches!(
            out[1],
            Outcome::NotAttempted | Outcome::Copied { .. }
        ));
        assert_eq!(
            std::fs::read(dir.path().join("data/dst/y.txt")).unwrap(),
            b"old"
        );
        // A symlink out of the roots, `..` and a reserved temp name are refused per file.
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("data/src/out")).unwrap();
        let refused = vec![
            item("out", "out"),
            item("../x", "x"),
            item("y.txt", ".a.ferry-tmp-1-2-3"),
        ];
        let out = copy_files(&src, &dst, &refused, BulkOptions::default()).unwrap();
        for o in &out {
            assert!(matches!(o, Outcome::Failed(FileError::Storage(_))), "{o:?}");
        }
        assert!(!dir.path().join("data/dst/out").exists());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
