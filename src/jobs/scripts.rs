//! Job scripts written and removed by request (the API): the name rule, validation before
//! anything is written (the same as `ferry check`), atomic writes and removal. The daemon's
//! reload picks a written script up exactly like a hand edit: the file is written under a
//! hidden temporary name (ignored by the watcher and by [`super::discover`]), synced, and
//! renamed over `scripts/NAME.lua`, so the reload reads either the old or the new script whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::spec::{JobSpec, LoadError, load_source};
use crate::config::Config;

/// The largest script accepted.
pub const MAX_SCRIPT: usize = 1024 * 1024;

/// Errors of writing or removing a script file.
#[derive(Debug, thiserror::Error)]
pub enum ScriptFileError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Whether `name` is usable as a job name: 1 to 64 letters, digits, `_` and `-` (the rule of
/// `ferry new`), and not one of [`super::spec::RESERVED_NAMES`].
pub fn valid_name(name: &str) -> bool {
    !super::spec::RESERVED_NAMES.contains(&name)
        && !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The script file of job `name`.
pub fn path_of(config: &Config, name: &str) -> PathBuf {
    config.scripts_dir.join(format!("{name}.lua"))
}

/// Checks `source` as the script of job `name` without writing anything: exactly what `ferry
/// check` does with a file.
pub fn validate(config: &Config, name: &str, source: &str) -> Result<JobSpec, LoadError> {
    load_source(config, &path_of(config, name), source.to_owned())
}

/// Writes `source` as the script of job `name` atomically (temporary file, fsync, rename, fsync
/// of the folder). Returns whether the job's file is new.
pub fn write(config: &Config, name: &str, source: &str) -> Result<bool, ScriptFileError> {
    let dir = &config.scripts_dir;
    let io = |path: &Path| {
        let path = config.display_path(path);
        move |source| ScriptFileError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let target = path_of(config, name);
    let temp = dir.join(format!(
        ".{name}.lua.{}-{:016x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        f.write_all(source.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io(&temp)(e));
    }
    let created = !target.exists();
    if let Err(e) = std::fs::rename(&temp, &target) {
        let _ = std::fs::remove_file(&temp);
        return Err(io(&target)(e));
    }
    sync_dir(dir).map_err(io(dir))?;
    Ok(created)
}

/// Removes the script of job `name`; returns false when there was none.
pub fn remove(config: &Config, name: &str) -> Result<bool, ScriptFileError> {
    let target = path_of(config, name);
    match std::fs::remove_file(&target) {
        Ok(()) => {
            sync_dir(&config.scripts_dir).map_err(|source| ScriptFileError::Io {
                path: config.display_path(&config.scripts_dir),
                source,
            })?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ScriptFileError::Io {
            path: config.display_path(&target),
            source,
        }),
    }
}

/// Whether `file_name` is a temporary name of [`write`] (`.NAME.lua.PID-RANDOM.tmp`).
fn is_temp(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.ends_with(".tmp") && file_name.contains(".lua.")
}

/// Removes the temporary files of writes a dead process left in `scripts/`; returns how many.
/// Called by the daemon at start, before anything writes.
pub fn remove_stale_temps(config: &Config) -> usize {
    let Ok(entries) = std::fs::read_dir(&config.scripts_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_temp))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule_of_ferry_new() {
        assert!(valid_name("nightly_export-2"));
        for bad in ["", "a b", "../x", "x.lua", &"a".repeat(65), "validate"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp(".hello.lua.123-00ff00ff00ff00ff.tmp"));
        assert!(!is_temp("hello.lua"));
        assert!(!is_temp(".hello.lua.swp"));
    }
}
