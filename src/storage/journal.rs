//! The journal of pending writes: one small file per temp file or multipart upload in
//! progress, under the project's `data/.ferry/pending/`, removed when the write is committed or
//! discarded.
//!
//! A process that dies mid-write (killed by the watchdog, a crash, a power cut) leaves its entry
//! behind; [`super::recover`] and the opening of a store read the entries whose owner process is
//! gone and finish the clean-up: remove the temp file, abort the multipart upload. An abort that
//! fails while the run ends (the server is down) marks its entry as abandoned, so the next
//! recovery retries it. Reading the journal costs one `read_dir` of a folder that is almost always
//! empty, so it is cheap enough to do whenever a store is opened.
//!
//! The journal is best effort: when it cannot be written the write still goes ahead (a warning is
//! logged); only the later clean-up of that write is lost.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A write in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Pending {
    /// A temp file next to its final name.
    Temp {
        /// The temp file.
        path: PathBuf,
        /// The process writing it; `None` once abandoned.
        pid: Option<u32>,
    },
    /// The temp files of one bulk copy (see `bulk.rs`): one entry for the whole batch.
    Batch {
        /// The temp files, each next to its final name.
        paths: Vec<PathBuf>,
        /// The process writing them; `None` once abandoned.
        pid: Option<u32>,
    },
    /// A multipart upload to an S3 store.
    Upload {
        /// The store's URL (no credentials).
        store: String,
        /// The store's config name, when it has one.
        name: Option<String>,
        /// The endpoint, to tell apart servers holding the same bucket name.
        endpoint: Option<String>,
        /// The full object key.
        key: String,
        /// The multipart upload id.
        upload_id: String,
        /// The process uploading; `None` once abandoned.
        pid: Option<u32>,
    },
}

impl Pending {
    fn pid(&self) -> Option<u32> {
        match self {
            Pending::Temp { pid, .. }
            | Pending::Batch { pid, .. }
            | Pending::Upload { pid, .. } => *pid,
        }
    }

    fn abandon(&mut self) {
        match self {
            Pending::Temp { pid, .. }
            | Pending::Batch { pid, .. }
            | Pending::Upload { pid, .. } => *pid = None,
        }
    }

    /// Whether no live process owns this write any more.
    pub(crate) fn is_stale(&self) -> bool {
        match self.pid() {
            None => true,
            Some(pid) => !process_alive(pid),
        }
    }
}

/// Whether a process with this id runs (a zombie does not; a pid reused by another process
/// counts as alive, which only delays a clean-up).
pub(crate) fn process_alive(pid: u32) -> bool {
    crate::process::alive(pid)
}

/// The journal folder.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    dir: PathBuf,
}

/// An entry of this process, removed by [`EntryHandle::done`] or marked by
/// [`EntryHandle::abandon`].
#[derive(Debug)]
pub(crate) struct EntryHandle {
    file: PathBuf,
    pending: Pending,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A name unique within the host: process id, a counter and the clock.
pub(crate) fn unique_suffix() -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{nanos:08x}", std::process::id())
}

impl Journal {
    /// The journal in `dir` (created on first use).
    pub(crate) fn new(dir: &Path) -> Journal {
        Journal {
            dir: dir.to_path_buf(),
        }
    }

    /// Records a pending write; `None` (with a warning) when the journal cannot be written.
    pub(crate) fn record(&self, pending: Pending) -> Option<EntryHandle> {
        let file = self.dir.join(format!("{}.json", unique_suffix()));
        let result = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let text = serde_json::to_vec(&pending).map_err(std::io::Error::other)?;
            std::fs::write(&file, text)
        });
        match result {
            Ok(()) => Some(EntryHandle { file, pending }),
            Err(e) => {
                tracing::warn!(
                    "cannot journal a pending write in {}: {e}; it will not be cleaned up after a crash",
                    self.dir.display()
                );
                None
            }
        }
    }

    /// Every readable entry with its file. Unreadable entries are skipped (and logged).
    pub(crate) fn entries(&self) -> Vec<(PathBuf, Pending)> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Pending>(&b).ok())
            {
                Some(p) => out.push((path, p)),
                None => tracing::warn!("ignoring an unreadable journal entry {}", path.display()),
            }
        }
        out
    }

    /// Removes the temp files of stale entries (their process is gone, or they were abandoned)
    /// and those entries; returns how many temp files were removed. Entries still owned by a
    /// live process are left alone.
    pub(crate) fn clean_temp_files(&self) -> usize {
        let mut removed = 0;
        for (file, pending) in self.entries() {
            if !pending.is_stale() {
                continue;
            }
            let paths = match &pending {
                Pending::Temp { path, .. } => std::slice::from_ref(path),
                Pending::Batch { paths, .. } => paths.as_slice(),
                Pending::Upload { .. } => continue,
            };
            let mut all_gone = true;
            for path in paths.iter().filter(|p| is_temp_name(p)) {
                match std::fs::remove_file(path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!("cannot remove stale temp file {}: {e}", path.display());
                        all_gone = false;
                    }
                }
            }
            if all_gone {
                let _ = std::fs::remove_file(&file);
            }
        }
        removed
    }
}

impl EntryHandle {
    /// The write is finished (committed or cleaned up): forget it.
    pub(crate) fn done(self) {
        if let Err(e) = std::fs::remove_file(&self.file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove journal entry {}: {e}", self.file.display());
        }
    }

    /// The clean-up failed: leave the entry for the next recovery, owned by no process.
    pub(crate) fn abandon(mut self) {
        self.pending.abandon();
        if let Ok(text) = serde_json::to_vec(&self.pending) {
            let _ = std::fs::write(&self.file, text);
        }
    }
}

/// The marker in temp file names: `.NAME.ferry-tmp-PID-N-NANOS`.
pub const TEMP_MARKER: &str = ".ferry-tmp-";

/// Whether a path is a ferry temp file (by its name).
pub fn is_temp_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.contains(TEMP_MARKER))
}

/// The pid in a temp file name, if it has one.
fn temp_pid(name: &str) -> Option<u32> {
    let (_, rest) = name.split_once(TEMP_MARKER)?;
    rest.split('-').next()?.parse().ok()
}

/// Removes ferry temp files below `dir` (recursively) whose writing process is gone: a sweep
/// for the daemon's start, covering temp files whose journal entry was lost. Symlinks are not
/// followed. Returns how many files were removed.
pub fn sweep_temp_files(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let ft = entry.file_type()?;
            let path = entry.path();
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file()
                && let Some(name) = path.file_name().and_then(|n| n.to_str())
                && is_temp_name(&path)
                && temp_pid(name).is_none_or(|pid| !process_alive(pid))
            {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_and_pids() {
        assert!(is_temp_name(Path::new("/x/.a.csv.ferry-tmp-12-0-ff")));
        assert!(!is_temp_name(Path::new("/x/a.csv")));
        assert_eq!(temp_pid(".a.ferry-tmp-12-0-ff"), Some(12));
    }

    #[test]
    fn abandoned_entries_are_stale_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(&dir.path().join("j"));
        let temp = dir.path().join(".x.ferry-tmp-1-2-3");
        std::fs::write(&temp, b"partial").unwrap();
        let h = j
            .record(Pending::Temp {
                path: temp.clone(),
                pid: Some(std::process::id()),
            })
            .unwrap();
        // Owned by this (live) process: left alone.
        assert_eq!(j.clean_temp_files(), 0);
        h.abandon();
        assert_eq!(j.clean_temp_files(), 1);
        assert!(!temp.exists());
        assert!(j.entries().is_empty());
    }

    #[test]
    fn a_stale_batch_entry_removes_every_temp_file_it_lists() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(&dir.path().join("j"));
        let temps: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!(".f{i}.ferry-tmp-1-2-3-{i}")))
            .collect();
        // Two were written before the crash, the third never was; a final name is left alone.
        std::fs::write(&temps[0], b"partial").unwrap();
        std::fs::write(&temps[1], b"whole").unwrap();
        std::fs::write(dir.path().join("f0"), b"final").unwrap();
        let h = j
            .record(Pending::Batch {
                paths: temps.clone(),
                pid: Some(std::process::id()),
            })
            .unwrap();
        assert_eq!(j.clean_temp_files(), 0, "a live batch is left alone");
        h.abandon();
        assert_eq!(j.clean_temp_files(), 2);
        assert!(temps.iter().all(|t| !t.exists()));
        assert!(dir.path().join("f0").exists());
        assert!(j.entries().is_empty());
    }
}
