//! The storage error: which store, which operation, which path, and a typed kind.
//!
//! Messages read `store s3://bucket/prefix: read "a/b.csv": not found`. They never contain a
//! credential: stores are shown by their URL or config name, never by their options.

use std::fmt;

/// The operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Opening (resolving, building) a store.
    Open,
    /// `list(prefix)`.
    List,
    /// `stat(path)` and `exists(path)`.
    Stat,
    /// `read(path)` and `open(path)`, and reading from a reader.
    Read,
    /// `write(path, data)`, `create(path)` and writing to a writer.
    Write,
    /// Committing a writer (`close()`): the moment the object becomes visible.
    Commit,
    /// `delete(path)`.
    Delete,
    /// `copy(from, to)` and `ferry.copy`.
    Copy,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Open => "open",
            Op::List => "list",
            Op::Stat => "stat",
            Op::Read => "read",
            Op::Write => "write",
            Op::Commit => "commit",
            Op::Delete => "delete",
            Op::Copy => "copy",
        })
    }
}

/// What went wrong. "Not found", "denied" and "unreachable" are distinct kinds so that callers
/// (and scripts, through the message) can tell a missing object from a refused or failed access.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The object (or the store's bucket) does not exist.
    #[error("not found")]
    NotFound,
    /// A create-if-absent write found the object already there.
    #[error("already exists (create-if-absent)")]
    AlreadyExists,
    /// Access refused: by the confinement of local stores, by the file system or by the server
    /// (wrong credentials, no permission).
    #[error("denied: {0}")]
    Denied(String),
    /// The server could not be reached, or stopped answering, after the retries.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The path is not a valid object path (`..`, empty segments, absolute).
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// The store name, URL or options are not usable.
    #[error("{0}")]
    Config(String),
    /// The operation is not supported by this store or with these options.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The object is too large for a whole-object read.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The run is being stopped (timeout or cancel) while the operation waited.
    #[error("interrupted: the run is being stopped")]
    Interrupted,
    /// A local I/O error.
    #[error("{0}")]
    Io(std::io::Error),
    /// Any other error the backend reported.
    #[error("{0}")]
    Backend(String),
}

/// An error of a storage operation, with the store, the operation and the path it concerns.
#[derive(Debug)]
pub struct StorageError {
    /// The store as shown to people: its config name and URL, never its credentials.
    pub store: String,
    /// The operation.
    pub op: Op,
    /// The object path inside the store, when the error concerns one.
    pub path: Option<String>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store {}: {}", self.store, self.op)?;
        if let Some(p) = &self.path {
            write!(f, " {p:?}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl StorageError {
    /// A new error.
    pub fn new(store: impl Into<String>, op: Op, path: Option<&str>, kind: ErrorKind) -> Self {
        StorageError {
            store: store.into(),
            op,
            path: path.map(str::to_string),
            kind,
        }
    }

    /// Whether the object was not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::NotFound)
    }

    /// Whether a create-if-absent write found the object already there.
    pub fn is_already_exists(&self) -> bool {
        matches!(self.kind, ErrorKind::AlreadyExists)
    }

    /// Whether access was refused (confinement, permissions, credentials).
    pub fn is_denied(&self) -> bool {
        matches!(self.kind, ErrorKind::Denied(_))
    }

    /// Whether the server could not be reached.
    pub fn is_unreachable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unreachable(_))
    }

    /// Whether the operation stopped because the run is being stopped.
    pub fn is_interrupted(&self) -> bool {
        matches!(self.kind, ErrorKind::Interrupted)
    }

    /// Wraps the error into an `io::Error` for `Read`/`Write` implementations; [`Self::from_io`]
    /// gets it back.
    pub fn into_io(self) -> std::io::Error {
        let kind = match &self.kind {
            ErrorKind::NotFound => std::io::ErrorKind::NotFound,
            ErrorKind::AlreadyExists => std::io::ErrorKind::AlreadyExists,
            ErrorKind::Denied(_) => std::io::ErrorKind::PermissionDenied,
            ErrorKind::Interrupted => std::io::ErrorKind::Interrupted,
            ErrorKind::Unreachable(_) => std::io::ErrorKind::NotConnected,
            _ => std::io::ErrorKind::Other,
        };
        // `Interrupted` io errors are retried by `std::io` helpers; report ours as `Other` so a
        // stopped run is not retried in a loop.
        let kind = if kind == std::io::ErrorKind::Interrupted {
            std::io::ErrorKind::Other
        } else {
            kind
        };
        std::io::Error::new(kind, self)
    }

    /// The storage error inside an `io::Error` made by [`Self::into_io`], if it is one.
    pub fn from_io(err: &std::io::Error) -> Option<&StorageError> {
        err.get_ref().and_then(|e| e.downcast_ref::<StorageError>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_store_op_and_path() {
        let e = StorageError::new("s3://b/p", Op::Read, Some("a.csv"), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "store s3://b/p: read \"a.csv\": not found");
        let io = e.into_io();
        let back = StorageError::from_io(&io).map(|e| e.is_not_found());
        assert_eq!(back, Some(true));
    }
}
