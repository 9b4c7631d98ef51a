//! Local stores: a folder on disk, confined to the allowed roots, written atomically.
//!
//! This backend uses `std::fs` directly rather than object_store's `LocalFileSystem`, because
//! ferry needs three things that one does not give: an fsync before the rename, temp files with
//! a recognisable name that a crash recovery can find, and confinement that follows symlinks.
//!
//! Confinement ([`super::confine`]): every path is resolved through the file system and must
//! lie under an allowed root and outside the protected paths, so a symlink inside a store cannot
//! lead out of it.
//!
//! Atomic writes: a writer writes `.NAME.ferry-tmp-PID-N-NANOS` in the destination folder; at
//! commit it is flushed, fsynced, and renamed over `NAME` (or hard-linked to `NAME` for
//! create-if-absent, which fails if `NAME` exists), then the folder is fsynced. A writer dropped
//! without commit removes its temp file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::confine::{Confinement, DirChecker};
use super::error::ErrorKind;
use super::journal::{EntryHandle, Journal, Pending, TEMP_MARKER, is_temp_name, unique_suffix};
use super::{Meta, Unreadable, Waiter};

/// Buffer size of local readers and writers.
const IO_BUFFER: usize = 256 * 1024;

/// A local store rooted at a folder.
#[derive(Debug)]
pub(crate) struct LocalBackend {
    pub(crate) root: PathBuf,
    confinement: Confinement,
    journal: Journal,
}

pub(crate) fn io_kind(e: io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::Denied(e.to_string()),
        io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        _ => ErrorKind::Io(e),
    }
}

impl LocalBackend {
    /// Opens a local store, checking its root against the confinement.
    pub(crate) fn open(
        root: &Path,
        confinement: Confinement,
        journal: Journal,
    ) -> Result<LocalBackend, ErrorKind> {
        confinement.check(root)?;
        if root.is_file() {
            return Err(ErrorKind::Config(format!(
                "{} is a file; a local store is a folder",
                root.display()
            )));
        }
        Ok(LocalBackend {
            root: root.to_path_buf(),
            confinement,
            journal,
        })
    }

    /// The confinement of the store's paths.
    pub(crate) fn confinement(&self) -> &Confinement {
        &self.confinement
    }

    /// The journal of the store's pending writes.
    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The confined file path of an object path (already validated).
    fn file(&self, path: &str) -> Result<PathBuf, ErrorKind> {
        let p = self.root.join(path);
        if is_temp_name(&p) {
            return Err(ErrorKind::InvalidPath(format!(
                "{path:?}: names containing {TEMP_MARKER:?} are reserved for ferry's temp files"
            )));
        }
        self.confinement.check(&p)?;
        Ok(p)
    }

    pub(crate) fn stat(&self, path: &str) -> Result<Option<Meta>, ErrorKind> {
        let file = self.file(path)?;
        match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => Ok(Some(meta(path.to_string(), &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_kind(e)),
        }
    }

    pub(crate) fn open_read(&self, path: &str) -> Result<LocalReader, ErrorKind> {
        let file = self.file(path)?;
        let f = File::open(&file).map_err(io_kind)?;
        let m = f.metadata().map_err(io_kind)?;
        if !m.is_file() {
            return Err(ErrorKind::NotFound);
        }
        Ok(BufReader::with_capacity(IO_BUFFER, f))
    }

    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<Meta>, ErrorKind> {
        Ok(self.walk(prefix, false)?.0)
    }

    /// Every file under `prefix`, and (when `strict`) every entry that is not listed with the
    /// reason: a dangling symlink, a fifo, socket or device, a symlink to a folder (not
    /// followed) or out of the allowed roots, ferry's own files, an entry that cannot be read.
    /// With `strict`, a missing start folder is [`ErrorKind::NotFound`]; otherwise it lists
    /// nothing. ferry's in-flight temp files are never listed nor reported.
    pub(crate) fn walk(
        &self,
        prefix: &str,
        strict: bool,
    ) -> Result<(Vec<Meta>, Vec<Unreadable>), ErrorKind> {
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.file(prefix)?
        };
        if strict && !start.is_dir() {
            return Err(match start.symlink_metadata() {
                Ok(_) => ErrorKind::InvalidPath(format!("{} is not a folder", start.display())),
                Err(_) => ErrorKind::NotFound,
            });
        }
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        let rel = |p: &Path| -> String {
            let r = p.strip_prefix(&self.root).unwrap_or(p);
            r.to_string_lossy().into_owned()
        };
        // Every folder and file is checked against the confinement; folders are resolved once.
        let mut checker = DirChecker::new(&self.confinement);
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || e.kind() == io::ErrorKind::NotADirectory =>
                {
                    continue;
                }
                Err(e) if strict => {
                    skipped.push(Unreadable::new(
                        rel(&dir),
                        format!("cannot list the folder: {e}"),
                    ));
                    continue;
                }
                Err(e) => return Err(io_kind(e)),
            };
            for entry in entries {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) if strict => {
                        skipped.push(Unreadable::new(
                            rel(&dir),
                            format!("cannot list the folder: {e}"),
                        ));
                        continue;
                    }
                    Err(e) => return Err(io_kind(e)),
                };
                let path = entry.path();
                if is_temp_name(&path) {
                    continue;
                }
                match self.entry(&mut checker, &path, &entry, strict) {
                    Ok(Entry::Folder) => stack.push(path),
                    Ok(Entry::File(m)) => {
                        match path.strip_prefix(&self.root).ok().and_then(Path::to_str) {
                            Some(r) => out.push(meta(r.to_string(), &m)),
                            None if strict => skipped.push(Unreadable::new(
                                rel(&path),
                                "the name is not valid UTF-8".to_string(),
                            )),
                            None => tracing::warn!(
                                "skipping a file whose name is not UTF-8: {}",
                                path.display()
                            ),
                        }
                    }
                    Err(reason) if strict => skipped.push(Unreadable::new(rel(&path), reason)),
                    Err(_) => {}
                }
            }
        }
        Ok((out, skipped))
    }

    /// What a directory entry is for a listing: a folder to descend into, a file to list, or
    /// why it is neither.
    fn entry(
        &self,
        checker: &mut DirChecker<'_>,
        path: &Path,
        entry: &std::fs::DirEntry,
        strict: bool,
    ) -> Result<Entry, String> {
        use std::os::unix::fs::FileTypeExt;
        let ft = entry
            .file_type()
            .map_err(|e| format!("cannot read its type: {e}"))?;
        if ft.is_symlink() {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            if std::fs::metadata(path).is_err() {
                return Err(format!(
                    "dangling symlink (to {target}, which does not exist)"
                ));
            }
            if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
                return Err(format!(
                    "symlink to a folder (to {target}); folder links are not followed"
                ));
            }
        }
        // Symlinked folders are not followed (no cycles); symlinked files are listed when they
        // stay inside the confinement.
        let checked = if ft.is_symlink() {
            checker.full(path)
        } else {
            checker.file_not_symlink(path)
        };
        let real = checked.map_err(|k| match k {
            ErrorKind::Denied(m) => m,
            other => other.to_string(),
        })?;
        if ft.is_dir() {
            checker.learn(path.to_path_buf(), real);
            return Ok(Entry::Folder);
        }
        let m = std::fs::metadata(&real).map_err(|e| format!("cannot read its metadata: {e}"))?;
        let ft = m.file_type();
        if ft.is_fifo() {
            return Err("a named pipe (fifo), not a regular file".into());
        }
        if ft.is_socket() {
            return Err("a socket, not a regular file".into());
        }
        if ft.is_block_device() || ft.is_char_device() {
            return Err("a device, not a regular file".into());
        }
        if !m.is_file() {
            return Err("not a regular file".into());
        }
        if strict && !readable(&real) {
            return Err("permission denied (not readable by this process)".into());
        }
        Ok(Entry::File(m))
    }

    /// Removes the folder of `prefix` and the folders under it that are empty (deepest first);
    /// folders that still hold something stay.
    pub(crate) fn remove_empty_dirs(&self, prefix: &str) -> Result<(), ErrorKind> {
        let top = self.file(prefix.trim_end_matches('/'))?;
        let mut dirs = Vec::new();
        let mut stack = vec![top];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
            dirs.push(dir);
        }
        // Children were pushed after their parents: remove in reverse order.
        for dir in dirs.iter().rev() {
            // Fails (and is left) when not empty, or gone already.
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    pub(crate) fn delete(&self, path: &str) -> Result<(), ErrorKind> {
        let file = self.file(path)?;
        match std::fs::remove_file(&file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_kind(e)),
        }
    }

    pub(crate) fn create(&self, path: &str, if_absent: bool) -> Result<LocalWriter, ErrorKind> {
        let dest = self.file(path)?;
        let dir = dest
            .parent()
            .ok_or_else(|| ErrorKind::InvalidPath(format!("{path:?} has no folder")))?;
        std::fs::create_dir_all(dir).map_err(io_kind)?;
        // The folder was created under a checked path; check again now that it exists, in case
        // a symlink on the way was swapped meanwhile.
        self.confinement.check(dir)?;
        let name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let short = super::bulk::short_name(name);
        let temp = dir.join(format!(".{short}{TEMP_MARKER}{}", unique_suffix()));
        let entry = self.journal.record(Pending::Temp {
            path: temp.clone(),
            pid: Some(std::process::id()),
        });
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_kind);
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                if let Some(h) = entry {
                    h.done();
                }
                return Err(e);
            }
        };
        Ok(LocalWriter {
            file: Some(BufWriter::with_capacity(IO_BUFFER, file)),
            temp,
            dest,
            if_absent,
            entry,
        })
    }

    /// Copies within the store, atomically at the destination.
    pub(crate) fn copy(&self, from: &str, to: &str, rt: &Waiter) -> Result<u64, ErrorKind> {
        let mut src = self.open_read(from)?;
        let mut w = self.create(to, false)?;
        let n = copy_bufread(&mut src, &mut w, rt)?;
        w.commit()?;
        Ok(n)
    }
}

/// Copies a buffered reader into a writer, checking the interrupt between chunks.
pub(crate) fn copy_bufread<R: BufRead + ?Sized, W: Write + ?Sized>(
    src: &mut R,
    dst: &mut W,
    rt: &Waiter,
) -> Result<u64, ErrorKind> {
    let mut n: u64 = 0;
    loop {
        if rt.interrupted() {
            return Err(ErrorKind::Interrupted);
        }
        let chunk = match src.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(kind_from_io(e)),
        };
        if chunk.is_empty() {
            return Ok(n);
        }
        let len = chunk.len();
        dst.write_all(chunk).map_err(kind_from_io)?;
        src.consume(len);
        n += len as u64;
    }
}

/// The storage error kind inside an io::Error, or the io::Error itself.
pub(crate) fn kind_from_io(e: io::Error) -> ErrorKind {
    match super::StorageError::from_io(&e) {
        Some(_) => match e.into_inner().map(|b| b.downcast::<super::StorageError>()) {
            Some(Ok(se)) => se.kind,
            _ => ErrorKind::Backend("storage error".into()),
        },
        None => io_kind(e),
    }
}

/// A directory entry as a listing sees it.
enum Entry {
    Folder,
    File(std::fs::Metadata),
}

/// Whether this process may read the file (`access(R_OK)`: what `open` would say, without
/// opening it, which would block on a fifo and cost a descriptor per file).
fn readable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that lives across the call.
    unsafe { libc::access(c.as_ptr(), libc::R_OK) == 0 }
}

fn meta(path: String, m: &std::fs::Metadata) -> Meta {
    Meta {
        path,
        size: m.len(),
        modified: m.modified().ok().map(DateTime::<Utc>::from),
        etag: None,
    }
}

/// A writer to a temp file, committed by rename.
#[derive(Debug)]
pub(crate) struct LocalWriter {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    dest: PathBuf,
    if_absent: bool,
    entry: Option<EntryHandle>,
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("the writer is closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl LocalWriter {
    /// Makes the object visible under its final name.
    pub(crate) fn commit(mut self) -> Result<(), ErrorKind> {
        let result = self.commit_inner();
        if result.is_err() {
            self.discard();
        }
        result
    }

    fn commit_inner(&mut self) -> Result<(), ErrorKind> {
        let file = self
            .file
            .take()
            .ok_or_else(|| ErrorKind::Backend("the writer is closed".into()))?;
        let file = file.into_inner().map_err(|e| io_kind(e.into_error()))?;
        file.sync_all().map_err(io_kind)?;
        drop(file);
        if self.if_absent {
            // A hard link fails if the name exists: create-if-absent without a race.
            std::fs::hard_link(&self.temp, &self.dest).map_err(io_kind)?;
            std::fs::remove_file(&self.temp).map_err(io_kind)?;
        } else {
            std::fs::rename(&self.temp, &self.dest).map_err(io_kind)?;
        }
        if let Some(dir) = self.dest.parent()
            && let Ok(d) = File::open(dir)
        {
            // Persist the rename itself; some file systems refuse to fsync a folder, which only
            // weakens durability, not atomicity.
            let _ = d.sync_all();
        }
        if let Some(h) = self.entry.take() {
            h.done();
        }
        Ok(())
    }

    /// Removes the temp file; the final name is untouched.
    pub(crate) fn discard(&mut self) {
        self.file = None;
        match std::fs::remove_file(&self.temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("cannot remove temp file {}: {e}", self.temp.display());
                if let Some(h) = self.entry.take() {
                    h.abandon();
                }
                return;
            }
        }
        if let Some(h) = self.entry.take() {
            h.done();
        }
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.is_some() || self.entry.is_some() {
            self.discard();
        }
    }
}

/// A local reader: a buffered file.
pub(crate) type LocalReader = BufReader<File>;
