//! What several hosts on one history must share, checked when a daemon starts: the data folder
//! (the artifact copies the API serves, the key that seals secret params, the watched folders'
//! `processing/` bookkeeping). A daemon whose data folder is not the one the other hosts use
//! would record artifacts no other host can serve and seal params no other host can open, so it
//! refuses to start and says why.
//!
//! The check: the history has an id ([`History::history_id`]), written into the data folder by
//! the first daemon; a data folder with another id belongs to another history. And every daemon
//! leaves a file named after itself in `data/.ferry/hosts/`: a live host (one whose heartbeat the
//! history has) whose file this daemon cannot see uses another folder.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::history::{History, HistoryError};

/// Why the data folder cannot be used with a shared history.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The history could not be read.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// A file of the data folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The data folder belongs to another history.
    #[error(
        "the data folder {dir} belongs to another history (id {found}, this one is {expected}); \
         with [history] url every host must use the same data folder on a shared filesystem \
         (see docs/scale-out.md)"
    )]
    OtherHistory {
        /// The data folder.
        dir: PathBuf,
        /// The id found in it.
        found: String,
        /// The history's id.
        expected: String,
    },
    /// Live hosts use another data folder.
    #[error(
        "the data folder {dir} is not the one the hosts already serving this history use \
         ({hosts} left no mark in it); with [history] url, `[paths] data` and the watched \
         folders must be on a filesystem every host mounts (see docs/scale-out.md)"
    )]
    NotShared {
        /// The data folder.
        dir: PathBuf,
        /// The live hosts whose marks are missing.
        hosts: String,
    },
}

/// The file of a daemon in `data/.ferry/hosts/`.
fn mark(dir: &Path, owner: &str) -> PathBuf {
    let name: String = owner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(".ferry").join("hosts").join(name)
}

/// Checks that this daemon's data folder is the one shared by the history's hosts, then marks
/// it as used by `owner`.
pub fn check_data_folder(
    config: &Config,
    history: &dyn History,
    owner: &str,
) -> Result<(), SharedError> {
    let dir = &config.data_dir;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SharedError::Io { path, source }
    };
    let expected = history.history_id()?;
    let id_file = dir.join(".ferry").join("history-id");
    match std::fs::read_to_string(&id_file) {
        Ok(found) if found.trim() == expected => {}
        Ok(found) => {
            return Err(SharedError::OtherHistory {
                dir: dir.clone(),
                found: found.trim().to_string(),
                expected,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = id_file.parent().unwrap_or(dir);
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            std::fs::write(&id_file, format!("{expected}\n")).map_err(io(&id_file))?;
        }
        Err(e) => return Err(io(&id_file)(e)),
    }
    let live = history.hosts(crate::jobs::dispatcher::HEARTBEAT * 3)?;
    let missing: Vec<String> = live
        .iter()
        .filter(|h| h.owner != owner && !mark(dir, &h.owner).exists())
        .map(|h| h.owner.clone())
        .collect();
    if !missing.is_empty() {
        return Err(SharedError::NotShared {
            dir: dir.clone(),
            hosts: missing.join(", "),
        });
    }
    let mine = mark(dir, owner);
    if let Some(parent) = mine.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(&mine, format!("{}\n", config.api.listen)).map_err(io(&mine))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{HostBeat, SqliteHistory};

    fn config(data: &Path) -> Config {
        Config::defaults_at(data.to_path_buf()).unwrap()
    }

    #[test]
    fn a_folder_of_another_history_or_without_the_live_hosts_marks_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let h = SqliteHistory::open(&dir.path().join("h.db")).unwrap();
        let c = config(dir.path());
        check_data_folder(&c, &h, "a:1:1").unwrap();
        check_data_folder(&c, &h, "b:2:2").unwrap();
        h.host_heartbeat(&HostBeat {
            owner: "a:1:1".into(),
            host: "a".into(),
            listen: "x".into(),
            running: 0,
            capacity: 1,
            load: 0.0,
        })
        .unwrap();
        let other = config(&dir.path().join("elsewhere"));
        std::fs::create_dir_all(other.data_dir.join(".ferry")).unwrap();
        std::fs::write(
            other.data_dir.join(".ferry").join("history-id"),
            h.history_id().unwrap(),
        )
        .unwrap();
        let e = check_data_folder(&other, &h, "c:3:3").unwrap_err();
        assert!(matches!(e, SharedError::NotShared { .. }), "{e}");
        assert!(e.to_string().contains("a:1:1"), "{e}");
        std::fs::write(other.data_dir.join(".ferry").join("history-id"), "nope").unwrap();
        let e = check_data_folder(&other, &h, "c:3:3").unwrap_err();
        assert!(matches!(e, SharedError::OtherHistory { .. }), "{e}");
    }
}
