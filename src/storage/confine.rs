//! Confinement: the one check for every file path a script or a job spec names — local
//! stores and the objects in them, SQLite databases (and what they `ATTACH`), watched folders,
//! artifacts, Redis dump files (which go through stores) and the modules `require` loads.
//!
//! A path is refused when it has a `..` segment (also percent-encoded: `%2e%2e`, `.%2e`), and
//! otherwise resolved through the file system — symlinks followed in its deepest existing
//! ancestor — and must then lie under an allowed root and outside the protected paths (the
//! history database and the storage journal). So neither `..`, an absolute path, a symlink that
//! leads out nor an encoded `..` reaches a file outside the roots.

use std::io;
use std::path::{Path, PathBuf};

use super::StorageConfig;
use super::error::ErrorKind;

/// The allowed roots and the protected paths.
#[derive(Debug, Clone)]
pub struct Confinement {
    allowed: Vec<PathBuf>,
    protected: Vec<PathBuf>,
}

/// Resolves symlinks in the deepest existing ancestor of `path` and appends the rest. `path`
/// must be absolute and free of `..` (checked by the callers).
pub(crate) fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match existing.symlink_metadata() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name() else {
                    return Err(e);
                };
                rest.push(name.to_os_string());
                if !existing.pop() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    // A dangling symlink exists (symlink_metadata) but cannot be canonicalised: an error.
    let mut real = existing.canonicalize()?;
    for name in rest.into_iter().rev() {
        real.push(name);
    }
    Ok(real)
}

impl Confinement {
    /// Paths must lead under one of `allowed` and outside every `protected` path.
    pub fn new(allowed: &[PathBuf], protected: &[PathBuf]) -> Confinement {
        Confinement {
            allowed: allowed.to_vec(),
            protected: protected.to_vec(),
        }
    }

    /// The allowed roots, for messages.
    pub fn roots_text(&self) -> String {
        if self.allowed.is_empty() {
            return "none".into();
        }
        self.allowed
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks that `path` (absolute, no `..`) resolves under an allowed root and outside the
    /// protected paths. Returns the resolved path.
    pub fn check(&self, path: &Path) -> Result<PathBuf, ErrorKind> {
        self.resolved().check(path)
    }

    /// The roots and protected paths resolved once, for many checks in a row (a walk, a bulk
    /// copy): each [`Confinement::check`] resolves them again.
    pub(crate) fn resolved(&self) -> Resolved<'_> {
        Resolved {
            confinement: self,
            inside: self
                .allowed
                .iter()
                .filter_map(|r| resolve(r).ok())
                .collect(),
            roots: self
                .allowed
                .iter()
                .map(|r| resolve(r).unwrap_or_else(|_| r.clone()))
                .collect(),
            protected: self
                .protected
                .iter()
                .map(|p| resolve(p).unwrap_or_else(|_| p.clone()))
                .collect(),
        }
    }

    /// Whether `real` (a resolved folder) is or contains a protected path: a folder that holds
    /// ferry's own files (the history database, the journal) must not be handed out whole.
    pub fn holds_protected(&self, real: &Path) -> Option<PathBuf> {
        // The journal comes first in the list, the history database's files after it: name
        // the database first.
        let (journal, history) = self.protected.split_at(self.protected.len().min(1));
        history.iter().chain(journal).find_map(|p| {
            let p_real = resolve(p).unwrap_or_else(|_| p.clone());
            p_real.starts_with(real).then(|| p.clone())
        })
    }
}

/// A [`Confinement`] whose roots and protected paths are resolved (see
/// [`Confinement::resolved`]).
#[derive(Debug, Clone)]
pub(crate) struct Resolved<'a> {
    confinement: &'a Confinement,
    /// The roots that resolve: a path must lead under one of them.
    inside: Vec<PathBuf>,
    /// Every root, resolved where it can be: the roots that open part of a protected folder.
    roots: Vec<PathBuf>,
    /// The protected paths, resolved where they can be.
    protected: Vec<PathBuf>,
}

impl Resolved<'_> {
    /// [`Confinement::check`] with the roots resolved already.
    pub(crate) fn check(&self, path: &Path) -> Result<PathBuf, ErrorKind> {
        if !path.is_absolute() {
            return Err(ErrorKind::InvalidPath(format!(
                "{}: a relative path where an absolute one was expected",
                path.display()
            )));
        }
        refuse_dot_segments(&path.to_string_lossy()).map_err(ErrorKind::InvalidPath)?;
        let real = resolve(path).map_err(|e| {
            ErrorKind::Denied(format!(
                "cannot resolve {} ({e}); a local store path must lead to a folder under the allowed roots: {}",
                path.display(),
                self.confinement.roots_text()
            ))
        })?;
        self.judge(path, real)
    }

    /// The verdict on `path` once it is known to lead to `real`: under an allowed root and
    /// outside the protected paths, or refused.
    pub(crate) fn judge(&self, path: &Path, real: PathBuf) -> Result<PathBuf, ErrorKind> {
        if !self.inside.iter().any(|r| real.starts_with(r)) {
            let via = if real != path {
                format!(" (it leads to {})", real.display())
            } else {
                String::new()
            };
            return Err(ErrorKind::Denied(format!(
                "{}{via} is outside the allowed roots: {}; add its folder to `allow` under [storage] in ferry.toml",
                path.display(),
                self.confinement.roots_text()
            )));
        }
        // A root allowed explicitly *inside* a protected folder (a run's own temporary folder)
        // opens that part of it, and only that part.
        let protected = self.protected.iter().any(|p| {
            real.starts_with(p)
                && !self
                    .roots
                    .iter()
                    .any(|r| r.starts_with(p) && real.starts_with(r))
        });
        if protected {
            return Err(ErrorKind::Denied(format!(
                "{} belongs to ferry itself (run history or storage journal); scripts may not touch it",
                path.display()
            )));
        }
        Ok(real)
    }
}

/// Checks many paths against a confinement, resolving each folder once: a file whose last
/// component is not a symlink lies where its resolved folder says, so only its own verdict
/// (the protected paths) is left to decide. A symlinked file gets the full check.
#[derive(Debug)]
pub(crate) struct DirChecker<'a> {
    resolved: Resolved<'a>,
    dirs: std::collections::HashMap<PathBuf, PathBuf>,
}

impl<'a> DirChecker<'a> {
    /// A checker with an empty cache.
    pub(crate) fn new(confinement: &'a Confinement) -> DirChecker<'a> {
        DirChecker {
            resolved: confinement.resolved(),
            dirs: std::collections::HashMap::new(),
        }
    }

    /// The resolved folder `dir`, checked (from the cache after the first time).
    pub(crate) fn dir(&mut self, dir: &Path) -> Result<PathBuf, ErrorKind> {
        if let Some(real) = self.dirs.get(dir) {
            return Ok(real.clone());
        }
        let real = self.resolved.check(dir)?;
        self.dirs.insert(dir.to_path_buf(), real.clone());
        Ok(real)
    }

    /// Checks `path`, known not to be a symlink itself (the caller looked, or opens it without
    /// following one): its folder's resolution (cached) and the verdict on the file.
    pub(crate) fn file_not_symlink(&mut self, path: &Path) -> Result<PathBuf, ErrorKind> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return self.resolved.check(path);
        };
        refuse_dot_segments(&path.to_string_lossy()).map_err(ErrorKind::InvalidPath)?;
        let real = self.dir(dir)?.join(name);
        self.resolved.judge(path, real)
    }

    /// The resolved folder `dir`, if it was checked already.
    pub(crate) fn known(&self, dir: &Path) -> Option<&PathBuf> {
        self.dirs.get(dir)
    }

    /// Records that the folder `dir` resolves to `real` (checked by the caller).
    pub(crate) fn learn(&mut self, dir: PathBuf, real: PathBuf) {
        self.dirs.insert(dir, real);
    }

    /// The full check of one path (a symlink), without the cache.
    pub(crate) fn full(&self, path: &Path) -> Result<PathBuf, ErrorKind> {
        self.resolved.check(path)
    }
}

/// Refuses `..` segments in a path or URL, also percent-encoded, before any normalisation or
/// decoding could hide them.
pub(crate) fn refuse_dot_segments(text: &str) -> Result<(), String> {
    let lower = text.to_ascii_lowercase();
    if lower
        .split(['/', '\\'])
        .any(|seg| seg == ".." || seg == "%2e%2e" || seg == ".%2e" || seg == "%2e.")
    {
        return Err(format!("{text}: `..` segments are not allowed in paths"));
    }
    Ok(())
}

/// Resolves `path` (relative to the project root, or absolute) under the confinement of local
/// stores: it must lead (through any symlinks) under an allowed root and outside the protected
/// paths. Returns the resolved path.
pub fn confine_path(config: &StorageConfig, path: &Path) -> Result<PathBuf, ErrorKind> {
    refuse_dot_segments(&path.to_string_lossy()).map_err(ErrorKind::InvalidPath)?;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        config.root.join(path)
    };
    Confinement::new(&config.allowed, &config.protected).check(&abs)
}

/// [`confine_path`] for a folder handed out whole (a watched folder): it must also not hold a
/// protected path, such as the data folder that holds the history database.
pub fn confine_dir(config: &StorageConfig, path: &Path) -> Result<PathBuf, ErrorKind> {
    let real = confine_path(config, path)?;
    let confinement = Confinement::new(&config.allowed, &config.protected);
    if let Some(p) = confinement.holds_protected(&real) {
        return Err(ErrorKind::Denied(format!(
            "{} holds ferry's own files ({}); use a folder of its own, such as inbox/NAME",
            path.display(),
            p.display()
        )));
    }
    Ok(real)
}
