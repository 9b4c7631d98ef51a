//! Watched folders: files dropped into a job's folder are picked up once complete, moved to
//! `<watch>/.ferry/processing/`, run once, then moved to `archive/` (or deleted) on success or
//! to `failed/` with `NAME.error.txt` on failure.
//!
//! A file is complete when its size and modification time stayed unchanged for the job's
//! `settle` time. The claim is a rename inside the same file system, so a file is never picked
//! up twice, also across restarts: what lies in `processing/` at start belongs to a recorded run
//! (or is claimed again when the daemon died between the rename and the record).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::spec::{AfterFile, WatchSpec};
use crate::config::Config;

/// Subfolder of a watched folder where ferry keeps its files.
pub const FERRY_DIR: &str = ".ferry";

/// The folders of one watched folder.
#[derive(Debug, Clone)]
pub struct WatchDirs {
    /// The watched folder.
    pub dir: PathBuf,
    /// Files whose run is queued or going.
    pub processing: PathBuf,
    /// Files whose run succeeded.
    pub archive: PathBuf,
    /// Files whose run failed, each with `NAME.error.txt`.
    pub failed: PathBuf,
}

impl WatchDirs {
    /// The folders for a watch spec, resolved against the project root.
    pub fn new(config: &Config, watch: &WatchSpec) -> WatchDirs {
        let dir = config.root.join(&watch.path);
        let base = dir.join(FERRY_DIR);
        WatchDirs {
            processing: base.join("processing"),
            archive: base.join("archive"),
            failed: base.join("failed"),
            dir,
        }
    }

    /// Creates the folders when missing.
    pub fn create(&self) -> std::io::Result<()> {
        for d in [&self.dir, &self.processing, &self.archive, &self.failed] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }
}

/// A file that has settled and can be claimed.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Where it lies now.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
}

/// What file events said about files in watched folders: which are being written (modified
/// and not closed yet) and which were renamed into place (complete at once).
#[derive(Debug, Default)]
pub struct FileEvents {
    writing: HashMap<PathBuf, Instant>,
    renamed: HashMap<PathBuf, Instant>,
}

/// A writer that stays silent this long no longer holds its file back (a lost close event must
/// not block a file forever).
const WRITING_HOLD: std::time::Duration = std::time::Duration::from_secs(60);

/// Most file events kept at once; the oldest are dropped beyond it (a scan still finds every
/// file, events only say whether a writer holds one open).
const EVENTS_MAX: usize = 10_000;

/// What a file event means to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEffect {
    /// Nothing: reads, opens, metadata changes, and ferry's own moves out of the folder. The
    /// daemon's scans open the folder (inotify reports `IN_OPEN`), so treating these as changes
    /// would make every scan wake the next one.
    Ignore,
    /// Bookkeeping only (a file went away): recorded, but there is nothing new to pick up.
    Record,
    /// A file may have appeared or changed: recorded, and the folder is scanned soon.
    Wake,
}

/// Classifies a notify event by its kind and paths (see [`EventEffect`]). Hidden names (ferry's
/// own `.ferry/` folder, editors' swap files) are ignored whatever happened to them.
pub fn effect(event: &notify::Event) -> EventEffect {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    let hidden = |p: &PathBuf| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
    };
    if !event.paths.is_empty() && event.paths.iter().all(hidden) {
        return EventEffect::Ignore;
    }
    match event.kind {
        EventKind::Create(_)
        | EventKind::Modify(ModifyKind::Data(_))
        | EventKind::Modify(ModifyKind::Any)
        | EventKind::Modify(ModifyKind::Name(RenameMode::To))
        | EventKind::Modify(ModifyKind::Name(RenameMode::Both))
        | EventKind::Access(AccessKind::Close(AccessMode::Write)) => EventEffect::Wake,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
            EventEffect::Record
        }
        _ => EventEffect::Ignore,
    }
}

impl FileEvents {
    /// Records a notify event.
    pub fn record(&mut self, event: &notify::Event) {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
        if effect(event) == EventEffect::Ignore {
            return;
        }
        let now = Instant::now();
        let paths: &[PathBuf] = match event.kind {
            // A rename within the folder reports (from, to): only the new name matters here.
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                if let Some(from) = event.paths.first() {
                    self.forget(from);
                }
                event.paths.get(1..).unwrap_or(&[])
            }
            _ => &event.paths,
        };
        for path in paths {
            match event.kind {
                EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Data(_))
                | EventKind::Modify(ModifyKind::Any) => {
                    self.writing.insert(path.clone(), now);
                    self.renamed.remove(path);
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    self.writing.remove(path);
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
                    self.writing.remove(path);
                    self.renamed.insert(path.clone(), now);
                }
                _ => self.forget(path),
            }
        }
        self.prune(now);
    }

    fn forget(&mut self, path: &Path) {
        self.writing.remove(path);
        self.renamed.remove(path);
    }

    /// Drops entries that no longer matter: writers silent for longer than the hold, renames of
    /// files no scan took (a name the pattern does not match), and, beyond the bound, the oldest
    /// (in bulk, so that a flood of events costs little per event).
    fn prune(&mut self, now: Instant) {
        if self.len() < EVENTS_MAX {
            return;
        }
        self.writing
            .retain(|_, t| now.duration_since(*t) < WRITING_HOLD);
        self.renamed
            .retain(|_, t| now.duration_since(*t) < WRITING_HOLD);
        for map in [&mut self.writing, &mut self.renamed] {
            if map.len() > EVENTS_MAX / 4 {
                let mut times: Vec<Instant> = map.values().copied().collect();
                times.sort_unstable();
                let cut = times[times.len() - EVENTS_MAX / 4];
                map.retain(|_, t| *t >= cut);
            }
        }
    }

    /// How many files the events track now (bounded; for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.writing.len() + self.renamed.len()
    }

    /// Whether no file is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_writing(&self, path: &Path) -> bool {
        self.writing
            .get(path)
            .is_some_and(|t| t.elapsed() < WRITING_HOLD)
    }

    fn take_renamed(&mut self, path: &Path) -> bool {
        self.renamed.remove(path).is_some()
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    size: u64,
    mtime: Option<SystemTime>,
    since: Instant,
}

/// Tracks candidate files of one watched folder until they settle.
#[derive(Debug, Default)]
pub struct Settler {
    seen: HashMap<PathBuf, Seen>,
}

impl Settler {
    /// Whether files are waiting to settle (the caller then scans more often).
    pub fn pending(&self) -> bool {
        !self.seen.is_empty()
    }

    /// Scans the folder and returns the files that have settled, oldest first by name.
    /// A file is ready when no writer holds it open (per file events) and it either stayed
    /// unchanged for `settle` or was renamed into place.
    pub fn scan(
        &mut self,
        dir: &Path,
        matcher: &globset::GlobMatcher,
        watch: &WatchSpec,
        events: &mut FileEvents,
    ) -> std::io::Result<Vec<Ready>> {
        let now = Instant::now();
        let mut present = Vec::new();
        let mut ready = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ready),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !matcher.is_match(name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let path = entry.path();
            present.push(path.clone());
            let (size, mtime) = (meta.len(), meta.modified().ok());
            let seen = self.seen.entry(path.clone()).or_insert(Seen {
                size,
                mtime,
                since: now,
            });
            if seen.size != size || seen.mtime != mtime {
                *seen = Seen {
                    size,
                    mtime,
                    since: now,
                };
            }
            if events.is_writing(&path) {
                continue;
            }
            if now.duration_since(seen.since) >= watch.settle || events.take_renamed(&path) {
                ready.push(Ready { path, size });
            }
        }
        self.seen.retain(|p, _| present.contains(p));
        for r in &ready {
            self.seen.remove(&r.path);
        }
        ready.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ready)
    }
}

/// What identifies a dropped file for its claim in a shared history: its name, size and
/// modification time (so the same name dropped again later is a new file); `None` when the file
/// is gone (another host took it since the scan).
pub fn claim_key(path: &Path, size: u64) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Some(format!("{name}|{size}|{mtime}"))
}

/// Moves a file into `dir`, choosing `NAME`, `NAME.1`, `NAME.2`, ... when the name is taken.
pub fn move_into(file: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", file.display())))?;
    let mut target = dir.join(name);
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{}.{n}", name.to_string_lossy()));
        n += 1;
    }
    std::fs::rename(file, &target)?;
    Ok(target)
}

/// Moves a processed file to its final place: `archive/` or deleted on success, `failed/` with
/// an error file on failure.
pub fn finish(
    dirs: &WatchDirs,
    file: &Path,
    succeeded: bool,
    after: AfterFile,
    error_text: &str,
) -> std::io::Result<Option<PathBuf>> {
    if !file.exists() {
        return Ok(None);
    }
    if succeeded {
        return match after {
            AfterFile::Delete => std::fs::remove_file(file).map(|_| None),
            AfterFile::Archive => move_into(file, &dirs.archive).map(Some),
        };
    }
    let target = move_into(file, &dirs.failed)?;
    let mut err_path = target.clone().into_os_string();
    err_path.push(".error.txt");
    std::fs::write(&err_path, error_text)?;
    Ok(Some(target))
}

/// Compiles a watch pattern (`*.csv`).
pub fn matcher(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid watch pattern {pattern:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::Watcher;
    use std::time::Duration;

    /// Every event a real watcher reports on `dir` while `act` runs, until it has been quiet for
    /// a moment.
    fn events_of(dir: &Path, act: impl FnOnce()) -> Vec<notify::Event> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut w = notify::recommended_watcher(move |r: notify::Result<notify::Event>| {
            if let Ok(ev) = r {
                let _ = tx.send(ev);
            }
        })
        .unwrap();
        w.watch(dir, notify::RecursiveMode::NonRecursive).unwrap();
        act();
        let mut out = Vec::new();
        while let Ok(ev) = rx.recv_timeout(Duration::from_millis(300)) {
            out.push(ev);
        }
        out
    }

    #[test]
    fn the_daemons_own_scans_and_moves_wake_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("drop");
        let dirs = WatchDirs {
            processing: dir.join(".ferry/processing"),
            archive: dir.join(".ferry/archive"),
            failed: dir.join(".ferry/failed"),
            dir: dir.clone(),
        };
        dirs.create().unwrap();
        std::fs::write(dir.join("a.csv"), "x\n").unwrap();
        let watch = WatchSpec {
            path: dir.clone(),
            pattern: "*.csv".into(),
            settle: Duration::ZERO,
            after: AfterFile::Archive,
            poll: None,
        };
        let matcher = matcher("*.csv").unwrap();
        let mut settler = Settler::default();
        let mut fe = FileEvents::default();
        // What a scan and a claim do: read the folder, stat the file, move it out.
        let seen = events_of(&dir, || {
            for _ in 0..3 {
                let ready = settler.scan(&dir, &matcher, &watch, &mut fe).unwrap();
                for r in ready {
                    let claimed = move_into(&r.path, &dirs.processing).unwrap();
                    finish(&dirs, &claimed, true, AfterFile::Archive, "").unwrap();
                }
            }
        });
        assert!(!seen.is_empty(), "inotify reports the daemon's own reads");
        for ev in &seen {
            assert_ne!(effect(ev), EventEffect::Wake, "{ev:?}");
        }
        // A file dropped by someone does wake the scan.
        let seen = events_of(&dir, || {
            std::fs::write(dir.join("b.csv"), "y\n").unwrap();
        });
        assert!(
            seen.iter().any(|e| effect(e) == EventEffect::Wake),
            "{seen:?}"
        );
    }

    #[test]
    fn tracked_events_stay_bounded() {
        let mut fe = FileEvents::default();
        for i in 0..(EVENTS_MAX * 3) {
            let ev = notify::Event::new(notify::EventKind::Modify(
                notify::event::ModifyKind::Name(notify::event::RenameMode::To),
            ))
            .add_path(PathBuf::from(format!("/w/never-matching-{i}.tmp")));
            fe.record(&ev);
        }
        assert!(fe.len() <= EVENTS_MAX, "{}", fe.len());
    }
}
