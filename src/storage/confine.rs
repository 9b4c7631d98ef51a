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
                self.roots_text()
            ))
        })?;
        let inside = self
            .allowed
            .iter()
            .any(|root| resolve(root).map(|r| real.starts_with(&r)).unwrap_or(false));
        if !inside {
            let via = if real != path {
                format!(" (it leads to {})", real.display())
            } else {
                String::new()
            };
            return Err(ErrorKind::Denied(format!(
                "{}{via} is outside the allowed roots: {}; add its folder to `allow` under [storage] in ferry.toml",
                path.display(),
                self.roots_text()
            )));
        }
        // A root allowed explicitly *inside* a protected folder (a run's own temporary folder)
        // opens that part of it, and only that part.
        let protected = self.protected.iter().any(|p| {
            let p = resolve(p).unwrap_or_else(|_| p.clone());
            real.starts_with(&p)
                && !self.allowed.iter().any(|root| {
                    let r = resolve(root).unwrap_or_else(|_| root.clone());
                    r.starts_with(&p) && real.starts_with(&r)
                })
        });
        if protected {
            return Err(ErrorKind::Denied(format!(
                "{} belongs to ferry itself (run history or storage journal); scripts may not touch it",
                path.display()
            )));
        }
        Ok(real)
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
