//! One daemon per project: `ferry serve` holds an exclusive lock on `data/.ferry/serve.lock`
//! for as long as it runs. The file says who holds it (pid, host, API address, since when), so
//! a second `ferry serve` can refuse with a message naming the running one.
//!
//! The lock is an advisory `flock` held by the open file: the operating system releases it when
//! the process ends in any way (kill -9 included), so a crashed daemon never leaves a stale lock
//! behind. Workers do not inherit it (files are opened close-on-exec).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Who holds the lock, as written into the lock file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// Process id of the daemon.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// Its API address, once it listens.
    #[serde(default)]
    pub listen: Option<String>,
    /// When it started (RFC 3339).
    pub since: String,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon serves this project.
    #[error(
        "another ferry serve is running for this project: pid {pid} on {host}{listen}, since {since} (lock {path}); stop it first, or use `ferry --server URL ...` to talk to it",
        pid = .holder.pid,
        host = .holder.host,
        listen = .holder.listen.as_deref().map(|l| format!(", API on {l}")).unwrap_or_default(),
        since = .holder.since,
        path = .path.display()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// What it says about the running daemon.
        holder: Holder,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ProjectLock {
    file: File,
    path: PathBuf,
    holder: Holder,
}

/// Where the lock of a project lives.
pub fn lock_path(config: &Config) -> PathBuf {
    let dir = config.data_dir.join(".ferry");
    if config.history_db.is_some() {
        // Several hosts share the data folder (and the history): one daemon per host.
        let host: String = crate::jobs::owner::hostname()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        return dir.join(format!("serve.{host}.lock"));
    }
    dir.join("serve.lock")
}

impl ProjectLock {
    /// Takes the project's lock, or says who holds it.
    pub fn acquire(config: &Config) -> Result<ProjectLock, LockError> {
        let path = lock_path(config);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file).unwrap_or(Holder {
                    pid: 0,
                    host: "?".into(),
                    listen: None,
                    since: "?".into(),
                });
                return Err(LockError::Held { path, holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = Holder {
            pid: std::process::id(),
            host: crate::jobs::owner::hostname(),
            listen: None,
            since: crate::history::format_time(&chrono::Utc::now()),
        };
        let mut lock = ProjectLock {
            file,
            path: path.clone(),
            holder,
        };
        lock.write().map_err(io)?;
        Ok(lock)
    }

    /// Records the API address in the lock file, for the message a second daemon prints.
    pub fn set_listen(&mut self, listen: &str) {
        self.holder.listen = Some(listen.to_string());
        if let Err(e) = self.write() {
            tracing::warn!("cannot update {}: {e}", self.path.display());
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self) -> std::io::Result<()> {
        let text = serde_json::to_string(&self.holder).map_err(std::io::Error::other)?;
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(text.as_bytes())?;
        self.file.flush()
    }
}

/// The daemon serving this project, if one runs on this host: read from the lock file without
/// taking the lock (taking it, even briefly, could make a daemon starting at that moment refuse).
/// The file outlives its daemon, so the process must still be alive.
pub fn running(config: &Config) -> Option<Holder> {
    let mut file = File::open(lock_path(config)).ok()?;
    let holder = read_holder(&mut file)?;
    let here = holder.host == crate::jobs::owner::hostname();
    (here && holder.pid != std::process::id() && crate::process::alive(holder.pid))
        .then_some(holder)
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}
